import sys

from knee_tf.cli import main

sys.exit(main())

"""``knee-tf`` command line: synth, ingest, predict, study, grid, controls, tour, html, config; scan, split, reslice, pull, push, prescribe. Also ``python -m knee_tf``.

Bad input ends with one line per problem on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from knee_tf.cli import study_commands as st
from knee_tf.cli import yourdata_commands as yd
from knee_tf.core.errors import InputError, StepFailed

#: Each subcommand's parser builder, in the order ``knee-tf --help`` lists them.
STUDY_COMMANDS = (st.add_synth, st.add_ingest, st.add_predict, st.add_study, st.add_grid, st.add_controls, st.add_tour,
                  st.add_html, st.add_config)
YOURDATA_COMMANDS = (yd.add_scan, yd.add_split, yd.add_reslice, yd.add_pull, yd.add_push, yd.add_prescribe)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knee-tf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (*STUDY_COMMANDS, *YOURDATA_COMMANDS):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        if e.summary:
            print(f"error: {e.summary}", file=sys.stderr)
        for line in e.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except StepFailed as e:  # its executed notebook holds the traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

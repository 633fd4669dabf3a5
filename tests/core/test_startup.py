"""Clean notebook outputs: no TensorFlow start-up lines, real warnings kept, one line per epoch, small figures."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient
from PIL import Image

from knee_tf.core import startup


def _stderr(nb) -> str:
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                   if o.get("output_type") == "stream" and o.get("name") == "stderr")


def test_noise_patterns_match_tensorflow_start_up_lines_only():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n",
        "I0000 00:00:1796171241.059469    6690 port.cc:153] oneDNN custom operations are on. You may see ...\n",
        "I0000 00:00:1796171332.818840    7657 cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use\n",
        "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow with the "
        "appropriate compiler flags.\n",
    ]
    assert all(startup.is_startup_noise(line) for line in noise)
    kept = ["E0000 00:00:1.0 1 cuda_executor.cc:1] failed call to cuInit\n", "UserWarning: oneDNN is fine\n",
            "/x/knee_tf/core/cam.py:3: UserWarning: layer has no gradient\n", "WARNING: something else\n"]
    assert not any(startup.is_startup_noise(line) for line in kept)


def test_tensorflow_import_prints_nothing_but_warnings_pass_in_a_terminal():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    code = ("import knee_tf, warnings, os\nimport tensorflow\n"
            "warnings.warn('knee-tf test warning', UserWarning)\nprint(os.environ['TF_CPP_MIN_LOG_LEVEL'])")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == startup.TF_LOG_LEVEL
    assert proc.stderr.strip().splitlines() == ["<string>:3: UserWarning: knee-tf test warning"], proc.stderr


@pytest.mark.slow  # executes a notebook in a kernel
def test_executed_notebook_has_no_start_up_noise_and_keeps_package_warnings(tmp_path):
    """A notebook executed as papermill does (a kernel, TF_CPP_MIN_LOG_LEVEL unset): the cell that
    loads TensorFlow has no stderr output; a warning raised by a knee_tf module still shows."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import knee_tf.core.cam  # loads TensorFlow and Keras"),
        nbformat.v4.new_code_cell(  # as a warnings.warn inside knee_tf.core.model would raise it
            "import warnings\nfrom knee_tf.core import model\n"
            "warnings.warn_explicit('knee-tf package warning', UserWarning, model.__file__, 1, module='knee_tf.core.model')"),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nfig, ax = plt.subplots(figsize=(4, 3))\n"
                                  "ax.plot([0, 1])"),
    ])
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    old = dict(os.environ)
    os.environ.clear()
    os.environ.update(env)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    first = [o for o in nb.cells[0].outputs if o.get("name") == "stderr"]
    assert not first, first
    err = _stderr(nb)
    assert "knee-tf package warning" in err and "oneDNN" not in err and "absl" not in err, err
    png = next(o for o in nb.cells[2].outputs if "image/png" in o.get("data", {}))
    image = Image.open(io.BytesIO(base64.b64decode(png["data"]["image/png"])))
    width, height = image.size
    print("inline figure", width, height)
    assert 0.8 < width / (4 * startup.INLINE_DPI) < 1.1, (width, height)  # 4 in wide, bbox tight


@pytest.mark.parametrize("isatty, expected", [(True, 1), (False, 2)])
def test_keras_verbosity_is_a_bar_only_on_a_terminal(monkeypatch, isatty, expected):
    class Stream:
        def isatty(self):
            return isatty

    monkeypatch.setattr(sys, "stdout", Stream())
    assert startup.keras_verbosity() == expected

"""Quiet start-up: the one place that decides what TensorFlow prints when it loads, how Keras reports
training progress, and how large the figures embedded in notebooks are.

Imported first by ``knee_tf/__init__.py``, so it runs before any ``knee_tf`` module imports
TensorFlow. It

* sets ``TF_CPP_MIN_LOG_LEVEL`` (default :data:`TF_LOG_LEVEL`: TensorFlow's C++ INFO and WARNING
  lines hidden, errors kept) unless the environment already sets it;
* caps oneDNN's instruction set on a CPU with AMX, so bfloat16 training gives the same bits on an
  Intel Xeon with AMX as on an AMD EPYC (:func:`knee_tf.core.precision.pin_onednn_isa`);
* filters TensorFlow's start-up lines that ignore that level (the absl "All log messages before
  absl::InitializeLog()" banner, the oneDNN notice, the CPU-instruction notice): the first
  ``import tensorflow`` runs with the process's stderr (file descriptor 2) captured, and every
  captured line that is not one of :data:`STARTUP_NOISE` is written back to stderr. Nothing else is
  silenced: Python warnings (``warnings.warn``) from this package, Keras or TensorFlow are untouched;
* in a Jupyter kernel, embeds figures at :data:`INLINE_DPI` dots per inch (files written by
  :func:`knee_tf.study.plots.savefig` keep their own resolution), so executed notebooks stay small.

:func:`keras_verbosity` is the one decision about Keras progress output: a progress bar on a
terminal, one line per epoch elsewhere (papermill, nbmake, a log file, a notebook).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import os
import re
import sys
import tempfile

from knee_tf.core.precision import pin_onednn_isa

#: TF_CPP_MIN_LOG_LEVEL unless the environment sets it: 2 hides C++ INFO and WARNING, keeps ERROR.
TF_LOG_LEVEL = "2"
#: Start-up lines TensorFlow writes to stderr whatever TF_CPP_MIN_LOG_LEVEL says (regular expressions).
STARTUP_NOISE: tuple[str, ...] = (
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^[IW]\d{4} .*\] oneDNN custom operations are on\.",
    r"^[IW]\d{4} .*cpu_feature_guard\.cc:\d+\] This TensorFlow binary is optimized",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$",
)
#: Resolution of figures embedded in notebook outputs (matplotlib's own default is 100).
INLINE_DPI = 72

_NOISE = re.compile("|".join(f"(?:{p})" for p in STARTUP_NOISE))


def is_startup_noise(line: str) -> bool:
    """True for one of TensorFlow's start-up lines (:data:`STARTUP_NOISE`)."""
    return bool(_NOISE.search(line.rstrip("\r\n")))


def keras_verbosity() -> int:
    """Keras ``verbose``: 1 (a live progress bar) on an interactive terminal, else 2 (one line per
    epoch), so a notebook executed by papermill holds one line per epoch, not thousands of updates."""
    stream = sys.stdout
    try:
        return 1 if stream is not None and stream.isatty() else 2
    except (AttributeError, ValueError):
        return 2


class _FilteredStderr:
    """Capture file descriptor 2 (C-level stderr) while the block runs; then write every captured
    line except TensorFlow's start-up lines back to stderr."""

    def __enter__(self):
        try:
            sys.stderr.flush()
        except (AttributeError, ValueError):
            pass
        try:
            self.saved = os.dup(2)
        except OSError:  # no file descriptor 2 (some embedded interpreters): filter nothing
            self.saved = None
            return self
        self.file = tempfile.TemporaryFile()
        os.dup2(self.file.fileno(), 2)
        return self

    def __exit__(self, *exc):
        if self.saved is None:
            return False
        os.dup2(self.saved, 2)
        os.close(self.saved)
        self.file.seek(0)
        text = self.file.read().decode("utf-8", "replace")
        self.file.close()
        kept = "".join(line for line in text.splitlines(keepends=True) if not is_startup_noise(line))
        if kept:
            sys.stderr.write(kept)
            sys.stderr.flush()
        return False


class _QuietTensorFlowLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with _FilteredStderr():
            self.loader.exec_module(module)

    def __getattr__(self, name):  # resource readers etc. of the wrapped loader
        return getattr(self.loader, name)


class _QuietTensorFlowFinder(importlib.abc.MetaPathFinder):
    """Wraps the first ``import tensorflow`` in :class:`_FilteredStderr`, then removes itself."""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        uninstall()
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietTensorFlowLoader(spec.loader)
        return spec


_FINDER = _QuietTensorFlowFinder()


def uninstall() -> None:
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)


def _configure_inline_figures() -> None:
    """In a Jupyter kernel, embed figures at INLINE_DPI (only when IPython is already loaded)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "kernel"):
        return
    try:
        from matplotlib_inline.config import (
            InlineBackend,  # lazy: optional, only inside a Jupyter kernel
        )
    except ImportError:
        return
    cfg = InlineBackend.instance(parent=shell)
    cfg.print_figure_kwargs = {**cfg.print_figure_kwargs, "dpi": INLINE_DPI}


def configure() -> None:
    """Everything above; idempotent. Runs on ``import knee_tf``."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", TF_LOG_LEVEL)
    pin_onednn_isa()
    if "tensorflow" not in sys.modules and _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    _configure_inline_figures()


configure()

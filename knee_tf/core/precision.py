"""Training precision as a setting: float32, or Keras' ``mixed_bfloat16`` where the hardware has bfloat16 units.

``StudyConfig.precision`` is one of :data:`PRECISIONS`:

* ``"float32"``: every layer computes and stores in float32 (the smoke config, hence the tests);
* ``"mixed_bfloat16"``: layers compute in bfloat16 and keep float32 variables (Keras'
  ``mixed_bfloat16`` dtype policy); the ``logits`` Dense and the softmax stay float32, and so does
  the loss;
* ``"auto"``: ``"mixed_bfloat16"`` where the CPU has AMX or AVX-512 BF16 units (``amx_bf16`` or
  ``avx512_bf16`` among the /proc/cpuinfo flags; oneDNN then runs bfloat16 convolutions and matrix
  products natively) or a GPU of compute capability >= 8.0 is visible; ``"float32"`` elsewhere,
  where bfloat16 would be emulated and slower.

:func:`training_precision` sets the Keras global dtype policy for the duration of a ``with`` block
(model construction and training) and restores the previous one afterwards, so nothing else in
the process changes precision. Activation maps are always computed in float32:
:func:`float32_twin` rebuilds a mixed-precision model in float32 with the same weights.

**One instruction set for bfloat16.** oneDNN picks its kernels by the CPU's newest instruction set:
AMX tiles on an Intel Xeon with AMX, AVX-512 BF16 on an AMD EPYC (Zen 4) or an Intel Xeon without
AMX. The two accumulate bfloat16 products in different orders, so the same job trained in
``mixed_bfloat16`` gives other weights, from the first epoch, on the two kinds of machine.
:func:`pin_onednn_isa` (run on ``import knee_tf``) caps oneDNN at AVX-512 BF16 (oneDNN's own
``ONEDNN_MAX_CPU_ISA`` variable) on a CPU with AMX, so both kinds run the same kernels and train the
same bits: the published grid, trained on an AMD EPYC, is reproduced byte for byte on an Intel Xeon
with AMX (``bench/reproduces_published.py``; ``docs/reproducibility.md``). A user who prefers AMX's
speed to that sets ``ONEDNN_MAX_CPU_ISA=ALL``; a value already in the environment is never changed.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

FLOAT32, MIXED_BFLOAT16, AUTO = "float32", "mixed_bfloat16", "auto"
#: The values of ``StudyConfig.precision``.
PRECISIONS: tuple[str, ...] = (AUTO, FLOAT32, MIXED_BFLOAT16)
#: /proc/cpuinfo flags of CPUs with native bfloat16 arithmetic.
BF16_CPU_FLAGS: tuple[str, ...] = ("amx_bf16", "avx512_bf16")

CPUINFO = Path("/proc/cpuinfo")
#: oneDNN's ``ONEDNN_MAX_CPU_ISA`` on a CPU with AMX: the newest instruction set that AMD EPYC (Zen 4)
#: and Intel Xeon share for bfloat16 (:func:`pin_onednn_isa`).
ONEDNN_SHARED_ISA = "AVX512_CORE_BF16"
#: /proc/cpuinfo flag of Intel's AMX bfloat16 tiles, the instruction set the cap leaves out.
AMX_FLAG = "amx_bf16"


def cpu_flags(cpuinfo: str | Path = CPUINFO) -> frozenset[str]:
    """The CPU feature flags listed in ``cpuinfo`` (empty where the file does not exist, e.g. macOS)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return frozenset()
    flags: set[str] = set()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return frozenset(flags)


def cpu_has_bf16(cpuinfo: str | Path = CPUINFO) -> bool:
    """True when the CPU lists AMX-BF16 or AVX-512 BF16 (see :data:`BF16_CPU_FLAGS`)."""
    return bool(cpu_flags(cpuinfo) & set(BF16_CPU_FLAGS))


def pin_onednn_isa(environ=None, cpuinfo: str | Path = CPUINFO) -> str | None:
    """Cap oneDNN at :data:`ONEDNN_SHARED_ISA` on a CPU with AMX, unless ``ONEDNN_MAX_CPU_ISA`` is set.

    ``environ``: the environment to change (default ``os.environ``). Returns the variable's value
    afterwards (``None`` where it stays unset: no AMX). oneDNN reads it once, when TensorFlow first
    runs a oneDNN kernel, so this runs on ``import knee_tf``, before TensorFlow is imported
    (:mod:`knee_tf.core.startup`); child processes (Dask workers, notebook kernels) inherit it.
    """
    environ = os.environ if environ is None else environ
    if "ONEDNN_MAX_CPU_ISA" not in environ and AMX_FLAG in cpu_flags(cpuinfo):
        environ["ONEDNN_MAX_CPU_ISA"] = ONEDNN_SHARED_ISA
    return environ.get("ONEDNN_MAX_CPU_ISA")


def gpu_has_bf16() -> bool:
    """True when TensorFlow sees a GPU of compute capability >= 8.0 (Ampere and later)."""
    import tensorflow as tf  # lazy: loads TensorFlow (seconds)

    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability")
        if capability and tuple(capability) >= (8, 0):
            return True
    return False


@cache
def _auto() -> str:
    return MIXED_BFLOAT16 if cpu_has_bf16() or gpu_has_bf16() else FLOAT32


def resolve_precision(precision: str) -> str:
    """``"float32"`` or ``"mixed_bfloat16"`` for a :data:`PRECISIONS` value (``"auto"`` decided by the hardware).

    Raises ValueError naming the allowed values for anything else.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}; got {precision!r}")
    return _auto() if precision == AUTO else precision


@contextmanager
def training_precision(precision: str) -> Iterator[str]:
    """Set the Keras global dtype policy to ``resolve_precision(precision)`` inside the block; restore it after.

    Yields the resolved precision. Layers built inside the block keep their policy for good
    (it is saved with the model), so a model trained in mixed precision also predicts in it.
    """
    import keras  # lazy: loads TensorFlow (seconds)

    resolved = resolve_precision(precision)
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(resolved)
    try:
        yield resolved
    finally:
        keras.config.set_dtype_policy(before)


def model_precision(model) -> str:
    """``"float32"`` when every layer of ``model`` computes in float32, else ``"mixed_bfloat16"``."""
    computes = {layer.dtype_policy.compute_dtype for layer in model.layers if hasattr(layer, "dtype_policy")}
    return FLOAT32 if computes <= {"float32"} else MIXED_BFLOAT16


def float32_twin(model):
    """``model`` itself when it computes in float32; otherwise a float32 copy with the same weights.

    The copy is rebuilt from the model's config with every layer's dtype policy set to float32,
    then given the trained (float32) variables, so it computes what the mixed-precision model
    approximates. Only functional models are supported (what :func:`knee_tf.core.model.build_lenet` builds).
    """
    import keras  # lazy: loads TensorFlow (seconds)

    if model_precision(model) == FLOAT32:
        return model
    config = model.get_config()
    for layer in config["layers"]:
        layer["config"]["dtype"] = "float32"
    twin = keras.Model.from_config(config)
    twin.set_weights(model.get_weights())
    return twin

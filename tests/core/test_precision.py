"""knee_tf.core.precision: the precision setting, the dtype policy's scope, float32 twins; seeded initial weights."""

from __future__ import annotations

import random

import keras
import numpy as np
import pytest

from knee_tf.core import precision as precision_module
from knee_tf.core.model import build_lenet, load_model, predict_proba
from knee_tf.core.precision import (
    cpu_has_bf16,
    float32_twin,
    model_precision,
    pin_onednn_isa,
    resolve_precision,
    training_precision,
)
from knee_tf.study.config import StudyConfig

CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: fpu sse2 avx2 {extra}\n\nprocessor\t: 1\n"


@pytest.mark.parametrize("extra, expected", [("avx512f avx512_bf16", True), ("amx_tile amx_bf16", True),
                                             ("avx512f avx512_vnni", False), ("", False)])
def test_cpu_bf16_support_is_read_from_cpuinfo_flags(tmp_path, extra, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra=extra))
    assert cpu_has_bf16(path) is expected


def test_missing_cpuinfo_means_no_bf16(tmp_path):
    assert cpu_has_bf16(tmp_path / "absent") is False


@pytest.mark.parametrize("extra, env, expected", [
    ("amx_tile amx_bf16 avx512_bf16", {}, "AVX512_CORE_BF16"),  # Intel Xeon with AMX: capped
    ("avx512f avx512_bf16", {}, None),  # AMD EPYC (Zen 4): its newest set already, left alone
    ("avx2", {}, None),  # no bfloat16 units: float32 under "auto", nothing to pin
    ("amx_tile amx_bf16", {"ONEDNN_MAX_CPU_ISA": "ALL"}, "ALL"),  # the user's choice is kept
])
def test_onednn_isa_is_capped_only_on_amx_and_never_over_the_users_value(tmp_path, extra, env, expected):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO.format(extra=extra))
    environ = dict(env)
    assert pin_onednn_isa(environ, path) == expected
    assert environ.get("ONEDNN_MAX_CPU_ISA") == expected


def test_import_knee_tf_pins_the_isa_before_tensorflow_reads_it():
    import os
    import subprocess
    import sys
    code = ("import os, sys; import knee_tf; from knee_tf.core.precision import AMX_FLAG, cpu_flags; "
            "assert 'tensorflow' not in sys.modules; "
            "print(AMX_FLAG in cpu_flags(), os.environ.get('ONEDNN_MAX_CPU_ISA'))")
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    has_amx, value = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                                    check=True).stdout.split()
    assert value == ("AVX512_CORE_BF16" if has_amx == "True" else "None")


def test_resolve_precision(monkeypatch):
    assert resolve_precision("float32") == "float32"
    assert resolve_precision("mixed_bfloat16") == "mixed_bfloat16"
    monkeypatch.setattr(precision_module, "_auto", lambda: "mixed_bfloat16")
    assert resolve_precision("auto") == "mixed_bfloat16"
    with pytest.raises(ValueError, match="precision must be one of auto, float32, mixed_bfloat16; got 'float16'"):
        resolve_precision("float16")


def test_policy_is_set_inside_the_block_only_and_restored_after_an_error():
    before = keras.config.dtype_policy().name
    with pytest.raises(RuntimeError), training_precision("mixed_bfloat16") as resolved:
        assert resolved == "mixed_bfloat16" and keras.config.dtype_policy().name == "mixed_bfloat16"
        raise RuntimeError("training failed")
    assert keras.config.dtype_policy().name == before


def test_study_configs_train_in_float32_for_smoke_and_pass_precision_on():
    assert StudyConfig.smoke().training_settings()["precision"] == "float32"
    assert StudyConfig(precision="mixed_bfloat16").training_settings()["precision"] == "mixed_bfloat16"
    resolve_precision(StudyConfig().precision)  # the default is a valid value


def _mixed_lenet(seed=0):
    with training_precision("mixed_bfloat16"):
        return build_lenet((32, 32, 1), conv_filters=(4, 4, 4, 4), dense_units=(8,), seed=seed)


def test_mixed_model_keeps_softmax_and_logits_in_float32_and_variables_in_float32():
    model = _mixed_lenet()
    assert model_precision(model) == "mixed_bfloat16"
    assert model.get_layer("conv1").compute_dtype == "bfloat16"
    assert model.get_layer("logits").compute_dtype == "float32"
    assert model.get_layer("probs").compute_dtype == "float32"
    assert {w.dtype for w in model.get_weights()} == {np.dtype("float32")}
    out = model(np.zeros((2, 32, 32, 1), np.float32))
    assert out.dtype.name == "float32"


def test_float32_twin_has_the_weights_and_computes_in_float32(tmp_path):
    model = _mixed_lenet()
    x = np.random.default_rng(0).random((8, 32, 32, 1), np.float32)
    twin = float32_twin(model)
    assert model_precision(twin) == "float32" and twin.name == model.name
    for a, b in zip(model.get_weights(), twin.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    mixed, exact = predict_proba(model, x), predict_proba(twin, x)
    assert not np.array_equal(mixed, exact)  # bfloat16 rounding is visible ...
    np.testing.assert_allclose(mixed, exact, atol=2e-2)  # ... and small
    plain = build_lenet((32, 32, 1), conv_filters=(4, 4, 4, 4), dense_units=(8,))
    assert float32_twin(plain) is plain
    model.save(tmp_path / "m.keras")  # the policy is saved with the model
    assert model_precision(load_model(tmp_path / "m.keras")) == "mixed_bfloat16"


def test_initial_weights_depend_on_the_seed_only():
    def weights(seed, global_state):
        random.seed(global_state)
        random.random()
        return build_lenet((32, 32, 1), conv_filters=(4, 4, 4, 4), dense_units=(8,), seed=seed).get_weights()

    for a, b in zip(weights(5, 1), weights(5, 2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(weights(5, 1)[0], weights(6, 1)[0])
    mixed = _mixed_lenet(seed=5).get_weights()
    for a, b in zip(weights(5, 3), mixed, strict=True):  # precision does not change initial weights
        np.testing.assert_array_equal(a, b)

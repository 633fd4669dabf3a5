"""docs/core.md: its two code blocks run, on tiny toy data, and its list of CAM methods is the registry's."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from knee_tf.core.cam_methods import REGISTRY
from knee_tf.core.vocab import GRADCAM, GRADCAM_PP, METHOD_NAMES
from knee_tf.study.config import StudyConfig

PAGE = Path(__file__).resolve().parents[2] / "docs" / "core.md"


def _blocks() -> list[str]:
    """The page's top-level Python blocks (not the indented registry example)."""
    return re.findall(r"^```python\n(.*?)^```$", PAGE.read_text(), flags=re.S | re.M)


def test_the_page_runs_the_whole_method_on_toy_arrays(toy_blob_data, tmp_path, monkeypatch):
    arrays_block, method_block = _blocks()
    (xt, yt, _), (xv, yv, _) = toy_blob_data["train"], toy_blob_data["val"]
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "localizers.npz", x_train=xt[:96], y_train=yt[:96], x_val=xv[:32], y_val=yv[:32])
    ns: dict = {}
    exec(compile(arrays_block, str(PAGE), "exec"), ns)
    assert ns["x_train"].shape == (96, 64, 64, 1) and ns["y_val"].shape == (32,)
    # the page quotes the study's settings (its precision pinned to float32)
    assert {**ns["settings"], "precision": "auto"} == StudyConfig().training_settings()
    ns["settings"].update(conv_filters=(4, 8, 8, 8), dense_units=(16, 8), epochs=1, batch_size=32)  # seconds
    exec(compile(method_block, str(PAGE), "exec"), ns)
    assert ns["lenet"].get_layer("pool4").output.shape[1:3] == (4, 4)
    assert set(ns["maps"]) == {GRADCAM, GRADCAM_PP} and ns["maps"][GRADCAM].shape == (96, 64, 64)
    assert 0 <= ns["masks"].min() and ns["masks"].max() <= 1 and ns["masks"].max() > 0
    assert ns["x_aug"].shape == ns["x_train"].shape and (ns["y_aug"] == ns["y_train"]).all()
    assert set(ns["provenance"]["method"]) == {GRADCAM, GRADCAM_PP}
    assert (tmp_path / "model_a.keras").exists() and (tmp_path / "model_b.keras").exists()
    assert {k: v.shape for k, v in ns["calls"].items()} == {"A": (96,), "B": (96,)}


def test_the_page_lists_every_registered_cam_method():
    page = PAGE.read_text()
    table = [line for line in page.splitlines() if re.match(r"\| `[^`]+` \|", line)]
    assert [line.split("`")[1] for line in table] == list(REGISTRY)
    for line, (name, method) in zip(table, REGISTRY.items(), strict=True):
        assert f"| {METHOD_NAMES[name]} |" in line
        assert f"`{method.reference.rsplit('.', 1)[1]}`" in line, name

"""The committed top-level data_manifest.csv is exactly what `knee-tf synth` writes with defaults.

Slow (the full 513-exam default dataset is rendered, about 1-3 minutes on 2 cores), but it is the
only check that the published manifest, the numbers docs/ quotes about it and the generator still agree.
"""

from pathlib import Path

import pytest

from knee_tf.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_committed_manifest_matches_a_regeneration(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "synthetic")]) == 0
    assert "wrote" in capsys.readouterr().out
    regenerated = (tmp_path / "synthetic" / "data_manifest.csv").read_bytes()
    assert regenerated == (ROOT / "data_manifest.csv").read_bytes()

"""The committed top-level data_manifest.csv is exactly what `knee-tf synth` writes with defaults.

`knee-tf synth --manifest-only` plans the 513 default exams without rendering an image (seconds; the
images take minutes on 2 cores); tests/phantom/test_phantom.py checks that the planned manifest is the
rendered one, byte for byte. This is the only check that the published manifest, the numbers docs/
quotes about it and the generator still agree.
"""

from pathlib import Path

import pytest

from knee_tf.cli import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def test_committed_manifest_matches_a_regeneration(tmp_path, capsys):
    assert main(["synth", "--out", str(tmp_path / "synthetic"), "--manifest-only"]) == 0
    assert "wrote the manifest of" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "synthetic").iterdir()) == ["data_manifest.csv"]
    regenerated = (tmp_path / "synthetic" / "data_manifest.csv").read_bytes()
    assert regenerated == (ROOT / "data_manifest.csv").read_bytes()

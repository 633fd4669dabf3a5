"""bench/calibrate.py's analysis tools (issue 10): the calibration log's table and the geometry-only
estimate of Model A's accuracy, on the committed log, manifest and published grid."""

import csv
import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _calibrate():
    spec = importlib.util.spec_from_file_location("calibrate", ROOT / "bench" / "calibrate.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_markdown_table_has_every_logged_trial_with_its_seed():
    cal = _calibrate()
    rows = list(csv.DictReader((ROOT / "docs" / "calibration.csv").open()))
    table = cal.markdown_table(ROOT / "docs" / "calibration.csv").splitlines()
    header = [c.strip() for c in table[0].strip("|").split("|")]
    assert "seed" in header and len(table) == 2 + len(rows)
    seeds = [line.strip("|").split("|")[header.index("seed")].strip() for line in table[2:]]
    assert seeds == [r["seed"] for r in rows]
    # the table in docs/calibration.md is this table
    assert "\n".join(table) in (ROOT / "docs" / "calibration.md").read_text()


def test_geometry_estimate_gives_back_the_measured_accuracy_and_restores_the_protocol():
    cal = _calibrate()
    from knee_tf.phantom import synth

    before = dict(synth.CENTRING_SD_MM)
    grid, manifest = ROOT / "results" / "grid", ROOT / "data_manifest.csv"
    same = cal.geometry_estimate(grid, manifest)
    measured, estimated = (float(x) for x in re.findall(r"accuracy (0\.\d+)", same))
    assert abs(measured - estimated) < 1e-9, same
    wider = cal.geometry_estimate(grid, manifest, stretch=1.5)
    tight = cal.geometry_estimate(grid, manifest, centring={"sagittal": 5.0})
    assert float(re.findall(r"accuracy (0\.\d+)", wider)[1]) < measured - 0.01
    assert float(re.findall(r"accuracy (0\.\d+)", tight)[1]) != estimated
    assert "'sagittal': 5.0" in tight
    assert synth.CENTRING_SD_MM == before

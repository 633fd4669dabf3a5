"""knee-tf prescribe: slice ranges per exam and plane from DICOM geometry, on the phantom and a mixed export."""

import contextlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest
from mixed_export import make_mixed_export

from knee_tf.cli import main
from knee_tf.core.errors import InputError
from knee_tf.core.vocab import AXIAL, CORONAL, NORMAL, PLANES, RELEVANT, RULE_LABEL_COLUMN, SAGITTAL
from knee_tf.yourdata.prescribe import (
    EXAM_FIGURES,
    FOUND,
    NOT_FOUND,
    PRESCRIPTION_COLUMNS,
    PRESCRIPTION_CSV,
    SLICE_COLUMNS,
    SLICES_CSV,
    edge_direction,
    prescribe,
    prescription,
    relevant_range,
    stack_row,
)
from knee_tf.yourdata.prescribe_plot import plane_line


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    root = tmp_path_factory.mktemp("export") / "pacs_export"
    return root, make_mixed_export(root)


@pytest.fixture(scope="module")
def model_file(tiny_trained_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    tiny_trained_model.save(path)
    return path


@pytest.fixture(scope="module")
def from_folder(export, model_file, tmp_path_factory):
    """`knee-tf prescribe` on the mixed export, through the CLI: (out folder, stdout)."""
    out = tmp_path_factory.mktemp("prescribed")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["prescribe", str(export[0]), "--model", str(model_file), "--out", str(out / "p"),
                     "--cache", str(out / "cache"), "--workers", "1"])
    assert code == 0
    return out / "p", buf.getvalue()


@pytest.fixture(scope="module")
def from_manifest(export, model_file, tmp_path_factory):
    """prescribe() on the phantom's own manifest (paths relative to its folder, labels and rule labels known)."""
    out = tmp_path_factory.mktemp("from_manifest")
    synth = export[1]["synth"]
    return prescribe(synth / "data_manifest.csv", out / "p", model_file, cache_dir=out / "cache", workers=1,
                     figures=False, progress=False), pd.read_csv(synth / "data_manifest.csv", dtype=str,
                                                                 keep_default_na=False)


def test_relevant_range_first_last_and_gaps():
    assert relevant_range([0, 0, 1, 1, 0, 1, 0]) == relevant_range(np.array([False, False, True, True, False,
                                                                             True, False]))
    r = relevant_range([0, 0, 1, 1, 0, 1, 0])
    assert (r.first, r.last, r.gaps) == (2, 5, (4,))
    assert relevant_range([1, 0, 0, 1]).gaps == (1, 2)
    assert relevant_range([0, 0, 0]) == relevant_range([]) and relevant_range([0, 0]).first is None
    assert relevant_range([1]) == relevant_range([True]) and relevant_range([1]).last == 0


def _stack(p, normal=(0.0, 0.0, 1.0)):
    n = len(p)
    return pd.DataFrame(dict(exam_id="E1", patient_id="P1", series_uid="S1", plane=AXIAL, index=range(n),
                             image_id=[f"i{k}" for k in range(n)], sop_uid=[f"1.2.{k}" for k in range(n)],
                             pos_mm=[10.0 * k - 20 for k in range(n)], p_relevant=p,
                             normal=[np.array(normal)] * n))


def test_stack_row_confidence_edges_and_gaps():
    p = [0.1, 0.8, 0.3, 0.9, 0.95, 0.2]
    row = stack_row(_stack(p), np.array(p) > 0.5)
    assert set(row) == set(PRESCRIPTION_COLUMNS)
    assert (row["status"], row["first_index"], row["last_index"], row["first_image_id"], row["last_sop_uid"]) == (
        FOUND, 1, 4, "i1", "1.2.4")
    assert (row["first_pos_mm"], row["last_pos_mm"], row["n_relevant"], row["n_gaps"], row["gap_indices"]) == (
        -10.0, 20.0, 3, 1, "2")
    assert row["p_inside_mean"] == pytest.approx(np.mean(p[1:5]), abs=1e-4)
    assert row["boundary_margin"] == pytest.approx(0.3)  # slice 5 (p 0.2) decides the upper end
    assert row["edge_warning"] == "" and row["normal_lps"] == "0.0000;0.0000;1.0000"
    top = stack_row(_stack([0.1, 0.7, 0.99]), np.array([0, 1, 1], bool))
    assert "superior edge" in top["edge_warning"] and "inferior" not in top["edge_warning"]
    both = stack_row(_stack([0.9, 0.9], normal=(-1.0, 0, 0)), np.array([1, 1], bool))
    assert "left and right edge" in both["edge_warning"]  # normal -x: index 0 lies furthest left
    none = stack_row(_stack([0.1, 0.45, 0.2]), np.zeros(3, bool))
    assert none["status"] == NOT_FOUND and none["n_relevant"] == 0 and none["boundary_margin"] == pytest.approx(0.05)
    assert "first_index" not in none and none["edge_warning"] == ""


def test_edge_direction_names_the_lps_side():
    assert [edge_direction((0, 0, 1), low) for low in (True, False)] == ["inferior", "superior"]
    assert [edge_direction((0, 1, 0), low) for low in (True, False)] == ["anterior", "posterior"]
    assert [edge_direction((-0.98, 0.2, 0), low) for low in (True, False)] == ["left", "right"]


def test_plane_line_lies_on_the_plane_for_an_oblique_view():
    rng = np.random.default_rng(0)
    a, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    view = pd.Series(dict(ipp=np.array([-50.0, 20.0, 10.0]), row_dir=a[:, 0], col_dir=a[:, 1],
                          spacing=(0.7, 0.9), shape=(120, 100)))
    point, normal = np.array([-20.0, 30.0, 5.0]), rng.normal(size=3)
    normal /= np.linalg.norm(normal)
    line = plane_line(view, point, normal)
    for c, r in line:
        x = view["ipp"] + c * 0.9 * view["row_dir"] + r * 0.7 * view["col_dir"]
        assert abs((x - point) @ normal) < 1e-9
    assert plane_line(view, point, np.cross(a[:, 0], a[:, 1])) is None  # parallel: no line
    axial = pd.Series(dict(ipp=np.zeros(3), row_dir=np.array([1.0, 0, 0]), col_dir=np.array([0, 1.0, 0]),
                           spacing=(2.0, 0.5), shape=(10, 40)))
    sag = plane_line(axial, (6.0, 0, 0), (-1.0, 0, 0))  # x = 6 mm: column 12, top to bottom
    np.testing.assert_allclose(sag, [[12, -0.5], [12, 9.5]])


def test_true_range_on_the_phantom_follows_the_geometric_rule(from_manifest):
    """The phantom's rule label is geometric (relevant iff the slice centre lies in an interval along the
    plane's axis): its range has no gap, its ends are the innermost slices with boundary distance >= 0,
    and the positions from ImagePositionPatient are the phantom's slice locations along the normal."""
    res, synth = from_manifest
    s = res.slices.merge(synth[["image_id", "slice_location_mm", RULE_LABEL_COLUMN, "boundary_distance_mm"]],
                         on="image_id", validate="one_to_one")
    assert len(s) == len(synth)
    sign = s["plane"].map({AXIAL: 1.0, CORONAL: 1.0, SAGITTAL: -1.0})  # sagittal's normal row x col is -x
    np.testing.assert_allclose(s["pos_mm"], sign * s["slice_location_mm"].astype(float), atol=0.01)
    truth = prescription(s.assign(label=s[RULE_LABEL_COLUMN]), truth=True)
    assert len(truth) == len(s.groupby(["exam_id", "plane"])) == 9 and set(truth["plane"]) == set(PLANES)
    assert (truth["n_gaps"] == 0).all()
    for row in truth.itertuples():
        st = s[(s["exam_id"] == row.exam_id) & (s["plane"] == row.plane)].sort_values("index")
        inside = st[st["boundary_distance_mm"].astype(float) >= 0]
        assert row.status == (FOUND if len(inside) else NOT_FOUND)
        if len(inside):
            assert (row.first_image_id, row.last_image_id) == (inside["image_id"].iloc[0], inside["image_id"].iloc[-1])
            assert list(st["index"]) == list(range(len(st))) and st["pos_mm"].is_monotonic_increasing
            edge = row.first_index == 0 or row.last_index == len(st) - 1
            assert bool(row.edge_warning) == edge


def test_ranges_agree_with_the_study_prescription_endpoint(from_manifest):
    """The range ends of prescribe (order along the normal) give the same end errors and range_within_one
    as the study's endpoint (knee_tf.controls.prescription, order by slice_index), which bench/prescribe.py uses."""
    from knee_tf.controls.prescription import per_exam_plane

    res, synth = from_manifest
    s = res.slices.merge(synth[["image_id", "slice_index"]], on="image_id")
    pred, truth = prescription(s), prescription(s, truth=True)
    ours = pred.merge(truth, on=["exam_id", "plane"], suffixes=("", "_true"))
    ours["d_first"] = ours["first_index"] - ours["first_index_true"]
    ours["d_last"] = ours["last_index"] - ours["last_index_true"]
    rows = s.assign(arm="A", seed=0, cohort=NORMAL, y_true=(s["label"] == RELEVANT).astype(int))
    reversed_order = {k: bool(g.sort_values("index")["slice_index"].astype(int).is_monotonic_decreasing)
                      for k, g in s.groupby(["exam_id", "plane"])}
    assert any(reversed_order.values()) and not all(reversed_order.values())
    for order in ("index", "slice_index"):
        per = per_exam_plane(rows.assign(slice_rank=rows[order].astype(int))).merge(ours, on=["exam_id", "plane"])
        assert len(per) == len(pred) == 9
        # the phantom numbers some planes' slices against the normal: there the ends swap and the errors change sign
        flip = per.set_index(["exam_id", "plane"]).index.map(reversed_order).to_numpy() & (order == "slice_index")
        first = per["first_error"].where(~flip, -per["last_error"])
        last = per["last_error"].where(~flip, -per["first_error"])
        np.testing.assert_array_equal(first.fillna(99), per["d_first"].astype(float).fillna(99))
        np.testing.assert_array_equal(last.fillna(99), per["d_last"].astype(float).fillna(99))
        both_empty = per["first_index"].isna() & per["first_index_true"].isna()
        within = both_empty | ((per["d_first"].abs() <= 1) & (per["d_last"].abs() <= 1)).fillna(False)
        assert per["range_within_one"].tolist() == within.tolist()


def test_csv_schema_and_one_png_per_exam(from_folder, export):
    out, stdout = from_folder
    table = pd.read_csv(out / PRESCRIPTION_CSV, dtype=str, keep_default_na=False)
    assert tuple(table.columns) == PRESCRIPTION_COLUMNS
    slices = pd.read_csv(out / SLICES_CSV, dtype=str, keep_default_na=False)
    assert tuple(slices.columns) == SLICE_COLUMNS and len(slices) == export[1]["taken"]
    manifest = pd.read_csv(out / "manifest.csv", dtype=str, keep_default_na=False)
    # every stack is one row: 3 phantom exams x 3 planes, the vendor-like localizer's three single-plane series
    assert len(table) == manifest.groupby(["exam_id", "series_uid", "plane"]).ngroups == 12
    assert set(table["status"]) <= {FOUND, NOT_FOUND}
    found = table[table["status"] == FOUND]
    for row in found.itertuples():
        st = slices[(slices["exam_id"] == row.exam_id) & (slices["series_uid"] == row.series_uid)
                    & (slices["plane"] == row.plane)]
        assert int(row.n_slices) == len(st)
        first = st[st["index"] == row.first_index].iloc[0]
        assert (first["image_id"], first["sop_uid"], float(first["pos_mm"])) == (
            row.first_image_id, row.first_sop_uid, pytest.approx(float(row.first_pos_mm), abs=0.01))
        inside = st[st["index"].astype(int).between(int(row.first_index), int(row.last_index))]
        gaps = inside[inside["p_relevant"].astype(float) <= 0.5]["index"].tolist()
        assert row.gap_indices == ";".join(gaps) and int(row.n_gaps) == len(gaps)
        assert 0 <= float(row.boundary_margin) <= 0.5 and 0 <= float(row.p_inside_mean) <= 1
    assert (table.loc[table["status"] == NOT_FOUND, "first_index"] == "").all()
    pngs = sorted((out / EXAM_FIGURES).glob("*.png"))
    assert [p.stem for p in pngs] == sorted(manifest["exam_id"].unique())
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    assert f"{table['exam_id'].nunique()} exam(s), {len(table)} plane stack(s)" in stdout


def test_a_non_knee_series_is_reported_with_its_reason_not_dropped(from_folder, export):
    out, stdout = from_folder
    report = pd.read_csv(out / "scan_report.csv", dtype=str, keep_default_na=False)
    shoulder = report[report["path"].str.contains("shoulder_loc")]
    assert len(shoulder) == 9 and set(shoulder["reason"]) == {"another body part"}
    assert "SHOULDER" in shoulder["detail"].iloc[0]
    n_reported = sum(export[1]["reported"].values())
    assert len(report) == n_reported
    assert f"not taken by scan: {n_reported} file(s)" in stdout and "another body part" in stdout
    slices = pd.read_csv(out / SLICES_CSV, dtype=str)
    assert not slices["path"].str.contains("shoulder|brain").any()


def test_bad_input_is_one_line(tmp_path, model_file, export, capsys):
    def run(*argv):
        code = main(["prescribe", *map(str, argv), "--model", str(model_file), "--out", str(tmp_path / "o"),
                     "--cache", str(tmp_path / "cache"), "--workers", "1", "--no-figures"])
        return code, capsys.readouterr().err.strip().splitlines()

    code, err = run(tmp_path / "nowhere")
    assert code == 2 and len(err) == 1 and "no such folder or manifest" in err[0]
    code, err = main(["prescribe", str(export[0]), "--model", str(tmp_path / "none.keras"), "--out",
                      str(tmp_path / "o2")]), capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "no such file" in err[0] and not (tmp_path / "o2").exists()

    synth = export[1]["synth"]
    df = pd.read_csv(synth / "data_manifest.csv", dtype=str, keep_default_na=False).head(6)
    df.loc[1, "plane"] = "oblique"
    df.loc[3, "path"] = "nope/missing.dcm"
    bad = synth / "bad_manifest.csv"
    df.to_csv(bad, index=False)
    code, err = run(bad)
    assert code == 2
    assert any("bad_manifest.csv line 3" in e and "oblique" in e for e in err)
    assert any("bad_manifest.csv line 5" in e and "missing.dcm" in e for e in err)
    assert all("\n" not in e for e in err)

    # a slice without ImagePositionPatient: its manifest line, and why prescribe needs it
    good = pd.read_csv(synth / "data_manifest.csv", dtype=str, keep_default_na=False).head(4)
    ds = pydicom.dcmread(synth / good.loc[2, "path"])
    del ds.ImagePositionPatient
    ds.save_as(synth / "no_ipp.dcm")
    good.loc[2, "path"] = "no_ipp.dcm"
    (synth / "no_ipp.csv").write_text(good.to_csv(index=False))
    code, err = run(synth / "no_ipp.csv")
    assert code == 2
    assert any("no_ipp.csv line 4" in e and "ImagePositionPatient" in e for e in err)
    with pytest.raises(InputError, match="only for a manifest"):
        prescribe(export[0], tmp_path / "o3", model_file, root=tmp_path)
    assert not (tmp_path / "o3").exists()  # refused before anything is written


def test_a_missing_shipped_model_says_what_to_pass(tmp_path):
    import shutil

    from knee_tf.core.vocab import MODEL_A
    from knee_tf.data.layout import published_grid
    from knee_tf.yourdata.models import open_model

    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(published_grid(repo).job_dir(MODEL_A, 0), published_grid(tmp_path).job_dir(MODEL_A, 0))
    with pytest.raises(ValueError) as err:
        open_model("published:A", top=tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "not shipped" in msg and "--model" in msg and "model.keras" in msg

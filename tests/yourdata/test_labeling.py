"""The labelling state machine (no browser): keys, undo, atomic saves, suggestions, progress."""

import pandas as pd
import pytest
from dicom_factory import write_mr

from knee_tf.core.errors import InputError
from knee_tf.study.config import get_config, resolve
from knee_tf.yourdata.label import LabelSession, label_widget


def scanned_manifest(tmp_path, predicted=True):
    rows = []
    for plane, n in (("sagittal", 3), ("axial", 2)):
        for k in range(n):
            rel = f"img/{plane}{k}.dcm"
            write_mr(tmp_path / rel, plane=plane)
            rows.append(dict(image_id=f"{plane}{k}", patient_id="P1", exam_id="E1", path=rel, plane=plane,
                             label="", split="", series_uid="S1", slice_location_mm=str(10 - k)))
    df = pd.DataFrame(rows)
    if predicted:
        df["predicted"] = ["relevant", "irrelevant", "relevant", "irrelevant", "relevant"]
    df.to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path / "manifest.csv"


def on_disk(path):
    return pd.read_csv(path, dtype=str, keep_default_na=False).set_index("image_id")["label"].to_dict()


def test_order_is_plane_then_position_and_prefill_from_model(tmp_path):
    s = LabelSession(scanned_manifest(tmp_path))
    assert [s.df.at[k, "image_id"] for k in s.order] == ["axial1", "axial0", "sagittal2", "sagittal1", "sagittal0"]
    assert s.current()["image_id"] == "axial1" and s.suggestion() == "relevant"
    prev, nxt = s.neighbours()
    assert prev is None and nxt["image_id"] == "axial0"
    assert LabelSession(scanned_manifest(tmp_path / "b", predicted=False)).suggestion() == ""


def test_keys_label_skip_undo_and_save_after_every_label(tmp_path):
    path = scanned_manifest(tmp_path)
    s = LabelSession(path)
    original = path.read_bytes()
    assert s.press("x") == "ignored" and s.press("backspace") == "ignored" and path.read_bytes() == original
    assert s.press("r") == "relevant" and on_disk(path)["axial1"] == "relevant"  # saved at once
    assert s.press("I") == "irrelevant" and on_disk(path)["axial0"] == "irrelevant"
    assert s.press("s") == "skip" and on_disk(path)["sagittal2"] == "" and s.current()["image_id"] == "sagittal1"
    assert s.press("backspace") == "undo" and s.current()["image_id"] == "sagittal2"  # undo a skip: go back
    assert s.press("backspace") == "undo" and on_disk(path)["axial0"] == "" and s.current()["image_id"] == "axial0"
    assert s.press("r") == "relevant"
    for _ in range(3):
        s.press("i")
    assert s.done and s.press("r") == "ignored"
    assert on_disk(path) == {"axial1": "relevant", "axial0": "relevant", "sagittal2": "irrelevant",
                             "sagittal1": "irrelevant", "sagittal0": "irrelevant"}
    assert s.press("backspace") == "undo" and on_disk(path)["sagittal0"] == "" and not s.done
    assert s.writes == 8  # one atomic write per change, none for skips or ignored keys
    got = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert got["image_id"].tolist() == ["sagittal0", "sagittal1", "sagittal2", "axial0", "axial1"]  # file order kept
    assert not list(tmp_path.glob(".manifest.csv.*"))  # no temporary file left behind


def test_progress_per_plane_and_resume(tmp_path):
    path = scanned_manifest(tmp_path)
    s = LabelSession(path)
    s.press("r")
    s.press("i")
    s.press("r")
    prog = s.progress()
    assert prog.loc["axial"].tolist()[:2] == [2, 2] and prog.loc["sagittal"].tolist()[:2] == [1, 3]
    again = LabelSession(path)  # a restart (or a crash) resumes at the first unlabelled slice
    assert again.current()["image_id"] == "sagittal1"


def test_widget_builds_and_forwards_keys(tmp_path):
    path = scanned_manifest(tmp_path)
    s = LabelSession(path)
    box = label_widget(s, tmp_path)
    keys = box.children[3]
    keys.value = ".r"  # typing r into the key field
    assert on_disk(path)["axial1"] == "relevant" and keys.value == "."
    keys.value = ""  # backspace
    assert on_disk(path)["axial1"] == ""
    box.children[2].children[1].click()  # the "irrelevant" button
    assert on_disk(path)["axial1"] == "irrelevant"


def test_needs_columns(tmp_path):
    pd.DataFrame({"image_id": ["a"], "path": ["x.dcm"]}).to_csv(tmp_path / "m.csv", index=False)
    with pytest.raises(InputError, match="labelling needs column"):
        LabelSession(tmp_path / "m.csv")


@pytest.mark.slow  # executes notebook 08
@pytest.mark.parametrize("with_manifest", [True, False])
def test_notebook_08_headless_writes_nothing_and_says_so(tmp_path, with_manifest):
    import papermill

    from knee_tf.study.config import REPO_ROOT

    path = scanned_manifest(tmp_path)
    before = path.read_bytes()
    import json

    cfg = tmp_path / "mine.json"
    cfg.write_text(json.dumps({"manifest": str(path if with_manifest else tmp_path / "none.csv"),
                               "data_root": str(tmp_path)}))
    params = {"config": str(cfg)}
    nb = papermill.execute_notebook(str(REPO_ROOT / "notebooks" / "08_label_your_data.ipynb"),
                                    str(tmp_path / "out.ipynb"), parameters=params, progress_bar=False,
                                    kernel_name="python3", cwd=str(tmp_path))
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert path.read_bytes() == before
    assert ("a headless run writes nothing" in text) if with_manifest else ("nothing to label" in text)


def test_label_in_the_terminal_from_keys_on_stdin(tmp_path, monkeypatch, capsys):
    """`knee-tf label MANIFEST --terminal` with the keys a person would type, one per line on stdin."""
    import io

    from knee_tf.cli import main

    path = scanned_manifest(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("r\ni\nx\nbackspace\ns\nr\nq\nr\n"))
    assert main(["label", str(path), "--terminal"]) == 0  # root: the manifest's folder
    out = capsys.readouterr().out
    # axial1 r, axial0 i, x ignored, undo axial0, s skips it, sagittal2 r, q stops (the last r is never read)
    assert on_disk(path) == {"axial1": "relevant", "axial0": "", "sagittal2": "relevant", "sagittal1": "",
                             "sagittal0": ""}
    assert "[1/5] axial · axial1 · label now: - · model suggests relevant" in out
    assert "key 'x' ignored" in out and "saved: " in out
    picture = out.split("[1/5]")[0].splitlines()[-24:]  # the slice as 24 lines of 48 characters
    assert len(picture) == 24 and all(len(line) == 48 for line in picture) and len(set("".join(picture))) > 2


def test_label_in_the_terminal_to_the_end_and_without_pictures(tmp_path, monkeypatch, capsys):
    import io

    from knee_tf.cli import main

    path = scanned_manifest(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO("i\n" * 5))
    assert main(["label", str(path), "--root", str(tmp_path), "--terminal", "--no-picture"]) == 0
    out = capsys.readouterr().out
    assert set(on_disk(path).values()) == {"irrelevant"} and "all 5 slices visited" in out
    assert "." * 10 not in out  # no picture drawn


def test_label_opens_notebook_08_on_the_manifest_where_jupyterlab_is(tmp_path, monkeypatch, capsys):
    import json

    import knee_tf.yourdata.label_terminal as lt
    from knee_tf.cli import main

    path = scanned_manifest(tmp_path)
    opened = []
    monkeypatch.setattr(lt, "lab_available", lambda: True)
    monkeypatch.setattr(lt, "open_in_lab", lambda nb: opened.append(nb) or 0)
    assert main(["label", str(path), "--root", str(tmp_path)]) == 0
    assert opened == [tmp_path / "label_manifest.ipynb"]
    cells = json.loads(opened[0].read_text())["cells"]
    k = next(i for i, c in enumerate(cells) if "parameters" in c["metadata"].get("tags", []))
    config = tmp_path / "label_manifest.json"
    assert "".join(cells[k + 1]["source"]) == f"config = {str(config.resolve())!r}\n"
    cfg = get_config(str(config))
    assert (cfg.manifest_path, resolve(cfg.data_root)) == (path.resolve(), tmp_path.resolve())
    assert on_disk(path) == {k: "" for k in on_disk(path)}  # opening writes nothing


def test_label_a_missing_manifest_is_one_line(tmp_path, capsys):
    from knee_tf.cli import main

    assert main(["label", str(tmp_path / "none.csv"), "--terminal"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "manifest not found" in err[0]

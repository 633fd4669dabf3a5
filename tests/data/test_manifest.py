"""One test per manifest validation rule; every message names the line, image_id and path."""

import shutil

import pandas as pd
import pytest
from dicom_factory import make_dataset_dir

from knee_tf.core.errors import InputError
from knee_tf.data.manifest import load_manifest, read_manifest, validate_manifest


@pytest.fixture
def study(tmp_path):
    make_dataset_dir(tmp_path)
    return tmp_path


def problems_after(study, edit):
    df = read_manifest(study / "data_manifest.csv")
    edit(df)
    return [str(p) for p in validate_manifest(df, study)]


def test_valid_manifest_has_no_problems(study):
    df, problems = load_manifest(study / "data_manifest.csv", study)
    assert problems == [] and len(df) == 12


@pytest.mark.parametrize("column", ["image_id", "patient_id", "exam_id", "path", "plane", "label", "split"])
def test_missing_required_column(study, column):
    df = read_manifest(study / "data_manifest.csv").drop(columns=[column])
    msgs = [str(p) for p in validate_manifest(df, study)]
    assert len(msgs) == 1 and f"missing required column(s): {column}" in msgs[0]


@pytest.mark.parametrize("column,value,expect", [
    ("plane", "oblique", "unknown plane 'oblique'"),
    ("plane", "", "empty plane"),
    ("label", "maybe", "unknown label 'maybe'"),
    ("label", "", "empty label"),
    ("split", "holdout", "unknown split 'holdout'"),
    ("split", "", "empty split"),
])
def test_bad_category_names_the_row(study, column, value, expect):
    def edit(df):
        df.loc[3, column] = value
    msgs = problems_after(study, edit)
    bad = [m for m in msgs if expect in m]
    assert len(bad) == 1
    assert "line 5" in bad[0] and "image_id=p1_1" in bad[0] and "path=img/p1_1.dcm" in bad[0]


def test_every_problem_reported_not_only_first(study):
    def edit(df):
        df.loc[0, "plane"] = "x"
        df.loc[5, "label"] = "y"
        df.loc[7, "split"] = "z"
    msgs = problems_after(study, edit)
    assert [m.split(" (")[0] for m in msgs] == ["data_manifest.csv line 2", "data_manifest.csv line 7",
                                                "data_manifest.csv line 9"]


def test_duplicate_image_id(study):
    def edit(df):
        df.loc[4, "image_id"] = df.loc[1, "image_id"]
    msgs = problems_after(study, edit)
    assert msgs == ["data_manifest.csv line 6 (image_id=p0_1, path=img/p2_0.dcm): duplicate image_id 'p0_1' "
                    "(first at line 3)"]


def test_patient_in_two_splits_is_leakage(study):
    def edit(df):
        df.loc[1, "split"] = "test"  # P0 now in train and test
    msgs = problems_after(study, edit)
    assert len(msgs) == 2 and all("patient 'P0' appears in more than one split (test, train)" in m for m in msgs)


def test_missing_file(study):
    (study / "img/p2_1.dcm").unlink()
    msgs = problems_after(study, lambda df: None)
    assert msgs == ["data_manifest.csv line 7 (image_id=p2_1, path=img/p2_1.dcm): file not found"]


def test_path_is_directory(study):
    (study / "img/sub").mkdir()
    msgs = problems_after(study, lambda df: df.__setitem__("path", df["path"].where(df.index != 2, "img/sub")))
    assert msgs == ["data_manifest.csv line 4 (image_id=p1_0, path=img/sub): path is a directory, "
                    "expected a DICOM file"]


@pytest.mark.parametrize("outside", ["../escape.dcm", "ABS"])
def test_path_outside_root(study, tmp_path_factory, outside):
    other = tmp_path_factory.mktemp("elsewhere") / "escape.dcm"
    shutil.copy(study / "img/p0_0.dcm", other)
    shutil.copy(study / "img/p0_0.dcm", study.parent / "escape.dcm")
    value = str(other) if outside == "ABS" else outside

    def edit(df):
        df.loc[0, "path"] = value
    msgs = problems_after(study, edit)
    assert len(msgs) == 1 and "line 2" in msgs[0] and "resolves outside the data root" in msgs[0]


def test_absolute_path_inside_root_is_fine(study):
    msgs = problems_after(study, lambda df: df.__setitem__("path", [str(study / p) for p in df["path"]]))
    assert msgs == []


def test_bad_frame_value(study):
    msgs = problems_after(study, lambda df: df.insert(0, "frame", ["", "-1"] + [""] * 10))
    assert msgs == ["data_manifest.csv line 3 (image_id=p0_1, path=img/p0_1.dcm): frame '-1' is not a "
                    "non-negative integer"]


def test_empty_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("")
    with pytest.raises(InputError, match="m.csv: manifest is empty"):
        load_manifest(tmp_path / "m.csv", tmp_path)


def test_header_only_manifest(tmp_path):
    (tmp_path / "m.csv").write_text("image_id,patient_id,exam_id,path,plane,label,split\n")
    with pytest.raises(InputError, match="header but no rows"):
        load_manifest(tmp_path / "m.csv", tmp_path)


def test_unreadable_manifest(tmp_path):
    (tmp_path / "m.csv").write_bytes(b"a,b\n\xff\xfe\x00garbage,\"unterminated\n")
    with pytest.raises(InputError, match="m.csv: not a readable CSV manifest"):
        load_manifest(tmp_path / "m.csv", tmp_path)


def test_missing_manifest(tmp_path):
    with pytest.raises(InputError, match="manifest not found"):
        load_manifest(tmp_path / "nope.csv", tmp_path)


def test_optional_columns_are_kept(study):
    df = read_manifest(study / "data_manifest.csv")
    df["my_column"] = "x"
    df.to_csv(study / "data_manifest.csv", index=False)
    df2, problems = load_manifest(study / "data_manifest.csv", study)
    assert problems == [] and list(df2["site"].unique()) == ["site0", "site1"] and "my_column" in df2
    assert isinstance(df2, pd.DataFrame)

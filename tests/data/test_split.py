"""knee-tf split: seeded, stratified by site, never splits a patient."""

import numpy as np
import pandas as pd
import pytest

from knee_tf.cli import main
from knee_tf.core.errors import InputError
from knee_tf.data.split import parse_ratios, split_by_patient, split_problems


def manifest(n_patients=60, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        site = f"site{p % 3}"
        for k in range(int(rng.integers(1, 12))):  # uneven rows per patient
            rows.append(dict(image_id=f"p{p}_{k}", patient_id=f"P{p:03d}", exam_id=f"E{p}", path=f"x/{p}_{k}.dcm",
                             plane="axial", label="", split="", site=site))
    return pd.DataFrame(rows)


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_never_splits_a_patient_and_follows_ratios_per_site(seed):
    df = manifest()
    out = split_by_patient(df, (0.7, 0.1, 0.2), seed=seed)
    assert out["split"].isin(["train", "val", "test"]).all()
    assert (out.groupby("patient_id")["split"].nunique() == 1).all()
    per_site = out.drop_duplicates("patient_id").groupby(["site", "split"]).size().unstack()
    assert (per_site["train"] == 14).all() and (per_site["val"] == 2).all() and (per_site["test"] == 4).all()
    assert out.drop(columns="split").equals(df.drop(columns="split"))  # nothing else changes


def test_seeded_and_seed_matters():
    df = manifest()
    a, b = split_by_patient(df, seed=3), split_by_patient(df, seed=3)
    assert a["split"].tolist() == b["split"].tolist()
    assert a["split"].tolist() != split_by_patient(df, seed=4)["split"].tolist()


def test_patient_at_two_sites_stays_whole():
    df = manifest(12)
    df.loc[df["patient_id"] == "P000", "site"] = ["site1"] + ["site0"] * (int((df["patient_id"] == "P000").sum()) - 1)
    out = split_by_patient(df, seed=0)
    assert out.loc[out["patient_id"] == "P000", "split"].nunique() == 1


def test_without_site_column():
    out = split_by_patient(manifest(10).drop(columns="site"), (0.5, 0.2, 0.3), seed=0)
    assert out.drop_duplicates("patient_id")["split"].value_counts().to_dict() == {"train": 5, "test": 3, "val": 2}


@pytest.mark.parametrize("text,msg", [("0.7,0.1", "three non-negative"), ("0.7,0.2,0.2", "sum to 1.1"),
                                      ("a,b,c", "expected three numbers"), ("1.2,-0.1,-0.1", "non-negative")])
def test_bad_ratios(text, msg):
    with pytest.raises(InputError, match=msg):
        parse_ratios(text)


def test_cli_split_rewrites_manifest_and_bad_rows_are_named(tmp_path, capsys):
    path = tmp_path / "m.csv"
    manifest(30).to_csv(path, index=False)
    assert main(["split", "--manifest", str(path), "--by", "patient", "--ratios", "0.7,0.1,0.2", "--seed", "5"]) == 0
    got = pd.read_csv(path, dtype=str, keep_default_na=False)
    assert got["split"].ne("").all() and (got.groupby("patient_id")["split"].nunique() == 1).all()
    bad = manifest(3)
    bad.loc[2, "patient_id"] = ""
    bad.to_csv(path, index=False)
    assert main(["split", "--manifest", str(path), "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line(s) 4: empty patient_id" in err[0]


def test_split_problems_name_an_empty_split_and_a_missing_class():
    five = manifest(5)  # five patients at three sites: test (0.2) rounds to nobody at every site
    out = split_by_patient(five, (0.7, 0.1, 0.2), seed=0)
    assert split_problems(out, (0.7, 0.1, 0.2)) == ["test is empty"]
    assert split_problems(split_by_patient(manifest(60), seed=0)) == []  # enough patients: nothing to say
    assert split_problems(split_by_patient(five, (0.6, 0.4, 0.0), seed=0), (0.6, 0.4, 0.0)) == []  # asked for none
    labelled = manifest(60)
    labelled["label"] = "relevant"  # no irrelevant slice anywhere
    labelled.loc[labelled["patient_id"] == "P000", "label"] = "irrelevant"
    problems = split_problems(split_by_patient(labelled, seed=0))
    assert sum("has no irrelevant slice" in p for p in problems) == 2  # P000 is in one split only


def test_cli_split_refuses_an_empty_split_in_one_line_with_the_counts(tmp_path, capsys):
    path = tmp_path / "m.csv"
    manifest(5).to_csv(path, index=False)
    before = path.read_bytes()
    assert main(["split", "--manifest", str(path), "--seed", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "test is empty" in err[0] and "train 3 patients/24 rows, val 2/7, test 0/0" in err[0] and "--force" in err[0]
    assert path.read_bytes() == before  # nothing written
    assert main(["split", "--manifest", str(path), "--seed", "0", "--force"]) == 0
    printed = capsys.readouterr()
    assert printed.err.startswith("warning: ") and "test is empty" in printed.err and "wrote" in printed.out
    assert pd.read_csv(path, dtype=str, keep_default_na=False)["split"].ne("").all()

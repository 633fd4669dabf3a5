"""The operating-point grid's place on the results pages (knee_tf.controls.operating_point) and where a run of
a config that publishes apart (paper_point) puts its files (knee_tf.data.layout.published_path)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from knee_tf.controls.families import PRIMARY
from knee_tf.controls.operating_point import (
    OPERATING_POINT,
    operating_point_markdown,
    operating_point_status,
    premise_markdown,
    primary_markdown,
)
from knee_tf.data.layout import published_grid, published_path, published_record
from knee_tf.study.config import get_config

ROOT = Path(__file__).resolve().parents[2]
EFFECTS = pd.read_csv(ROOT / "results" / "effects.csv")
ARMS = pd.read_csv(ROOT / "results" / "arms.csv")


def test_a_config_that_publishes_apart_has_its_own_folders(tmp_path):
    name = get_config(OPERATING_POINT).publish_grid_as
    assert name == "paper_point"
    assert published_grid(tmp_path, name).root == tmp_path / "results" / "paper_point" / "grid"
    assert published_grid(tmp_path).root == tmp_path / "results" / "grid"  # the full-data grid, as before
    assert published_path(tmp_path, "figures", "07_forest.png", name) == tmp_path / "figures" / "paper_point" / "07_forest.png"
    assert published_record(tmp_path, name) == tmp_path / "results" / "paper_point" / "published.json"
    assert published_record(tmp_path) == tmp_path / "results" / "published.json"
    with pytest.raises(ValueError, match="a published grid's name is letters"):
        published_path(tmp_path, "results", "x.csv", "a/b")


def test_the_primary_table_lists_the_plans_eight_tests_with_their_numbers():
    table = primary_markdown(EFFECTS)
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    primary = EFFECTS[(EFFECTS["test_family"] == PRIMARY) & (EFFECTS["arm"] == "B")]
    assert len(rows) == len(primary) == 8
    for line, r in zip(rows, primary.itertuples(), strict=True):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == f"`{r.reference}`" and cells[1] == f"`{r.cohort}`" and cells[2] == str(r.n_seeds)
        assert cells[3].startswith(f"{100 * r.effect:+.1f} [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]")
        assert cells[3].split(" (")[0].endswith("*") == bool(r.significant)
        assert cells[3].endswith(" (in dist.)") == bool(r.in_distribution)
        assert cells[4] == ("< 0.001" if r.q_bh < 0.0005 else f"{r.q_bh:.3f}")
    with pytest.raises(ValueError, match="no row of the analysis plan's primary family"):
        primary_markdown(EFFECTS[EFFECTS["test_family"] != PRIMARY])


def test_the_block_says_how_far_the_grid_is_until_its_tables_exist(tmp_path):
    done, planned, effects = operating_point_status(tmp_path)
    assert (done, planned) == (0, 66) and not effects.exists()
    assert "**0 of its 66 jobs**" in operating_point_markdown(tmp_path)
    pub = published_grid(ROOT)  # two published jobs copied in as if they were the operating point's
    for job in sorted(pub.records())[:2]:
        shutil.copytree(job.parent, published_grid(tmp_path, "paper_point").root / job.parent.name)
    assert "**2 of its 66 jobs**" in operating_point_markdown(tmp_path)
    effects.parent.mkdir(parents=True, exist_ok=True)
    EFFECTS.to_csv(effects, index=False)
    shutil.copy(ROOT / "results" / "arms.csv", effects.parent / "arms.csv")
    text = operating_point_markdown(tmp_path, root="../")
    assert "2 of its 66 jobs published" in text and "](../docs/analysis_plan.md)" in text
    assert "(../figures/paper_point/07_forest.png)" in text and primary_markdown(EFFECTS) in text
    assert premise_markdown(ARMS) in text
    assert "](docs/analysis_plan.md)" in operating_point_markdown(tmp_path)


def test_the_premise_line_gives_model_as_accuracy_on_its_own_maps_beside_the_papers():
    a = ARMS[(ARMS["arm"] == "A") & ARMS["variant"].isna() & (ARMS["corruption"] == "none")].set_index("cohort")
    text = premise_markdown(ARMS)
    normal, cam = a.loc["normal"], a.loc["cam"]
    assert (f"is {100 * normal.accuracy:.1f} % [{100 * normal.accuracy_low:.1f}, {100 * normal.accuracy_high:.1f}] "
            "accurate on normal images") in text
    assert (f"`cam` {100 * cam.accuracy:.1f} % [{100 * cam.accuracy_low:.1f}, {100 * cam.accuracy_high:.1f}] "
            f"({100 * (cam.accuracy - normal.accuracy):+.1f} points)") in text
    assert f"({int(normal.n_seeds)} seeds)" in text and "`cam_hard`" not in text
    assert "The paper's Model A: 83.1 % on normal images, 67.5 % on its CAM corruptions (-15.6 points)" in text
    hard = ARMS[(ARMS["arm"] == "A") & ARMS["variant"].isna() & (ARMS["cohort"] == "cam")].assign(
        cohort="cam_hard", accuracy=normal.accuracy - 0.171)
    with_hard = premise_markdown(pd.concat([ARMS, hard]))
    assert "(-17.1 points; exploratory)" in with_hard
    with pytest.raises(ValueError, match="no row of Model A on cam"):
        premise_markdown(ARMS[ARMS["cohort"] != "cam"])

"""The numbers README and docs/ quote are the published ones: each is parsed out of its table or
sentence and compared, by value, with results/*.csv (or results/*.json), never by the words around it."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from markdown_pages import ROOT, agrees, block, numbers, prose, read, tables

from knee_tf.study.cohorts import COHORTS
from knee_tf.study.evaluate import summarize_seeds

#: the paper's (Model A, Model B) accuracy per cohort, from the cohorts table
PAPER_ACCURACY = {name: c.paper_accuracy for name, c in COHORTS.items() if c.paper_accuracy}

RESULTS = ROOT / "results"


@pytest.fixture(scope="module")
def summary():
    return summarize_seeds(pd.read_csv(RESULTS / "cohorts.csv")).set_index(["model", "cohort"])


@pytest.fixture(scope="module")
def effects():
    e = pd.read_csv(RESULTS / "effects.csv")
    return e[(e["metric"] == "accuracy") & (e["corruption"] == "none")].set_index(["arm", "reference", "cohort"])


def _code(cell: str) -> str:
    """The `name` in a cell."""
    found = re.findall(r"`([^`]+)`", cell)
    assert found, cell
    return found[-1]


def _check_effect(cell: str, r) -> None:
    """A cell 'effect [low, high]' (points), with '*' when significant and '(in dist.)' when in distribution."""
    quoted = numbers(cell)
    assert len(quoted) == 3, cell
    for q, v in zip(quoted, (r.effect, r.ci_low, r.ci_high), strict=True):
        assert agrees(q, 100 * v), (cell, q, v)
    assert ("*" in cell) == bool(r.significant), cell
    assert ("(in dist.)" in cell) == bool(r.in_distribution), cell


def test_readme_headline_table_is_the_grids_accuracies_effects_and_primary_q(effects):
    """README's headline: the paper's accuracies, the 10-seed grid's A and B accuracies (results/arms.csv),
    B − A and B − B_random with their intervals, and each one's q where it is in the primary family."""
    (rows,) = tables(block(read("README.md"), "headline"))
    heads = list(rows[0])
    arms = pd.read_csv(RESULTS / "arms.csv")
    arms = arms[arms["corruption"] == "none"].set_index(["arm", "cohort"])
    assert int(re.search(r"(\d+) seeds", heads[2])[1]) == int(arms.loc[("A", "normal"), "n_seeds"]) >= 10
    effect_heads, q_heads = heads[3::2], heads[4::2]
    refs = [re.sub(r"[`]", "", h).split("−")[1].split(",")[0].strip() for h in effect_heads]
    assert refs == ["A", "B_random"] and all(h.startswith("q, ") for h in q_heads), heads
    full = pd.read_csv(RESULTS / "effects.csv")
    full = full[(full["metric"] == "accuracy") & (full["corruption"] == "none")].set_index(["arm", "reference", "cohort"])
    cohorts = [_code(r[heads[0]]) for r in rows]
    assert {"normal", "metal", "cam", "new_site"} <= set(cohorts)
    n_q = 0
    for cohort, row in zip(cohorts, rows, strict=True):
        paper = numbers(row[heads[1]])
        assert len(paper) == (2 if cohort in PAPER_ACCURACY else 0), row
        for q, v in zip(paper, PAPER_ACCURACY.get(cohort, ()), strict=True):
            assert agrees(q, 100 * v), (cohort, q)
        grid = numbers(row[heads[2]])
        assert len(grid) == 2, row
        for q, model in zip(grid, ("A", "B"), strict=True):
            assert agrees(q, 100 * arms.loc[(model, cohort), "accuracy"]), (cohort, model, q)
        for ref, head, q_head in zip(refs, effect_heads, q_heads, strict=True):
            r = effects.loc[("B", ref, cohort)]
            _check_effect(row[head], r)
            assert int(re.search(r"(\d+) seeds", head)[1]) == r.n_seeds
            family = full.loc[("B", ref, cohort), "test_family"]
            if family == "primary":
                q = full.loc[("B", ref, cohort), "q_bh"]
                assert row[q_head] == ("< 0.001" if q < 0.0005 else f"{q:.3f}"), (cohort, ref, row[q_head], q)
                n_q += 1
            else:
                assert row[q_head] == "—", (cohort, ref, row[q_head])
    assert n_q == 6  # B − A on four cohorts, B − B_random on two: the primary family's rows in this table


def test_readme_answers_in_three_lines_near_the_top_from_the_published_effects(effects):
    """README's answer: three bullet lines right after the intro (before the first screen ends), each
    effect quoted is B's accuracy effect in results/effects.csv with its interval and seed count, the
    words about each line's direction agree with where the intervals lie, and the full tables are linked."""
    text = read("README.md")
    answer = block(text, "answer")
    assert text.index("## The answer") < text.index("## The study in a paragraph")
    assert len(text[:text.index("<!-- end generated answer")].splitlines()) < 40  # on the first screen
    lines = [line for line in answer.splitlines() if line.startswith("- ")]
    assert len(lines) == 3, answer
    expected = [("A", ["normal", "metal", "new_site"]), ("B_random", ["normal", "metal", "new_site"]),
                ("A", ["cam", "cam_transfer"])]
    for line, (ref, cohorts) in zip(lines, expected, strict=True):
        quoted = re.findall(r"([+-]\d+\.\d) \[([+-]\d+\.\d), ([+-]\d+\.\d)\]", line.replace("−", "-"))
        assert len(quoted) == len(cohorts), line
        for (effect, low, high), cohort in zip(quoted, cohorts, strict=True):
            r = effects.loc[("B", ref, cohort)]
            for q, v in zip((effect, low, high), (r.effect, r.ci_low, r.ci_high), strict=True):
                assert agrees(q, 100 * v), (line, cohort, q, v)
        seeds = {int(effects.loc[("B", ref, c)].n_seeds) for c in cohorts}
        assert f"({seeds.pop()} seeds each)" in line if len(seeds) == 1 else "seeds)" in line, line
    for line, (ref, cohorts) in zip(lines[:2], expected[:2], strict=True):
        verdict = line.split("in accuracy points")[0] if ref == "A" else line.split(f"B − `{ref}`:")[0]
        labels = {"normal": "normal images", "metal": "metal-implant exams", "new_site": "a held-out site"}
        for cohort in cohorts:
            r = effects.loc[("B", ref, cohort)]
            said = verdict.split(labels[cohort])[0]  # the words before the cohort is named
            word = "more accurate" if r.ci_low > 0 else "less accurate" if r.ci_high < 0 else "spans zero"
            assert said.rstrip().endswith(("on", "and")) and word in said, (line, cohort, word)
    e = pd.read_csv(RESULTS / "effects.csv")
    primary = e[e["test_family"] == "primary"]
    n_sig = re.search(r"(\d+) of the (\d+) primary comparisons", lines[2])
    assert (int(n_sig[1]), int(n_sig[2])) == (int(primary["significant"].sum()), len(primary))
    for target in ("(#results)", "(docs/results.md)", "(results/effects.csv)"):
        assert target in answer, target


def test_results_page_study_table_is_cohorts_and_mcnemar(summary):
    mcnemar = pd.read_csv(RESULTS / "mcnemar.csv")
    (rows,) = tables(block(read("docs/results.md"), "study-table"))
    assert [r["cohort"] for r in rows] == list(dict.fromkeys(s for _, s in summary.index))
    for row in rows:
        cohort = row["cohort"]
        for model in ("A", "B"):
            s = summary.loc[(model, cohort)]
            expected = (s.accuracy_mean, s.accuracy_sd, s.ci_low_mean, s.ci_high_mean)
            quoted = numbers(row[f"measured {model}"])
            assert len(quoted) == 4 and all(agrees(q, 100 * v) for q, v in zip(quoted, expected, strict=True)), row
        d = summary.loc[("B", cohort), "accuracy_mean"] - summary.loc[("A", cohort), "accuracy_mean"]
        assert agrees(numbers(row["measured B−A"])[0], 100 * d), row
        paper = [numbers(row[k]) for k in ("paper A", "paper B", "paper B−A")]
        if cohort in PAPER_ACCURACY:
            pa, pb = PAPER_ACCURACY[cohort]
            assert all(agrees(q[0], 100 * v) for q, v in zip(paper, (pa, pb, pb - pa), strict=True)), row
        m = mcnemar[mcnemar["cohort"] == cohort]
        better = int(((m["pvalue"] < 0.05) & (m["c"] > m["b"])).sum())
        worse = int(((m["pvalue"] < 0.05) & (m["b"] > m["c"])).sum())
        said = row["significant?"]
        assert agrees(re.search(r"median p = (\S+?)\)", said)[1], float(m["pvalue"].median())), said
        counts = re.search(r"better in (\d+)/(\d+), worse in (\d+)/\d+", said)
        if counts:
            assert (int(counts[1]), int(counts[3]), int(counts[2])) == (better, worse, len(m)), said
        elif "in all" in said:
            assert (better if "B better" in said else worse) == len(m), said
        else:
            assert re.search(r"\((\d+)/(\d+) seeds\)", said)[1] == str(better) == str(worse), said


def test_results_page_effects_tables_are_the_effects_table(effects):
    page = read("docs/results.md")
    shown = []
    for rows in tables(block(page, "controls-tables")):
        for row in rows:
            arm, ref = (s.strip() for s in row["comparison"].split("−"))
            shown.append((arm, ref))
            for cohort in [h for h in row if h not in ("comparison", "seeds")]:
                r = effects.loc[(arm, ref, cohort)]
                _check_effect(row[cohort], r)
                assert int(row["seeds"]) == r.n_seeds, row
    assert set(shown) == {(a, r) for a, r, _ in effects.index}
    # each caption names its interval method and the families' sizes of the table
    full = pd.read_csv(RESULTS / "effects.csv")
    sizes = full.groupby("test_family")["n_comparisons"].max()
    for caption in re.findall(r"^Accuracy difference in points.*$", block(page, "controls-tables"), re.MULTILINE):
        assert f"primary {sizes['primary']} and secondary {sizes['secondary']} comparisons" in caption, caption
        assert "t interval" in caption or "percentile interval" in caption, caption


def test_results_page_grid_counts_and_seeds_per_arm():
    from knee_tf.controls.jobs import controls_plan
    from knee_tf.study.config import get_config
    from knee_tf.study.pipeline import CONTROLS_STEP

    text = " ".join(block(read("docs/results.md"), "grid").split())
    jobs = [d for d in (RESULTS / "grid").iterdir() if (d / "job.json").exists()]
    config = json.loads((RESULTS / "published.json").read_text())["steps"][CONTROLS_STEP]["config"]
    published, planned = (int(n) for n in re.search(r"(\d+) of the full grid's (\d+) jobs", text).groups())
    assert (published, planned) == (len(jobs), len(controls_plan(get_config(config))))
    assert int(re.search(r"MB for (\d+) jobs", text)[1]) == len(jobs)
    assert int(re.search(r"are in (\d+) of them", text)[1]) == sum((d / "cross_predictions.parquet").exists() for d in jobs)
    effects = pd.read_csv(RESULTS / "effects.csv")
    for family in ("primary", "secondary"):
        rows = effects[effects["test_family"] == family]
        n, q = re.search(rf"(\d+) {family} \(smallest q (< 0\.001|\d+\.\d+)\)", text).groups()
        assert int(n) == len(rows) == rows["n_comparisons"].max(), family
        assert rows["q_bh"].min() < 0.0005 if q == "< 0.001" else agrees(q, rows["q_bh"].min()), family
    assert int(re.search(r"the other (\d+) rows are exploratory", text)[1]) == (effects["test_family"] == "exploratory").sum()
    from knee_tf.controls.publish import published_jobs
    from knee_tf.data.layout import published_grid

    dirty = published_jobs(published_grid(ROOT))
    dirty = dirty[dirty["dirty"]]
    assert int(re.search(r"(\d+) published jobs record a code commit with uncommitted changes", text)[1]) == len(dirty)

    arms = pd.read_csv(RESULTS / "arms.csv")
    arms = arms[arms["corruption"] == "none"]
    own = arms[arms["cohort"] == "normal"].set_index("arm")
    cross = arms[arms["cohort"] == "cam_transfer"].set_index("arm")["n_seeds"]
    (rows,) = tables(block(read("docs/results.md"), "grid"))
    assert [_code(r["arm"]) for r in rows] == list(own.index)
    for row in rows:
        arm = _code(row["arm"])
        seeds = [int(n) for n in numbers(row["seeds"])]
        n, planned = own.loc[arm, "n_seeds"], own.loc[arm, "n_seeds_planned"]
        assert seeds == ([n] if n == planned else [n, planned]), row
        assert numbers(row["seeds with `cam_transfer`, `cam_b`"]) == ([str(cross[arm])] if arm in cross.index else []), row
        assert [int(n) for n in numbers(row["seeds from a dirty tree"])] == sorted(dirty.loc[dirty["job"] == arm, "seed"]), row


def test_results_page_cohort_calibration_faithfulness_and_difficulty_tables(summary):
    page = read("docs/results.md")
    arms = pd.read_csv(RESULTS / "arms.csv")
    a = arms[(arms["arm"] == "A") & (arms["corruption"] == "none")].set_index("cohort")
    (rows,) = tables(block(page, "test-cohorts"))
    assert {_code(r["cohort"]) for r in rows} == set(a.index)
    for row in rows:
        c = _code(row["cohort"])
        assert [int(row[k].replace(",", "")) for k in ("images", "patients")] == [a.loc[c, "n_images"], a.loc[c, "n_patients"]]

    (rows,) = tables(block(page, "calibration"))
    for row in rows:
        for model in ("A", "B"):
            s = summary.loc[(model, row["cohort"])]
            quoted = numbers(row[f"ECE, Model {model}"])
            assert agrees(quoted[0], 100 * s.ece_mean) and agrees(quoted[1], 100 * s.ece_sd), row

    faith = pd.read_csv(RESULTS / "faithfulness.csv")
    (rows,) = tables(block(page, "faithfulness"))
    names = {"Grad-CAM": "gradcam", "Grad-CAM++": "gradcam++"}
    for row in rows:
        for head, cell in list(row.items())[1:]:
            method, kind = head.rsplit(" ", 1)
            sel = faith["method"] == "random" if row["layer"] == "random map" else (
                (faith["layer"] == row["layer"]) & (faith["method"] == names[method]))
            assert sel.sum() == 1 and agrees(cell, float(faith.loc[sel, f"{kind}_auc"].iloc[0])), (row["layer"], head)
    assert len(rows) == len(faith.drop_duplicates("layer"))

    linear = json.loads((RESULTS / "linear_baseline.json").read_text())
    planes = summarize_seeds(pd.read_csv(RESULTS / "breakdown_plane.csv")).set_index(["model", "cohort", "plane"])
    (rows,) = tables(block(page, "difficulty"))
    for row in rows:
        p = row["plane"]
        expected = ((linear["accuracy"], summary.loc[("A", "normal"), "accuracy_mean"], summary.loc[("A", "metal"), "accuracy_mean"])
                    if p == "all" else (linear[f"accuracy_{p}"], planes.loc[("A", "normal", p), "accuracy_mean"],
                                        planes.loc[("A", "metal", p), "accuracy_mean"]))
        quoted = [numbers(row[k])[0] for k in list(row)[1:]]
        assert all(agrees(q, 100 * v) for q, v in zip(quoted, expected, strict=True)), row
    assert [r["plane"] for r in rows] == ["axial", "sagittal", "coronal", "all"]


def test_results_page_prescription_table_is_the_prescription_table():
    p = pd.read_csv(RESULTS / "prescription.csv")
    p = p[(p["cohort"] == "normal") & (p["corruption"] == "none")].set_index("arm")
    text = block(read("docs/results.md"), "prescription")
    (rows,) = tables(text)
    assert len(rows) >= 2
    for row in rows:
        r = p.loc[_code(row["arm"])]
        assert int(row["seeds"]) == r.n_seeds and agrees(numbers(row["slice accuracy"])[0], 100 * r.slice_accuracy)
        for head, key in (("every slice right", "all_right"), ("Jaccard index", "jaccard"),
                          ("both ends within one slice", "range_within_one")):
            quoted = numbers(row[head])
            assert all(agrees(q, r[k]) for q, k in zip(quoted, (key, f"{key}_low", f"{key}_high"), strict=True)), row
    assert int(re.search(r"(\d+) exam-planes", text)[1]) == int(p["n_exam_planes"].iloc[0])


def test_performance_page_precision_table_and_its_sentence():
    t = pd.read_csv(RESULTS / "precision.csv")
    page = read("docs/performance.md")
    (rows,) = tables(block(page, "precision"))
    stats = {}
    for row in rows:
        g = t[t["precision"] == row["precision"]].set_index("seed")
        for seed in g.index:
            assert agrees(numbers(row[f"seed {seed}"])[0], 100 * g.loc[seed, "accuracy"]), (row, seed)
        mean, sd = numbers(row["mean ± sd"])
        assert agrees(mean, 100 * g["accuracy"].mean()) and agrees(sd, 100 * g["accuracy"].std(ddof=1)), row
        assert [int(e) for e in numbers(row["best epochs"])] == list(g["best_epoch"]), row
        assert agrees(row["training images/s"], float(g["train_images_per_s"].median())), row
        stats[row["precision"]] = (100 * g["accuracy"].mean(), 100 * g["accuracy"].std(ddof=1))
    assert set(stats) == set(t["precision"])
    # "The two means differ by D points, less than either seed spread (S1 and S2 points)"
    text = prose(page)
    d = re.search(r"means differ by (\S+) points", text)[1]
    spreads = re.search(r"seed spread \((\S+) and (\S+) points\)", text).groups()
    (m1, s1), (m2, s2) = stats["float32"], stats["mixed_bfloat16"]
    assert agrees(d, abs(m1 - m2)) and agrees(spreads[0], s1) and agrees(spreads[1], s2)
    assert abs(m1 - m2) < min(s1, s2)


def test_effects_quoted_in_prose_are_cells_of_the_effects_table():
    """Every 'effect [low, high]' triple in README's and the results page's prose (points, one decimal)
    is the accuracy effect and interval of some comparison in results/effects.csv."""
    t = pd.read_csv(RESULTS / "effects.csv")
    t = t[t["metric"] == "accuracy"]
    cells = {f"{100 * r.effect:+.1f} [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]" for r in t.itertuples()}
    quoted = [q for page in ("README.md", "docs/results.md")
              for q in re.findall(r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", prose(read(page)))]
    assert len(quoted) >= 10, "the results page's prose quotes fewer effects than expected: has it moved?"
    missing = sorted(set(quoted) - cells)
    assert not missing, f"quoted effects that results/effects.csv does not have: {missing}"


def test_accuracies_points_and_p_values_quoted_in_prose_are_published_ones(summary):
    """Every accuracy ('91.0 %'), difference in points ('2.4 points', 'the paper: +9.7') and McNemar
    p-value list that README's and the results page's prose quote is one that results/ (or the paper's
    table) gives: the study's per-cohort means and their differences, the per-plane means, the linear
    baseline, the paper's accuracies and differences, the per-seed McNemar p-values of one cohort."""
    acc = {(m, c): v for (m, c), v in summary["accuracy_mean"].items()}
    planes = summarize_seeds(pd.read_csv(RESULTS / "breakdown_plane.csv"))
    linear = json.loads((RESULTS / "linear_baseline.json").read_text())
    accuracies = (list(acc.values()) + list(planes["accuracy_mean"]) + [v for p in PAPER_ACCURACY.values() for v in p]
                  + [v for k, v in linear.items() if k.startswith("accuracy")])
    cohorts = {c for _, c in acc}
    points = ([acc[("B", c)] - acc[("A", c)] for c in cohorts] + [acc[("A", "normal")] - acc[("A", c)] for c in cohorts]
              + [b - a for a, b in PAPER_ACCURACY.values()]
              + [PAPER_ACCURACY["normal"][0] - a for a, _ in PAPER_ACCURACY.values()])
    mcnemar = pd.read_csv(RESULTS / "mcnemar.csv")
    n_checked = 0
    for page in ("README.md", "docs/results.md"):
        text = prose(read(page))
        for q in re.findall(r"(\d+\.\d) ?%", text):
            assert any(agrees(q, 100 * v) for v in accuracies), (page, q)
            n_checked += 1
        for q in re.findall(r"([+-]?\d+\.\d) points", text) + re.findall(r"the paper: ([+-]?\d+\.\d)\b(?! ?%)", text):
            assert any(agrees(q.lstrip("+-"), abs(100 * v)) for v in points), (page, q)
            n_checked += 1
        for said in re.findall(r"McNemar p = ((?:[\d.]+(?:, | and )?)+)", text):
            quoted = re.findall(r"\d\.\d+", said)
            assert any(len(g) == len(quoted) and all(agrees(q, v) for q, v in zip(quoted, g.sort_values("seed")["pvalue"], strict=True))
                       for _, g in mcnemar.groupby("cohort")), (page, said)
            n_checked += 1
    assert n_checked >= 10, n_checked
    assert np.isfinite(accuracies).all()

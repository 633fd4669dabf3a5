"""The committed results/ are what the code computes, and README quotes them without retyping errors."""

from pathlib import Path

import pandas as pd
import pytest

from knee_tf.study.evaluate import summarize_seeds
from knee_tf.study.report import paper_comparison_markdown

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"


def _rows(text: str) -> dict[str, list[str]]:
    """Markdown table rows keyed by their first cell (cohort)."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in ("normal", "metal", "cam"):
            out[cells[0]] = cells
    return out


def test_results_table_is_recomputed_from_the_committed_csvs():
    cohorts = pd.read_csv(RESULTS / "cohorts.csv")
    mcnemar = pd.read_csv(RESULTS / "mcnemar.csv")
    expected = paper_comparison_markdown(summarize_seeds(cohorts), mcnemar)
    assert (RESULTS / "results_table.md").read_text().strip() == expected.strip()
    assert cohorts["seed"].nunique() >= 3  # committed results come from at least three seeds


def test_readme_quotes_the_measured_cells_exactly():
    generated = _rows((RESULTS / "results_table.md").read_text())
    readme_text = (ROOT / "README.md").read_text()
    quoted = _rows(readme_text[readme_text.index("## Results"):])
    assert set(quoted) == {"normal", "metal", "cam"}
    for cohort, cells in quoted.items():
        assert cells[:7] == generated[cohort][:7], cohort  # paper A/B/diff, measured A/B/diff


def test_readme_layer_claim_holds_in_the_faithfulness_table():
    """README: pool2's Grad-CAM is the most faithful (lowest deletion, highest insertion AUC), pool4 next,
    and pool1 and pool3 delete no better than a random map."""
    t = pd.read_csv(RESULTS / "faithfulness.csv")
    g = t[t["method"] == "gradcam"].set_index("layer")
    assert g["deletion_auc"].idxmin() == "pool2" and g["insertion_auc"].idxmax() == "pool2"
    assert g["deletion_auc"].rank()["pool4"] == 2 and g["insertion_auc"].rank(ascending=False)["pool4"] == 2
    rnd = t[t["method"] == "random"].iloc[0]
    assert g.loc["pool4", "deletion_auc"] < rnd["deletion_auc"]
    assert min(g.loc["pool1", "deletion_auc"], g.loc["pool3", "deletion_auc"]) >= rnd["deletion_auc"]
    readme = " ".join((ROOT / "README.md").read_text().split())  # line breaks as spaces
    d, i = g["deletion_auc"], g["insertion_auc"]
    assert (f"pool2 is (deletion {d['pool2']:.2f}, insertion {i['pool2']:.2f}), then pool4 "
            f"({d['pool4']:.2f}, {i['pool4']:.2f})") in readme
    assert (f"(deletion {d['pool1']:.2f} and {d['pool3']:.2f} against {rnd['deletion_auc']:.2f}") in readme


def test_published_record_matches_the_published_tables():
    """results/published.json (what `knee-tf study --publish` checks against) names the seeds in cohorts.csv."""
    import json

    record = json.loads((RESULTS / "published.json").read_text())
    seeds = sorted(int(s) for s in pd.read_csv(RESULTS / "cohorts.csv")["seed"].unique())
    assert record["n_seeds"] == len(seeds) and record["seeds"] == seeds


@pytest.mark.slow  # notebook 07's tables recomputed from every published job's predictions
def test_controls_tables_and_readme_effects_are_recomputed_from_the_published_predictions(tmp_path):
    """Issue 11: the per-image predictions of the published grid jobs (results/grid/, the store notebook 07
    builds from them with controls_source="published") give back results/arms.csv, effects.csv and
    prescription.csv, and README's effects tables, exactly."""
    import json

    import pytest

    from knee_tf.controls import prediction_store as store
    from knee_tf.controls.grid import controls_plan
    from knee_tf.controls.markdown_tables import controls_markdown
    from knee_tf.controls.summary import published_store
    from knee_tf.data.layout import RunLayout, published_grid
    from knee_tf.study.config import get_config
    from knee_tf.study.pipeline import CONTROLS_STEP

    lay = RunLayout(ROOT)  # the repository's results/ mirrors a run folder's
    record = json.loads((RESULTS / "published.json").read_text())
    if not lay.effects_table.exists() or CONTROLS_STEP not in record.get("steps", {}):
        pytest.skip("notebook 07 has not been published from the grid (knee-tf controls --publish)")
    jobs = controls_plan(get_config(record["steps"][CONTROLS_STEP]["config"]))
    built = store.write_store(tmp_path / "store.parquet", published_store(published_grid(ROOT), jobs))
    arms = pd.read_csv(lay.arms_table)
    effects = pd.read_csv(lay.effects_table)
    info = arms.loc[:, : arms.columns[arms.columns.get_loc("cohort") - 1]].drop_duplicates("arm")
    family = dict(zip(info["arm"], info["family"], strict=True)) if "family" in info else None
    comparisons = list(dict.fromkeys(zip(effects["arm"], effects["reference"], strict=True)))
    tables = store.recompute_tables(store.read_store(built), comparisons, family=family,
                                    arm_info=info if len(info.columns) > 1 else None)
    assert store.compare_with_published(tables, {name: getattr(lay, name) for name in tables}) == []
    readme = (ROOT / "README.md").read_text()
    for table in controls_markdown(tables["effects_table"]):
        assert table.strip() in readme, table.splitlines()[2]
    # the store's size as README gives it ("(28 MB for 131 jobs"): the rebuilt file, the published jobs
    import re

    size = re.search(r"\((\d+) MB for (\d+) jobs", " ".join(readme.split()))
    assert size, "README no longer gives the prediction store's size as '(N MB for M jobs'"
    n_jobs = sum(1 for d in published_grid(ROOT).root.iterdir() if d.is_dir())
    assert (int(size[1]), int(size[2])) == (round(built.stat().st_size / 1e6), n_jobs), (size[0], built.stat().st_size)
    # README is what `knee-tf controls --publish` writes (knee_tf.controls.readme): rewriting it changes nothing
    from knee_tf.controls.readme import controls_passages

    assert controls_passages(readme, tables["effects_table"], int(size[1]), n_jobs) == readme


def test_readme_effects_quoted_in_prose_are_cells_of_the_published_effects_table():
    """Every "effect [low, high]" triple that README's Results quote (points, one decimal) is the
    accuracy effect and interval of some comparison in results/effects.csv: no number typed by hand."""
    import re

    import pytest

    from knee_tf.data.layout import RunLayout

    lay = RunLayout(ROOT)
    if not lay.effects_table.exists():
        pytest.skip("the controls grid (issue 11) has not been published yet: no results/effects.csv")
    t = pd.read_csv(lay.effects_table)
    t = t[t["metric"] == "accuracy"]
    cells = {f"{100 * r.effect:+.1f} [{100 * r.ci_low:+.1f}, {100 * r.ci_high:+.1f}]" for r in t.itertuples()}
    text = (ROOT / "README.md").read_text()
    # whitespace joined: a triple that README's line wrapping splits is checked too
    results = " ".join(text[text.index("## Results"):text.index("## Performance")].replace("−", "-").split())
    quoted = re.findall(r"[+-]\d+\.\d \[[+-]\d+\.\d, [+-]\d+\.\d\]", results)
    assert len(quoted) >= 10, "README's Results quote fewer effects than expected: has the section moved?"
    missing = sorted(set(quoted) - cells)
    assert not missing, f"README quotes effects that results/effects.csv does not have: {missing}"


def test_readme_counts_and_prescription_numbers_are_the_published_ones():
    """README's prose around the controls tables quotes counts and proportions, not effects: the number of
    published grid jobs out of the full plan, the number of comparisons and the smallest q of the FDR
    correction, and the prescription endpoint per arm. Each is checked against results/ here."""
    import re

    import pytest

    from knee_tf.controls.grid import controls_plan
    from knee_tf.data.layout import RunLayout
    from knee_tf.study.config import get_config

    lay = RunLayout(ROOT)
    if not lay.effects_table.exists() or not lay.prescription_table.exists():
        pytest.skip("the controls grid (issue 11) has not been published yet: no results/effects.csv")
    text = " ".join((ROOT / "README.md").read_text().replace("*", "").split())
    n_published = sum(1 for p in (RESULTS / "grid").iterdir() if p.is_dir() and not p.name.startswith("."))
    n_planned = len(controls_plan(get_config("full")))
    counts = re.findall(r"(\d+) (?:grid jobs published so far )?of (?:the full grid's )?(\d+)(?: jobs)?\b", text)
    assert len(counts) >= 2, "README no longer says how much of the grid is published: has the prose moved?"
    assert {(int(a), int(b)) for a, b in counts} == {(n_published, n_planned)}, counts

    effects = pd.read_csv(lay.effects_table)
    n_comparisons = set(re.findall(r"over all (\d+) comparisons", text))
    assert n_comparisons == {str(len(effects))} and set(effects["n_comparisons"]) == {len(effects)}
    assert f"the smallest q is {effects['q_bh'].min():.2f}" in text

    p = pd.read_csv(lay.prescription_table)
    p = p[(p["cohort"] == "normal") & (p["corruption"] == "none")].set_index("arm")
    para = text[text.index("The prescription endpoint (per exam and plane"):text.index("Difficulty.")]
    assert f"{int(p['n_exam_planes'].iloc[0])} exam-planes" in para
    all_right, jaccard = para.split("Jaccard index", 1)
    for column, part in (("all_right", all_right), ("jaccard", jaccard)):
        quoted = re.findall(r"`?([A-Za-z][A-Za-z0-9_]*)`? (0\.\d{3})\b", part)
        assert quoted, f"no {column} values quoted in README's prescription paragraph"
        for arm, value in quoted:
            assert value == f"{p.loc[arm, column]:.3f}", (column, arm, value)


def test_readme_claims_in_words_hold_in_the_published_effects_table():
    """README's Results state findings in words, beside the quoted intervals. Each is checked here against
    results/effects.csv (accuracy, the four cohorts without corruption), so that a re-published grid
    that changes a finding fails this test instead of leaving the sentence wrong."""
    import pytest

    from knee_tf.core.vocab import CONTROL_ARMS
    from knee_tf.data.layout import RunLayout

    lay = RunLayout(ROOT)
    if not lay.effects_table.exists():
        pytest.skip("the controls grid (issue 11) has not been published yet: no results/effects.csv")
    e = pd.read_csv(lay.effects_table)
    assert e["q_bh"].min() > 0.05  # "No effect is significant after correction"
    e = e[(e["metric"] == "accuracy") & (e["corruption"] == "none")
          & e["cohort"].isin(["normal", "metal", "new_site", "cam"])]
    vs = {(r.arm, r.reference, r.cohort): r for r in e.itertuples()}

    def row(arm, cohort, ref="A"):
        return vs[(arm, ref, cohort)]

    # "B is worse than A on normal images"
    assert row("B", "normal").ci_high < 0
    # "Plain erasing does best on metal exams" (of B and the controls, against A)
    metal = {a: row(a, "metal").effect for a in ("B", *CONTROL_ARMS) if (a, "A", "metal") in vs}
    assert max(metal, key=metal.get) == "erasing", metal
    # "Training longer explains nothing: A_steps - A lies within one point of zero on every cohort"
    assert all(abs(row("A_steps", c).effect) < 0.01 for c in ("normal", "metal", "new_site", "cam"))
    # "on the four cohorts no interval of B_keep - A lies below zero"
    assert all(row("B_keep", c).ci_high > 0 for c in ("normal", "metal", "new_site", "cam"))
    # "every interval [of B - A on normal images along the learning curve] crosses zero"
    for n in (25, 50, 100, 200):
        r = row(f"B_n{n}", "normal", f"A_n{n}")
        assert r.ci_low < 0 < r.ci_high, n
    # "Of the four layers, pool4's masks give the largest metal gain and the lowest normal accuracy"
    layers = {"pool1": "B_pool1", "pool2": "B_pool2", "pool3": "B_pool3", "pool4": "B"}
    assert max(layers, key=lambda k: row(layers[k], "metal").effect) == "pool4"
    assert min(layers, key=lambda k: row(layers[k], "normal").effect) == "pool4"
    # "No weight range, augmented share or map target makes B better than A on normal images"
    for arm in ("B_w25_50", "B_w50_75", "B_w75_100", "B_share0p25", "B_share0p5", "B_share2", "B_label_maps"):
        assert row(arm, "normal").effect < 0, arm
    # "B's gain on cohort 3 belongs to its own generator": above zero on cam, not on cam_transfer or cam_b
    full = pd.read_csv(lay.effects_table)
    full = full[(full["metric"] == "accuracy") & (full["corruption"] == "none") & (full["reference"] == "A")
                & (full["arm"] == "B")].set_index("cohort")
    assert full.loc["cam", "ci_low"] > 0
    assert all(full.loc[c, "ci_low"] < 0 < full.loc[c, "ci_high"] for c in ("cam_transfer", "cam_b"))
    # "... where random masks do at least as well as B's": B - B_random below zero on both, its interval
    # reaching zero on cam_transfer and below zero on cam_b
    cross = pd.read_csv(lay.effects_table).query("metric == 'accuracy' and corruption == 'none' and arm == 'B' "
                                                 "and reference == 'B_random'").set_index("cohort")
    assert all(cross.loc[c, "effect"] < 0 for c in ("cam_transfer", "cam_b"))
    assert cross.loc["cam_transfer", "ci_high"] >= 0 > cross.loc["cam_b", "ci_high"]
    # README: "The cam_transfer / cam_b cohorts are in them for N published jobs"
    import re

    text = " ".join((ROOT / "README.md").read_text().split())
    quoted = re.search(r"cohorts are in them for (?:all )?(\d+) (?:published|compared) jobs", text)
    n_cross = sum(1 for _ in (RESULTS / "grid").glob("*/cross_predictions.parquet"))
    assert quoted and int(quoted[1]) == n_cross
    # "The other N jobs' cross cohorts wait for their models (...)", unless every job but the transfer
    # Model A (whose maps make cam_transfer: it has none) has them
    waiting = re.search(r"The other (\d+) jobs' cross cohorts wait", text)
    n_jobs = sum(1 for d in (RESULTS / "grid").iterdir() if d.is_dir())
    assert (int(waiting[1]) if waiting else 0) == n_jobs - 1 - n_cross
    # README: "cam_transfer / cam_b have N seeds for A, B, A_steps, B_random and erasing, M for the
    # ablations and K for B_untrained, B_keep and mri_aug" (the published cross cohorts' seeds per arm)
    said = re.search(r"`cam_b` have (\d+) seeds for A, B, `A_steps`, `B_random` and `erasing`, (\d+) for the "
                     r"ablations and (\d+) for `B_untrained`, `B_keep` and `mri_aug`", text)
    assert said, "README no longer says how many seeds the cross cohorts have per arm"
    arms = pd.read_csv(lay.arms_table)
    arms = arms[(arms["cohort"] == "cam_transfer") & (arms["corruption"] == "none")]
    seeds = dict(zip(arms["arm"], arms["n_seeds"], strict=True))
    # the ablations: B's family, no learning-curve variant, not B itself
    ablations = list(arms.loc[(arms["family"] == "B") & arms["variant"].isna() & (arms["arm"] != "B"), "arm"])
    assert {seeds[a] for a in ("A", "B", "A_steps", "B_random", "erasing")} == {int(said[1])}
    assert ablations and {seeds[a] for a in ablations} == {int(said[2])}, ablations
    assert {seeds[a] for a in ("B_untrained", "B_keep", "mri_aug")} == {int(said[3])}
    # "normal accuracy falls as the share grows, and two copies per image give the lowest of the four"
    shares = [row(a, "normal").effect for a in ("B_share0p25", "B_share0p5", "B", "B_share2")]
    assert shares == sorted(shares, reverse=True)


def test_readme_controls_passages_are_rewritten_from_an_effects_table():
    """knee_tf.controls.readme (what `knee-tf controls --publish` runs): the tables block and the counts beside it
    are replaced from the effects table; the text around them is kept; a README without the block is an error."""
    import pytest

    from knee_tf.controls.markdown_tables import controls_markdown
    from knee_tf.controls.readme import TABLE_CAPTION, TABLE_HEAD, controls_passages

    effects = pd.read_csv(RESULTS / "effects.csv")
    effects = effects[effects["arm"].isin(["B", "B_random"])]
    stale = (f"intro\n\n{TABLE_HEAD} STALE |\n|---|---|\n\n{TABLE_CAPTION} (STALE caption)\n\n"
             "Benjamini-Hochberg over all 3 comparisons; the smallest q is 0.99 (1 MB for 2 jobs).\nend\n")
    out = controls_passages(stale, effects, 5, 7)
    assert out.startswith("intro\n\n") and out.endswith("(5 MB for 7 jobs).\nend\n")
    assert f"over all {effects['n_comparisons'].iloc[0]} comparisons" in out and f"smallest q is {effects['q_bh'].min():.2f}" in out
    assert "STALE" not in out and all(t.strip() in out for t in controls_markdown(effects))
    assert controls_passages(out, effects, 5, 7) == out
    with pytest.raises(ValueError, match="no controls tables"):
        controls_passages("intro only\n", effects, 5, 7)


def test_refresh_controls_rewrites_readme_from_a_results_folder(tmp_path):
    """knee_tf.controls.readme.refresh_controls on a repository top: reads results/effects.csv and the published
    jobs, rewrites README.md's controls passages atomically, and says what it did."""
    import shutil

    from knee_tf.controls.readme import refresh_controls

    (tmp_path / "results" / "grid").mkdir(parents=True)
    shutil.copy(RESULTS / "effects.csv", tmp_path / "results" / "effects.csv")
    for job in ("model_a_seed0", "model_b_seed0"):
        shutil.copytree(RESULTS / "grid" / job, tmp_path / "results" / "grid" / job)
    (tmp_path / "README.md").write_text((ROOT / "README.md").read_text())
    said = []
    refresh_controls(tmp_path, log=said.append)
    text = " ".join((tmp_path / "README.md").read_text().split())
    assert "MB for 2 jobs" in text and "rewritten" in said[0] and "for 2 jobs" in said[0]
    refresh_controls(tmp_path, log=said.append)
    assert "unchanged" in said[1]

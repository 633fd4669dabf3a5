"""The committed results/ are what the code computes from the committed predictions; the pages that quote
them (README.md, docs/results.md, docs/performance.md) are what knee_tf.controls.results_page writes from
them; and the findings the results page states in words hold in results/. The numbers the pages quote
are compared with results/ in tests/controls/test_results_pages.py."""

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from markdown_pages import prose

from knee_tf.controls import prediction_store as store
from knee_tf.controls.arms import CONTROL, arm_names
from knee_tf.controls.jobs import controls_plan
from knee_tf.controls.results_page import (
    PAGES,
    begin_marker,
    end_marker,
    fill_blocks,
    refresh_results,
    results_blocks,
)
from knee_tf.controls.summary import published_store
from knee_tf.data.layout import RunLayout, published_grid
from knee_tf.study.config import get_config
from knee_tf.study.evaluate import summarize_seeds
from knee_tf.study.pipeline import CONTROLS_STEP
from knee_tf.study.report import paper_comparison_markdown

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "results"


def test_results_table_is_recomputed_from_the_committed_csvs():
    cohorts = pd.read_csv(RESULTS / "cohorts.csv")
    mcnemar = pd.read_csv(RESULTS / "mcnemar.csv")
    expected = paper_comparison_markdown(summarize_seeds(cohorts), mcnemar)
    assert (RESULTS / "results_table.md").read_text().strip() == expected.strip()
    assert cohorts["seed"].nunique() >= 3  # committed results come from at least three seeds


def test_layer_claim_holds_in_the_faithfulness_table():
    """Results page: pool2's Grad-CAM is the most faithful (lowest deletion, highest insertion AUC), pool4
    next, and pool1 and pool3 delete no better than a random map."""
    t = pd.read_csv(RESULTS / "faithfulness.csv")
    g = t[t["method"] == "gradcam"].set_index("layer")
    assert g["deletion_auc"].idxmin() == "pool2" and g["insertion_auc"].idxmax() == "pool2"
    assert g["deletion_auc"].rank()["pool4"] == 2 and g["insertion_auc"].rank(ascending=False)["pool4"] == 2
    rnd = t[t["method"] == "random"].iloc[0]
    assert g.loc["pool4", "deletion_auc"] < rnd["deletion_auc"]
    assert min(g.loc["pool1", "deletion_auc"], g.loc["pool3", "deletion_auc"]) >= rnd["deletion_auc"]


def test_published_record_matches_the_published_tables():
    """results/published.json (what `knee-tf study --publish` checks against) names the seeds in cohorts.csv."""
    record = json.loads((RESULTS / "published.json").read_text())
    seeds = sorted(int(s) for s in pd.read_csv(RESULTS / "cohorts.csv")["seed"].unique())
    assert record["n_seeds"] == len(seeds) and record["seeds"] == seeds


@pytest.mark.slow  # notebook 07's tables recomputed from every published job's predictions
def test_controls_tables_and_the_pages_are_recomputed_from_the_published_predictions(tmp_path):
    """Issue 11: the per-image predictions of the published grid jobs (results/grid/, the store notebook 07
    builds from them with controls_source="published") give back results/arms.csv, effects.csv and
    prescription.csv exactly; and README.md, docs/results.md and docs/performance.md are what
    `knee-tf controls --publish` writes from results/ (knee_tf.controls.results_page): rewriting them
    changes nothing."""
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
    # the pages are the generator's fixed point (the store's size from the store built here)
    blocks = results_blocks(ROOT, store_bytes=built.stat().st_size)
    for page, names in PAGES.items():
        text = (ROOT / page).read_text()
        assert fill_blocks(text, {n: blocks[n] for n in names}, where=page) == text, (
            f"{page} is not what `knee-tf controls --publish` writes from results/")


def test_claims_in_words_hold_in_the_published_tables():
    """README and the results page state findings in words, beside the numbers. Each is checked here
    against results/ (accuracy, cohorts without corruption, unless said), so that a re-published grid or
    study that changes a finding fails this test instead of leaving the sentence wrong."""
    lay = RunLayout(ROOT)
    if not lay.effects_table.exists():
        pytest.skip("the controls grid (issue 11) has not been published yet: no results/effects.csv")
    e = pd.read_csv(lay.effects_table)
    # "Seven of the eight primary tests are significant": B - A on normal, metal, cam and new_site, B - A_steps
    # on normal and metal, B - B_random on normal, not B - B_random on metal; "None of the secondary family's"
    primary = e[e["test_family"] == "primary"]
    assert len(primary) == 8 and set(zip(*primary.loc[primary["significant"], ["reference", "cohort"]].T.values,
                                         strict=True)) == {
        ("A", "normal"), ("A", "metal"), ("A", "cam"), ("A", "new_site"), ("A_steps", "normal"), ("A_steps", "metal"),
        ("B_random", "normal")}
    assert (primary["arm"] == "B").all()
    assert not e.loc[e["test_family"] == "secondary", "significant"].any()
    assert not e.loc[e["test_family"] == "exploratory", "significant"].any() and \
        e.loc[e["test_family"] == "exploratory", "q_bh"].isna().all()
    # every row's test is its interval inverted
    assert ((e["p"] < 0.05) == ((e["ci_low"] > 0) | (e["ci_high"] < 0))).all()
    plain = e[(e["metric"] == "accuracy") & (e["corruption"] == "none")]
    e = plain[plain["cohort"].isin(["normal", "metal", "new_site", "cam"])]
    vs = {(r.arm, r.reference, r.cohort): r for r in e.itertuples()}

    def row(arm, cohort, ref="A"):
        return vs[(arm, ref, cohort)]

    # "B is worse than A on normal images, and on the held-out site"; README: "loses accuracy on normal
    # images and on the held-out site"
    assert row("B", "normal").ci_high < 0 and row("B", "new_site").ci_high < 0
    # README: "Model B is more accurate than A on metal-implant exams, its largest gain here"
    gains = {c: r.effect for c, r in plain[(plain["arm"] == "B") & (plain["reference"] == "A")].set_index("cohort").iterrows()}
    assert max(gains, key=gains.get) == "metal" and row("B", "metal").ci_low > 0, gains
    # the 3-seed study: "Metal-implant exams are where Model A loses most"; B "better in every seed" on metal
    # exams, worse "significantly in two seeds of three" on normal images, "significant in one seed" on the
    # held-out site, "not significant in any seed" on cohort 3
    acc = summarize_seeds(pd.read_csv(RESULTS / "cohorts.csv")).set_index(["model", "cohort"])["accuracy_mean"]
    assert acc["A"].idxmin() == "metal"
    m = pd.read_csv(RESULTS / "mcnemar.csv")
    m = m[m["pvalue"] < 0.05]
    assert ((m["c"] > m["b"]).groupby(m["cohort"]).sum().to_dict(), (m["b"] > m["c"]).groupby(m["cohort"]).sum().to_dict()) == (
        {"metal": 3, "normal": 0, "new_site": 0}, {"metal": 0, "normal": 2, "new_site": 1})
    # "the controls grid of 5–10 seeds per arm"
    n_seeds = pd.read_csv(lay.arms_table)["n_seeds"]
    assert (n_seeds.min(), n_seeds.max()) == (5, 10)
    # "Random masks ... do at least as well as the Grad-CAM masks on every cohort": no interval of
    # B - B_random lies above zero
    vs_random = plain[(plain["arm"] == "B") & (plain["reference"] == "B_random")]
    assert len(vs_random) >= 5 and (vs_random["ci_low"] < 0).all(), vs_random[["cohort", "ci_low"]]
    # "Plain erasing does best on metal exams" (of B and the controls, against A)
    metal = {a: row(a, "metal").effect for a in ("B", *arm_names(CONTROL)) if (a, "A", "metal") in vs}
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
    # "normal accuracy falls as the share grows, and two copies per image give the lowest of the four"
    shares = [row(a, "normal").effect for a in ("B_share0p25", "B_share0p5", "B", "B_share2")]
    assert shares == sorted(shares, reverse=True)
    # "B's gain on cohort 3 belongs to its own generator": above zero on cam, not on cam_transfer or cam_b
    full = plain[(plain["reference"] == "A") & (plain["arm"] == "B")].set_index("cohort")
    assert full.loc["cam", "ci_low"] > 0
    assert all(full.loc[c, "ci_low"] < 0 < full.loc[c, "ci_high"] for c in ("cam_transfer", "cam_b"))
    # "... where random masks do at least as well as B's": B - B_random below zero on both, its interval
    # reaching zero on cam_transfer and below zero on cam_b
    cross = vs_random.set_index("cohort")
    assert all(cross.loc[c, "effect"] < 0 for c in ("cam_transfer", "cam_b"))
    assert cross.loc["cam_transfer", "ci_high"] >= 0 > cross.loc["cam_b", "ci_high"]

    # "the share of exam-planes with every slice right is about one half for Model A, B and every
    # control, and B's is the lowest of them"
    p = pd.read_csv(lay.prescription_table)
    p = p[(p["cohort"] == "normal") & (p["corruption"] == "none")].set_index("arm")["all_right"]
    p = p[[a for a in ("A", "B", *arm_names(CONTROL)) if a in p.index]]
    assert p.idxmin() == "B" and p.between(0.4, 0.6).all(), p
    # "both models are several times worse calibrated on metal exams than on the other cohorts; B is
    # worse calibrated than A on normal, cam and new-site images"
    ece = summarize_seeds(pd.read_csv(RESULTS / "cohorts.csv")).set_index(["model", "cohort"])["ece_mean"]
    for model in ("A", "B"):
        assert ece[(model, "metal")] >= 2 * max(ece[(model, c)] for c in ("normal", "cam", "new_site")), model
    assert all(ece[("B", c)] > ece[("A", c)] for c in ("normal", "cam", "new_site"))
    # "Model A is weakest on axial slices, most of all on metal exams"; "a linear classifier ... is far
    # below Model A"
    planes = summarize_seeds(pd.read_csv(RESULTS / "breakdown_plane.csv")).set_index(["model", "cohort", "plane"])
    a = planes["accuracy_mean"].loc["A"]
    assert all(a[c].idxmin() == "axial" for c in ("normal", "metal")) and a[("metal", "axial")] < a[("normal", "axial")]

    linear = json.loads((RESULTS / "linear_baseline.json").read_text())["accuracy"]
    assert linear < summarize_seeds(pd.read_csv(RESULTS / "cohorts.csv")).set_index(["model", "cohort"]).loc[
        ("A", "normal"), "accuracy_mean"] - 0.15


def test_fill_blocks_replaces_only_what_lies_between_the_markers():
    """knee_tf.controls.results_page.fill_blocks: each block's lines are replaced, the text around them is
    kept, a second fill changes nothing, and a page without a block, with an unknown block, a block
    twice or a block without its end line is a one-line error."""
    page = (f"# Title\n\nintro, 1 MB\n{begin_marker('one')}\n| stale | 9.9 |\n{end_marker('one')}\nbetween\n\n"
            f"{begin_marker('two')}\n{end_marker('two')}\nend\n")
    out = fill_blocks(page, {"one": "| new | 1.0 |\n", "two": "text"})
    assert out == (f"# Title\n\nintro, 1 MB\n{begin_marker('one')}\n\n| new | 1.0 |\n\n{end_marker('one')}\nbetween\n\n"
                   f"{begin_marker('two')}\n\ntext\n\n{end_marker('two')}\nend\n")
    assert fill_blocks(out, {"one": "| new | 1.0 |", "two": "text"}) == out
    with pytest.raises(ValueError, match=r"page.md lacks the generated block\(s\) \['three'\]"):
        fill_blocks(page, {"one": "", "two": "", "three": ""}, where="page.md")
    with pytest.raises(ValueError, match="unknown generated block 'two'"):
        fill_blocks(page, {"one": ""})
    with pytest.raises(ValueError, match="appears twice"):
        fill_blocks(page + f"{begin_marker('one')}\n{end_marker('one')}\n", {"one": "", "two": ""})
    with pytest.raises(ValueError, match="'one' has no line"):
        fill_blocks(page.replace(end_marker("one"), ""), {"one": "", "two": ""})
    with pytest.raises(ValueError) as err:
        fill_blocks("no markers\n", {"one": ""})
    assert "\n" not in str(err.value)


def test_refresh_results_rewrites_the_pages_of_a_results_folder(tmp_path):
    """knee_tf.controls.results_page.refresh_results on a repository top with two published jobs: reads
    results/, rewrites every generated block of README.md and the docs pages atomically (the store's size
    and job count follow the jobs there), keeps every other line, and says what it did; a second run
    changes nothing; a missing page or result is a one-line error."""
    with pytest.raises(ValueError, match="README.md does not exist"):
        refresh_results(tmp_path, log=lambda _: None)
    (tmp_path / "docs").mkdir()
    for page in PAGES:
        shutil.copy(ROOT / page, tmp_path / page)
    with pytest.raises(ValueError, match="cohorts.csv is missing"):
        refresh_results(tmp_path, log=lambda _: None)
    shutil.copytree(RESULTS, tmp_path / "results", ignore=shutil.ignore_patterns("grid"))
    for job in ("model_a_seed0", "model_b_seed0"):
        shutil.copytree(RESULTS / "grid" / job, tmp_path / "results" / "grid" / job)
    said = []
    refresh_results(tmp_path, log=said.append)
    text = " ".join((tmp_path / "docs" / "results.md").read_text().split())
    assert "MB for 2 jobs" in text and "**2 of the full grid's" in text
    assert [s.split(":")[0] for s in said] == list(PAGES) and "rewritten" in said[1], said
    for page in PAGES:  # every line outside the generated blocks is kept

        assert prose((tmp_path / page).read_text()) == prose((ROOT / page).read_text()), page
    said.clear()
    refresh_results(tmp_path, log=said.append)
    assert all("unchanged" in s for s in said), said


def test_every_published_job_has_the_settings_digest_todays_code_gives_it():
    """The published grid stays readable (notebook 07's controls_source=published, grid --publish's skip of
    jobs already published): each job record's settings digest is what today's StudyConfig and job
    settings give that job. A new StudyConfig field that changes no result belongs in
    publish.NON_RESULT_FIELDS, or every published job would count as trained with other settings."""
    from knee_tf.controls.publish import digest, job_settings

    cfg = get_config(json.loads((RESULTS / "published.json").read_text())["steps"][CONTROLS_STEP]["config"])
    plan = {(j.name, j.seed): j for j in controls_plan(cfg)}
    records = sorted(published_grid(ROOT).root.glob("*/job.json"))
    checked = 0
    for path in records:
        record = json.loads(path.read_text())
        job = plan.get((record["job"], record["seed"]))
        if job is None:  # a job of another plan (the learning curve's sizes are in the full plan)
            continue
        expected = job_settings(job.settings(cfg))
        expected["precision"] = record["settings"]["precision"]  # resolved on the machine that trained it
        changed = sorted(k for k in set(expected) | set(record["settings"])
                         if expected.get(k, "<absent>") != record["settings"].get(k, "<absent>"))
        assert record["settings_digest"] == digest(expected), f"{path.parent.name}: settings differ in {changed}"
        checked += 1
    assert checked >= 150, f"only {checked} of {len(records)} published jobs are in the {cfg.name} plan"


def test_the_cam_hard_mask_enters_the_settings_digest_only_where_it_is_made():
    """A config that makes no cam_hard cohort (cam_hard_weight 0, every published full-grid job) digests as
    before the cohort existed, whatever its smoothing and threshold say; one that makes it (paper_point)
    digests its mask."""
    from knee_tf.controls.publish import WHILE_SET, digest, job_settings
    from knee_tf.study.config import StudyConfig

    base = job_settings(StudyConfig())
    assert not set(WHILE_SET["cam_hard_weight"]) & set(base)
    assert digest(job_settings(StudyConfig(cam_hard_smooth_sigma=3.0, cam_hard_threshold=0.2))) == digest(base)
    made = job_settings(StudyConfig(cam_hard_weight=1.0))
    assert {k: made[k] for k in WHILE_SET["cam_hard_weight"]} == {
        "cam_hard_weight": 1.0, "cam_hard_smooth_sigma": 8.0, "cam_hard_threshold": 0.4}
    assert digest(job_settings(StudyConfig(cam_hard_weight=1.0, cam_hard_threshold=0.2))) != digest(made)

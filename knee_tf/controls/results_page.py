"""The published numbers as Markdown: README's headline table and the tables of the results and
performance pages in ``docs/``, generated from ``results/`` by code, never typed by hand.

Each generated passage sits between two marker lines (:func:`begin_marker`, :func:`end_marker`)::

    <!-- begin generated headline: knee-tf controls --publish writes this block from results/ -->
    ...
    <!-- end generated headline -->

:func:`fill_blocks` replaces what lies between them and keeps every other line, so the prose people
write around the tables survives a re-publish. :func:`refresh_results` (``knee-tf controls --publish``)
rewrites every block of :data:`PAGES` from a repository's ``results/``. The tests check that the
committed pages are its fixed point, and that the numbers the prose quotes are cells of ``results/``.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import pandas as pd

from knee_tf.controls.arms import CONTROL, STUDY, arm_names
from knee_tf.controls.effect_stats import interval_description
from knee_tf.controls.families import EXPLORATORY, PRIMARY, SECONDARY
from knee_tf.controls.jobs import controls_plan
from knee_tf.controls.markdown_tables import controls_markdown, effect_cell, family_legend
from knee_tf.controls.operating_point import operating_point_markdown
from knee_tf.controls.publish import published_jobs, rebuild_store
from knee_tf.core.io import atomic_write_text
from knee_tf.core.vocab import (
    B_RANDOM,
    METAL,
    METHOD_NAMES,
    MODEL_A,
    MODEL_B,
    NEW_SITE,
    NO_CORRUPTION,
    NORMAL,
    PLANES,
    STUDY_MODELS,
)
from knee_tf.data.layout import RESULTS, RunLayout, published_grid, published_record
from knee_tf.study.cohorts import CAM, CAM_B, CAM_TRANSFER, COHORTS
from knee_tf.study.config import get_config
from knee_tf.study.evaluate import summarize_seeds
from knee_tf.study.pipeline import CONTROLS_STEP
from knee_tf.study.report import paper_comparison_markdown, precision_markdown

#: The pages with generated blocks (paths relative to the repository's top) and each page's blocks.
PAGES: dict[str, tuple[str, ...]] = {
    "README.md": ("answer", "headline", "operating-point"),
    "docs/results.md": ("test-cohorts", "study-table", "calibration", "faithfulness", "grid", "controls-tables",
                        "operating-point-tables", "prescription", "difficulty"),
    "docs/performance.md": ("precision",),
}
#: Model A's accuracy per precision and seed, relative to the repository's top (written by bench/precision.py).
PRECISION_TABLE = "results/precision.csv"
#: The test cohorts in the order the tables list them, with what each is.
COHORT_TEXT: dict[str, str] = {
    NORMAL: "normal images (the test split)",
    METAL: "metal-implant exams (test only)",
    CAM: "cohort 3: normal images under Model A's own inverted Grad-CAM masks",
    CAM_TRANSFER: "the same corruption from an independently trained Model A's maps",
    CAM_B: "the same corruption from Model B's own maps",
    NEW_SITE: "a held-out site (scanner and coil never in train or val)",
}
#: The rows of README's headline table, with their labels there.
HEADLINE_COHORTS: dict[str, str] = {
    NORMAL: "normal images",
    METAL: "metal-implant exams",
    CAM: "cohort 3: Model A's own maps",
    CAM_TRANSFER: "cohort 3 from another Model A's maps",
    NEW_SITE: "a held-out site",
}

#: The cohorts of README's three-line answer (:func:`answer_markdown`), with their names there: the paper's two
#: real-image cohorts and the held-out site, then cohort 3 made from A's own maps and from another Model A's maps.
ANSWER_COHORTS: dict[str, str] = {NORMAL: "normal images", METAL: "metal-implant exams", NEW_SITE: "a held-out site"}
ANSWER_CAM_COHORTS: dict[str, str] = {CAM: "Model A's own maps", CAM_TRANSFER: "another Model A's maps"}
ANSWER_LABELS: dict[str, str] = ANSWER_COHORTS | ANSWER_CAM_COHORTS

_BEGIN = re.compile(r"^<!-- begin generated ([\w-]+):.*-->$", re.MULTILINE)


#: The command that writes the blocks of :data:`PAGES`, as their opening lines say.
WRITER = "knee-tf controls --publish"


def begin_marker(name: str, by: str = WRITER) -> str:
    """The line that opens generated block ``name``, saying which command writes it."""
    return f"<!-- begin generated {name}: {by} writes this block from results/ -->"


def end_marker(name: str) -> str:
    """The line that closes generated block ``name``."""
    return f"<!-- end generated {name} -->"


def fill_blocks(text: str, blocks: Mapping[str, str], where: str = "the page", by: str = WRITER) -> str:
    """``text`` with the lines between each block's markers replaced by ``blocks[name]`` (a blank line
    either side); every line outside the markers is kept. Every block of ``blocks`` must be in
    ``text`` once, and ``text`` may hold no other; ``where`` names the page in the one-line errors."""
    out, pos, seen = [], 0, []
    for m in _BEGIN.finditer(text):
        name = m[1]
        if name not in blocks:
            raise ValueError(f"{where}: unknown generated block {name!r} (known: {', '.join(blocks)})")
        if name in seen:
            raise ValueError(f"{where}: generated block {name!r} appears twice")
        end = text.find("\n" + end_marker(name), m.end())
        nxt = _BEGIN.search(text, m.end())
        if end < 0 or (nxt is not None and nxt.start() < end):
            raise ValueError(f"{where}: generated block {name!r} has no line {end_marker(name)!r} before the next block")
        out += [text[pos:m.start()], begin_marker(name, by), "\n\n", blocks[name].strip(), "\n\n"]
        pos, seen = end + 1, seen + [name]
    missing = [n for n in blocks if n not in seen]
    if missing:
        raise ValueError(f"{where} lacks the generated block(s) {missing}: add the lines "
                         f"{begin_marker(missing[0], by)!r} and {end_marker(missing[0])!r} where it goes")
    return "".join(out) + text[pos:]


def _plain(t: pd.DataFrame) -> pd.DataFrame:
    """Rows of a results table without a held-out corruption."""
    return t[t["corruption"].astype(str) == NO_CORRUPTION] if "corruption" in t.columns else t


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _seeds(values) -> str:
    return "/".join(str(int(s)) for s in sorted(set(values)))


def headline_markdown(arms: pd.DataFrame, effects: pd.DataFrame) -> str:
    """README's headline table: per cohort of :data:`HEADLINE_COHORTS`, the paper's accuracies of A and B,
    the controls grid's (``arms``: ``RunLayout.arms_table``, mean over its seeds), and the grid's accuracy
    effects B − A and B − ``B_random`` (``effects``: ``RunLayout.effects_table``), each with its q value
    where it belongs to the analysis plan's primary family (BH within that family; "—" elsewhere)."""
    plain = _plain(arms[arms["arm"].isin(STUDY_MODELS)]).set_index(["arm", "cohort"])
    e = _plain(effects[(effects["metric"] == "accuracy") & (effects["arm"] == MODEL_B)]).set_index(["reference", "cohort"])
    refs = (MODEL_A, B_RANDOM)
    for ref in refs:
        if ref not in e.index.get_level_values(0):
            raise ValueError(f"the effects table has no accuracy effects of B against {ref}")
    grid_seeds = _seeds(plain.loc[[k for k in plain.index if k[1] in HEADLINE_COHORTS], "n_seeds"])
    heads = []
    for ref in refs:
        name = ref if ref == MODEL_A else f"`{ref}`"
        heads += [f"B − {name}, {_seeds(e.loc[ref, 'n_seeds'])} seeds", f"q, B − {name}"]
    lines = ["| test cohort | paper: A → B | grid: A → B, " + grid_seeds + " seeds | " + " | ".join(heads) + " |",
             "|---" * (3 + len(heads)) + "|"]
    for cohort in HEADLINE_COHORTS:
        paper_accuracy = COHORTS[cohort].paper_accuracy
        paper = " → ".join(_pct(a) for a in paper_accuracy) if paper_accuracy else "—"
        have = all((m, cohort) in plain.index for m in STUDY_MODELS)
        grid = " → ".join(_pct(plain.loc[(m, cohort), "accuracy"]) for m in STUDY_MODELS) if have else "—"
        cells = []
        for ref in refs:
            r = e.loc[(ref, cohort)] if (ref, cohort) in e.index else None
            cells.append(effect_cell(r) if r is not None else "—")
            cells.append(_q(r["q_bh"]) if r is not None and r["test_family"] == PRIMARY else "—")
        lines.append(f"| {HEADLINE_COHORTS[cohort]} (`{cohort}`) | {paper} | {grid} | " + " | ".join(cells) + " |")
    shown = [e.loc[(ref, c), "n_seeds"] for ref in refs for c in HEADLINE_COHORTS if (ref, c) in e.index]
    lines += ["", f"Accuracy of the controls grid's A and B jobs (the 3-seed study's table and McNemar tests: "
              f"[docs/results.md](docs/results.md)); effects in points, mean over seeds paired on the same images "
              f"[{interval_description(shown)}]; q: Benjamini–Hochberg within the analysis plan's primary family "
              f"(—: not in it); * significant at FDR 0.05 ({family_legend(effects)}); (in dist.): made by B's own "
              "training generator."]
    return "\n".join(lines)


def _points(r) -> str:
    """``+2.2 [+0.5, +4.0]``: an effects row's effect and interval in points (named columns only)."""
    return f"{100 * r['effect']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"


def _direction(r) -> str:
    """Where an effect's 95% interval lies: above zero, below it, or across it."""
    return "higher" if r["ci_low"] > 0 else "lower" if r["ci_high"] < 0 else "unclear"


def _verdict(rows: Mapping[str, pd.Series], subject: str, than: str) -> str:
    """``B is more accurate than A on X, less accurate on Y; no clear difference on Z`` from the intervals."""
    by = {d: [ANSWER_LABELS[c] for c, r in rows.items() if _direction(r) == d] for d in ("higher", "lower", "unclear")}
    parts = []
    if by["higher"]:
        parts.append(f"more accurate than {than} on {' and '.join(by['higher'])}")
    if by["lower"]:
        parts.append(f"{'less accurate' if parts else f'less accurate than {than}'} on {' and '.join(by['lower'])}")
    text = f"{subject} is " + ", ".join(parts) if parts else f"{subject} does not differ clearly from {than}"
    if by["unclear"] and parts:
        text += f"; its interval spans zero on {' and '.join(by['unclear'])}"
    return text


def answer_markdown(effects: pd.DataFrame) -> str:
    """README's answer in three lines, from the grid's accuracy effects (``RunLayout.effects_table``; the named
    columns ``arm``, ``reference``, ``cohort``, ``metric``, ``effect``, ``ci_low``, ``ci_high``, ``n_seeds``,
    ``significant``, ``test_family``): B − A, B − ``B_random`` and cohort 3, each effect with its 95%
    interval and seed count, the words (more, less accurate, spans zero) read off the intervals."""
    e = _plain(effects[(effects["metric"] == "accuracy") & (effects["arm"] == MODEL_B)]).set_index(["reference", "cohort"])

    def rows(ref, cohorts):
        missing = [c for c in cohorts if (ref, c) not in e.index]
        if missing:
            raise ValueError(f"the effects table has no accuracy effect of B against {ref} on {missing[0]}")
        return {c: e.loc[(ref, c)] for c in cohorts}

    def listed(rs, prefix=""):
        seeds = sorted({int(r["n_seeds"]) for r in rs.values()})
        each = len(seeds) > 1  # seed counts differ: say each one
        cells = "; ".join(f"{prefix}{ANSWER_LABELS[c]} {_points(r)}" + (f" ({int(r['n_seeds'])} seeds)" if each else "")
                          for c, r in rs.items())
        return cells + ("" if each else f" ({seeds[0]} seeds each)")

    vs_a, vs_random = rows(MODEL_A, ANSWER_COHORTS), rows(B_RANDOM, ANSWER_COHORTS)
    cam = rows(MODEL_A, ANSWER_CAM_COHORTS)
    primary = effects[effects["test_family"] == PRIMARY]
    n_sig, n = int(primary["significant"].astype(bool).sum()), len(primary)
    shown = [r["n_seeds"] for rs in (vs_a, vs_random, cam) for r in rs.values()]
    return "\n".join([
        f"- **Does B beat A?** {_verdict(vs_a, 'B', 'A')}. B − A in accuracy points: {listed(vs_a)}.",
        f"- **Is it the activation maps?** Against B's own masks moved to random positions (`{B_RANDOM}`), "
        f"{_verdict(vs_random, 'B', f'`{B_RANDOM}`')}. B − `{B_RANDOM}`: {listed(vs_random)}.",
        f"- **Cohort 3** (the paper's largest gain; made by B's own training generator): B − A {listed(cam, 'from ')}; "
        f"{n_sig} of the {n} primary comparisons of the [analysis plan](docs/analysis_plan.md) are significant "
        "after Benjamini–Hochberg within that family.",
        "",
        f"Effects: mean over seeds paired on the same images [{interval_description(shown)}]. "
        "The full tables: [Results](#results) below, [docs/results.md](docs/results.md), "
        f"[`results/{RESULTS['effects_table']}`](results/{RESULTS['effects_table']}).",
    ])


def test_cohorts_markdown(arms: pd.DataFrame) -> str:
    """The test cohorts with their image and patient counts (``RunLayout.arms_table``, Model A's rows)."""
    a = _plain(arms[arms["arm"] == MODEL_A]).set_index("cohort")
    lines = ["| cohort | what | images | patients |", "|---|---|---|---|"]
    for cohort in [c for c in COHORT_TEXT if c in a.index] + [c for c in a.index if c not in COHORT_TEXT]:
        lines.append(f"| `{cohort}` | {COHORT_TEXT.get(cohort, '')} | {int(a.loc[cohort, 'n_images']):,} | "
                     f"{int(a.loc[cohort, 'n_patients'])} |")
    return "\n".join(lines)


def calibration_markdown(summary: pd.DataFrame) -> str:
    """Expected calibration error of A and B per cohort, mean ± sd over seeds (``RunLayout.cohorts``)."""
    s = summary.set_index(["model", "cohort"])
    lines = ["| cohort | ECE, Model A | ECE, Model B |", "|---|---|---|"]
    for cohort in dict.fromkeys(summary["cohort"]):
        cells = [f"{100 * s.loc[(m, cohort), 'ece_mean']:.1f}% ± {100 * s.loc[(m, cohort), 'ece_sd']:.1f}"
                 if (m, cohort) in s.index else "—" for m in STUDY_MODELS]
        lines.append(f"| {cohort} | " + " | ".join(cells) + " |")
    lines += ["", f"Expected calibration error of the top-label confidence in `StudyConfig.ece_bins` equal-width bins; "
              f"mean ± sd over {_seeds(summary['n_seeds'])} seeds."]
    return "\n".join(lines)


def faithfulness_markdown(faith: pd.DataFrame) -> str:
    """Deletion and insertion AUC per layer and CAM method, and of a random map (``RunLayout.faithfulness``)."""
    rnd = faith[faith["method"] == "random"]
    maps = faith[faith["method"] != "random"]
    methods = list(dict.fromkeys(maps["method"]))
    head = " | ".join(f"{METHOD_NAMES.get(m, m)} {kind}" for m in methods for kind in ("deletion", "insertion"))
    lines = [f"| layer | {head} |", "|---" * (1 + 2 * len(methods)) + "|"]
    t = maps.set_index(["layer", "method"])
    for layer in dict.fromkeys(maps["layer"]):
        cells = [f"{t.loc[(layer, m), k]:.2f}" for m in methods for k in ("deletion_auc", "insertion_auc")]
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    for r in rnd.itertuples():
        lines.append("| random map | " + " | ".join([f"{r.deletion_auc:.2f}", f"{r.insertion_auc:.2f}"] * len(methods)) + " |")
    lines += ["", f"Area under the curve of Model A's probability of its call as the pixels a map ranks highest are "
              f"deleted (lower: more faithful) or inserted (higher: more faithful); mean over {int(faith['n'].max())} "
              f"normal test images."]
    return "\n".join(lines)


def grid_markdown(arms: pd.DataFrame, effects: pd.DataFrame, n_planned: int, n_jobs: int, n_cross: int,
                  store_mb: int, dirty: Mapping[str, list[int]] | None = None,
                  cross_dirty: Mapping[str, list[int]] | None = None) -> str:
    """How much of the controls grid the tables come from, and its arms with their seeds
    (``RunLayout.arms_table``; ``n_jobs`` published of ``n_planned``, ``n_cross`` with the cross cohorts;
    dirty: {arm: the seeds whose published record names a ``+dirty`` code commit}; cross_dirty: the
    same for the records of their cross cohorts)."""
    dirty, cross_dirty = dirty or {}, cross_dirty or {}
    fam = effects.groupby("test_family")
    sizes, smallest = fam["n_comparisons"].max(), fam["q_bh"].min()
    tested = [f"{int(sizes[f])} {f} (smallest q {_q(smallest[f])})" for f in (PRIMARY, SECONDARY) if f in sizes]
    n_dirty = sum(len(v) for v in dirty.values())
    text = [f"The controls tables come from **{n_jobs} of the full grid's {n_planned} jobs** (`results/grid/`), "
            f"recomputed from their per-image predictions: the prediction store, {store_mb} MB for {n_jobs} jobs, which "
            f"publishing does not copy and a test rebuilds. The cross cohorts `cam_transfer` and `cam_b` are in "
            f"{n_cross} of them. Benjamini–Hochberg runs within the test families of the "
            f"[analysis plan](analysis_plan.md), applied post hoc to this grid (trained before the plan): "
            f"{' and '.join(tested) if tested else 'none'} comparisons; the other "
            f"{int((effects['test_family'] == EXPLORATORY).sum())} rows are exploratory, intervals only. "
            f"{n_dirty} published jobs record a code commit with uncommitted changes (`+dirty`); "
            "`knee-tf grid --publish` no longer publishes such a job."
            + _cross_dirty_sentence(cross_dirty), ""]
    base = _plain(arms)
    first = base[base["cohort"] == base["cohort"].iloc[0]]
    cross = base[base["cohort"] == CAM_TRANSFER].set_index("arm")["n_seeds"]
    text += ["| arm | trains on | matches B in | seeds | seeds with `cam_transfer`, `cam_b` | seeds from a dirty tree |",
             "|---|---|---|---|---|---|"]
    for r in first.itertuples():
        seeds = f"{r.n_seeds}" if r.n_seeds == r.n_seeds_planned else f"{r.n_seeds} of {r.n_seeds_planned}"
        text.append(f"| `{r.arm}` | {r.description} | {r.budget} | {seeds} | "
                    f"{int(cross[r.arm]) if r.arm in cross.index else '—'} | "
                    f"{', '.join(str(s) for s in dirty.get(r.arm, [])) or '—'} |")
    return "\n".join(text)


def _q(q: float) -> str:
    """A q value with three decimals, or ``< 0.001`` (a bootstrap p of 0: no resample reached zero)."""
    return "< 0.001" if q < 0.0005 else f"{q:.3f}"


def _cross_dirty_sentence(cross_dirty: Mapping[str, list[int]]) -> str:
    n = sum(len(v) for v in cross_dirty.values())
    if not n:
        return ""
    listed = "; ".join(f"`{job}` {', '.join(map(str, seeds))}" for job, seeds in cross_dirty.items())
    return (f" The cross cohorts of {n} published jobs were made from a tree with uncommitted changes "
            f"(their `cross.json`): {listed}; `knee-tf grid --publish --republish` makes them again, retraining "
            "the models it needs (each checked against its published predictions).")


def dirty_seeds(jobs: pd.DataFrame, column: str = "dirty") -> dict[str, list[int]]:
    """{model name: sorted seeds} of the published jobs (:func:`knee_tf.controls.publish.published_jobs`)
    whose record names a code commit with uncommitted changes (its ``dirty`` column; ``cross_dirty``:
    the record of their cross cohorts)."""
    bad = jobs[jobs[column].astype(bool)]
    return {str(j): sorted(int(s) for s in g["seed"]) for j, g in bad.groupby("job", sort=False)}


def prescription_markdown(prescription: pd.DataFrame) -> str:
    """The prescription endpoint of A, B and the controls on normal test exams (``RunLayout.prescription_table``)."""
    p = _plain(prescription[prescription["cohort"] == NORMAL]).set_index("arm")
    arms = [a for a in arm_names(STUDY, CONTROL) if a in p.index]
    lines = ["| arm | seeds | slice accuracy | every slice right | Jaccard index | both ends within one slice |",
             "|---|---|---|---|---|---|"]
    for arm in arms:
        r = p.loc[arm]
        cells = [f"{r[k]:.3f} [{r[k + '_low']:.3f}, {r[k + '_high']:.3f}]" for k in ("all_right", "jaccard", "range_within_one")]
        lines.append(f"| `{arm}` | {int(r['n_seeds'])} | {_pct(r['slice_accuracy'])} | " + " | ".join(cells) + " |")
    lines += ["", f"Per exam and plane, {int(p['n_exam_planes'].iloc[0])} exam-planes of the normal test exams; mean "
              "over seeds [95% interval]; every arm, cohort and corruption in "
              f"`results/{RESULTS['prescription_table']}`."]
    return "\n".join(lines)


def difficulty_markdown(linear: Mapping, planes: pd.DataFrame, summary: pd.DataFrame) -> str:
    """A linear classifier's accuracy beside Model A's, per plane (``RunLayout.linear_baseline``,
    ``breakdown_plane``, ``cohorts``)."""
    a = summarize_seeds(planes[planes["model"] == MODEL_A]).set_index(["cohort", "plane"])["accuracy_mean"]
    whole = summary.set_index(["model", "cohort"])["accuracy_mean"]
    lines = ["| plane | linear classifier, normal | Model A, normal | Model A, metal |", "|---|---|---|---|"]
    for plane in PLANES:
        lines.append(f"| {plane} | {_pct(linear[f'accuracy_{plane}'])} | {_pct(a[(NORMAL, plane)])} | "
                     f"{_pct(a[(METAL, plane)])} |")
    lines.append(f"| all | {_pct(linear['accuracy'])} | {_pct(whole[(MODEL_A, NORMAL)])} | {_pct(whole[(MODEL_A, METAL)])} |")
    lines += ["", f"Test accuracy; the linear classifier: L2-regularised logistic regression on {int(linear['size'])}×"
              f"{int(linear['size'])} pixels; Model A: mean over {_seeds(summary['n_seeds'])} seeds."]
    return "\n".join(lines)


def results_blocks(top: str | Path, store_bytes: int | None = None) -> dict[str, str]:
    """Every generated block of :data:`PAGES`, by name, from ``top``/results. ``store_bytes``: the size
    of the published grid's prediction store, if already built (default: it is rebuilt in a temporary
    folder to measure it)."""
    top = Path(top)
    lay = RunLayout(top)  # the repository's results/ mirrors a run folder's
    need = [lay.cohorts, lay.mcnemar, lay.faithfulness, lay.breakdown_plane, lay.linear_baseline, lay.arms_table,
            lay.effects_table, lay.prescription_table, top / PRECISION_TABLE, published_record(top)]
    missing = [str(p) for p in need if not p.exists()]
    if missing:
        raise ValueError(f"cannot write the results pages: {missing[0]} is missing (publish the study and the "
                         f"controls first){f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}")
    cohorts = pd.read_csv(lay.cohorts)
    summary = summarize_seeds(cohorts)
    arms, effects = pd.read_csv(lay.arms_table), pd.read_csv(lay.effects_table)
    pub = published_grid(top)
    jobs = [record.parent for record in pub.records()]
    if store_bytes is None:
        with tempfile.TemporaryDirectory() as tmp:
            store_bytes = rebuild_store(pub, Path(tmp) / "store.parquet").stat().st_size
    record = json.loads(published_record(top).read_text())
    config = record.get("steps", {}).get(CONTROLS_STEP, {}).get("config", "full")
    n_cross = sum(1 for d in jobs if (d / pub.cross_predictions("x", 0).name).exists())
    records = published_jobs(pub)
    return {
        "answer": answer_markdown(effects),
        "headline": headline_markdown(arms, effects),
        "test-cohorts": test_cohorts_markdown(arms),
        "study-table": paper_comparison_markdown(summary, pd.read_csv(lay.mcnemar)),
        "calibration": calibration_markdown(summary),
        "faithfulness": faithfulness_markdown(pd.read_csv(lay.faithfulness)),
        "grid": grid_markdown(arms, effects, len(controls_plan(get_config(config))), len(jobs), n_cross,
                              round(store_bytes / 1e6), dirty_seeds(records), dirty_seeds(records, "cross_dirty")),
        "controls-tables": "\n\n".join(t.strip() for t in controls_markdown(effects)),
        "prescription": prescription_markdown(pd.read_csv(lay.prescription_table)),
        "difficulty": difficulty_markdown(json.loads(lay.linear_baseline.read_text()), pd.read_csv(lay.breakdown_plane),
                                          summary),
        "precision": precision_markdown(pd.read_csv(top / PRECISION_TABLE)),
        "operating-point": operating_point_markdown(top),
        "operating-point-tables": operating_point_markdown(top, root="../"),
    }


def refresh_results(top: str | Path, log: Callable[[str], object] = print) -> list[Path]:
    """Rewrite the generated blocks of every page of :data:`PAGES` under ``top`` from ``top``/results
    (:func:`results_blocks`, :func:`fill_blocks`; each page atomically); return the pages' paths."""
    top = Path(top)
    pages = [top / page for page in PAGES]
    absent = [str(p) for p in pages if not p.exists()]
    if absent:
        raise ValueError(f"cannot write the results pages: {absent[0]} does not exist")
    blocks = results_blocks(top)
    for page, path in zip(PAGES, pages, strict=True):
        before = path.read_text()
        after = fill_blocks(before, {name: blocks[name] for name in PAGES[page]}, where=page)
        if after != before:
            atomic_write_text(path, after)
        log(f"{page}: {', '.join(PAGES[page])} {'rewritten' if after != before else 'unchanged'} from {top / 'results'}")
    return pages

"""The study's commands of ``knee-tf``: synth, ingest, predict, study, grid, controls, tour, html, config."""

from __future__ import annotations

import time
from pathlib import Path

from knee_tf.cli.options import (
    add_cache,
    add_manifest,
    add_model,
    add_parser,
    add_root,
    add_run,
    add_set,
    add_workers,
    deprecated,
)
from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_csv, atomic_write_text
from knee_tf.data.ingest import ON_ERROR, default_cache_dir, ingest, summary_table
from knee_tf.data.layout import DATA_MANIFEST, SYNTH_RECORD, PublishedGrid, published_grid
from knee_tf.phantom import plan_manifest, synthesize
from knee_tf.study.config import PRESETS, REPO_ROOT, StudyConfig, get_config, resolve
from knee_tf.study.config_doc import DOCS_PAGE, FORMATS, config_listing

_DEFAULT = StudyConfig()


def add_synth(sub) -> None:
    p = add_parser(sub, "synth", "write the synthetic multi-site knee localizer dataset as DICOM")
    p.add_argument("--out", required=True, metavar="DIR", help="output data folder (DICOM files + data_manifest.csv)")
    p.add_argument("--exams", type=int, default=_DEFAULT.n_exams, help="exams to generate")
    p.add_argument("--seed", type=int, default=_DEFAULT.synth_seed, help="generator seed")
    p.add_argument("--matrix", type=int, default=_DEFAULT.synth_matrix,
                   help="scanner acquisition matrix of the written DICOM (some sites use 0.75x or 2x); the model's "
                        "input size is ingest's --image-size")
    p.add_argument("--metal-fraction", type=float, default=_DEFAULT.metal_fraction,
                   help="share of exams with a metal susceptibility artefact")
    p.add_argument("--manifest-only", action="store_true",
                   help="write only DIR/data_manifest.csv, planned without rendering an image (seconds): to "
                        "check a committed manifest or a dataset's counts before rendering it")
    add_workers(p)
    add_set(p, "a StudyConfig synth_* field, e.g. synth_texture=0.5 or synth_appearance=v3 (repeatable)")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(a) -> int:
    cfg = _DEFAULT.with_settings(a.settings)
    if a.manifest_only:
        out = Path(a.out)
        if (out / SYNTH_RECORD).exists():
            raise InputError(f"{out}: a synthesized data folder ({SYNTH_RECORD} present); --manifest-only "
                             "writes to a folder without images, so as not to mismatch its files")
        df = plan_manifest(n_exams=a.exams, seed=a.seed, matrix=a.matrix, metal_fraction=a.metal_fraction,
                           difficulty=cfg.synth_difficulty(), appearance=cfg.synth_appearance)
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_csv(out / DATA_MANIFEST, df, index=False, lineterminator="\n")
        print(f"wrote the manifest of {len(df)} images from {df['exam_id'].nunique()} exams to "
              f"{out / DATA_MANIFEST} (no images rendered)")
        return 0
    df = synthesize(a.out, n_exams=a.exams, seed=a.seed, matrix=a.matrix,
                    metal_fraction=a.metal_fraction, workers=a.workers or None,
                    difficulty=cfg.synth_difficulty(), appearance=cfg.synth_appearance)
    print(f"wrote {len(df)} images from {df['exam_id'].nunique()} exams to {a.out}")
    return 0


def add_ingest(sub) -> None:
    p = add_parser(sub, "ingest", "validate a manifest, decode its DICOM files and cache the arrays")
    add_manifest(p)
    add_root(p)
    add_cache(p)
    p.add_argument("--image-size", type=int, default=_DEFAULT.image_size,
                   help="model input: every image is resized to image-size x image-size")
    p.add_argument("--on-error", choices=ON_ERROR, default=_DEFAULT.on_error,
                   help="fail: stop, listing every bad row; skip: ingest the good rows, record the others")
    add_workers(p, "decoding processes")
    p.set_defaults(func=_cmd_ingest)


def _cmd_ingest(a) -> int:
    res = ingest(a.manifest, a.root, cache_dir=a.cache or default_cache_dir(), image_size=a.image_size, on_error=a.on_error,
                 workers=a.workers or None)
    print(summary_table(res.index).to_string())
    if len(res.skipped):
        print(f"skipped rows and reasons: {res.cache_dir / 'skipped.csv'}")
    src = "cache hit" if res.from_cache else "decoded"
    print(f"{len(res.index)} ingested, {len(res.skipped)} skipped ({src}: {res.cache_dir})")
    return 0


def add_predict(sub) -> None:
    p = add_parser(sub, "predict", "apply a trained model to any manifest (through the same ingest path)")
    add_model(p, required=True)
    add_manifest(p)
    add_root(p)
    p.add_argument("--out", required=True, metavar="CSV", help="CSV to write: image_id, plane, p_relevant, "
                                                               "predicted, label")
    add_cache(p)
    p.add_argument("--on-error", choices=ON_ERROR, default=_DEFAULT.on_error,
                   help="fail: stop, listing every bad row; skip: predict the good rows")
    add_workers(p, "decoding processes")
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(a) -> int:
    from knee_tf.yourdata.predict import (
        predict_manifest,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    df = predict_manifest(a.model, a.manifest, a.root, a.out, cache_dir=a.cache or default_cache_dir(),
                          on_error=a.on_error,
                          workers=a.workers or None)
    msg = f"wrote {len(df)} predictions to {a.out}"
    if "label" in df and df["label"].ne("").all():
        msg += f" (accuracy {(df['predicted'] == df['label']).mean():.3f})"
    print(msg)
    return 0


def add_study(sub) -> None:
    p = add_parser(sub, "study", "run notebooks 01-07 into a run folder (resumes an interrupted run)")
    p.add_argument("--config", default=None, help="default | smoke | path to a StudyConfig JSON (default: the "
                                                  "config saved in --run if it holds a run, else default)")
    p.add_argument("--seeds", type=int, default=None, help="training seeds per model (default: the config's)")
    add_set(p)
    add_run(p, "run folder to create or resume (default: the newest unfinished run of the config under runs/, "
               "else runs/<timestamp>-<config>/)", old_out=True)
    p.add_argument("--publish", action="store_true",
                   help="after the run, copy its figures and tables to the top-level figures/ and results/")
    p.add_argument("--force", action="store_true", help="with --publish: publish even a run with fewer seeds "
                                                        "than the published one")
    p.set_defaults(func=_cmd_study)


def _cmd_study(a) -> int:
    from knee_tf.study.pipeline import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        publish,
        run_study,
    )

    if a.force and not a.publish:
        raise InputError("--force only applies with --publish")
    run = run_study(a.config, seeds=a.seeds, out=a.run, settings=a.settings)
    print(f"study finished: {run.root}")
    if a.publish:
        publish(run, force=a.force)
    return 0


def add_grid(sub) -> None:
    p = add_parser(sub, "grid", "train (arm, seed) jobs on Dask: a LocalCluster, an existing cluster, or in-process")
    p.add_argument("--config", default="default", help="default | smoke | path to a StudyConfig JSON")
    p.add_argument("--arms", default="", help="comma-separated arm names (knee_tf.controls.arms) (default: the "
                                              "config's controls study: grid_arms, their seeds, the learning curve, "
                                              "the transfer Model A)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per arm, from the config's seed (default: n_seeds)")
    p.add_argument("--scheduler", default=None, help="tcp://HOST:PORT of a Dask scheduler (default: the config's)")
    add_workers(p, "worker processes of a LocalCluster on this machine", old_zero="in this process, and -1 one per core")
    add_set(p, "override a StudyConfig field for the whole grid (repeatable)")
    add_run(p, "run folder to create or continue (default: runs/<timestamp>-<config>-grid/); a run of "
               "`knee-tf study` works too: its ingest is reused", old_out=True)
    p.add_argument("--publish", action="store_true",
                   help="publish each finished job into results/grid/ of the repository (knee_tf.controls.publish) "
                        "and skip jobs published there with the same settings and data")
    p.add_argument("--publish-dir", default="", metavar="DIR",
                   help="with --publish: the published grid folder (default: results/grid of the repository, "
                        "or results/<name>/grid for a config with publish_grid_as, e.g. paper_point)")
    p.add_argument("--republish", action="store_true",
                   help="with --publish: retrain and replace published jobs whose settings or data differ, "
                        "and retrain those published from a tree with uncommitted changes (kept, with a "
                        "clean record, where they reproduce byte for byte)")
    p.set_defaults(func=_cmd_grid)


def _cmd_grid(a) -> int:
    from knee_tf.controls.grid import (
        run_grid,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )
    from knee_tf.controls.jobs import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        controls_plan,
        plan_jobs,
    )
    from knee_tf.study.pipeline import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        RUNS_DIR,
        ensure_dataset,
        start_run,
    )

    if (a.republish or a.publish_dir) and not a.publish:
        raise InputError("--republish and --publish-dir only apply with --publish")
    cfg = get_config(a.config).with_settings(a.settings)
    root = resolve(a.run) if a.run else RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}-grid"
    run = start_run(root, cfg)
    layout = run.layout
    if layout.ingest_record.exists():
        cache_dir = run.load_ingest().cache_dir
    else:
        manifest = ensure_dataset(cfg)
        data = ingest(manifest, resolve(cfg.data_root), cache_dir=resolve(cfg.cache_dir), image_size=cfg.image_size,
                      on_error=cfg.on_error, workers=cfg.n_workers)
        run.record_ingest(data, manifest, resolve(cfg.data_root))
        cache_dir = data.cache_dir
    n_seeds = a.seeds if a.seeds is not None else max(1, cfg.n_seeds)
    arms = [arm.strip() for arm in a.arms.split(",") if arm.strip()]
    jobs = plan_jobs(arms, range(cfg.seed, cfg.seed + n_seeds)) if arms else controls_plan(cfg.replace(n_seeds=n_seeds))
    print(f"run folder: {root}; {len(jobs)} jobs: {', '.join(j.label for j in jobs)}")
    publish = None
    if a.publish:
        publish = PublishedGrid(resolve(a.publish_dir)) if a.publish_dir else published_grid(REPO_ROOT, cfg.publish_grid_as)
    res = run_grid(jobs, cfg, root, cache_dir, scheduler=cfg.scheduler if a.scheduler is None else a.scheduler,
                   workers=_grid_workers(a.workers), publish=publish, republish=a.republish)
    extra = (f", {len(res.skipped_published)} skipped as published, {len(res.published)} published to "
             f"{publish.root}" if publish is not None else "")
    print(f"grid finished: {len(res.ran)} ran, {len(res.skipped)} skipped{extra}, {len(res.failed)} failed ({root})")
    return 1 if res.failed else 0


def _grid_workers(n: int) -> int:
    """``--workers`` N -> :func:`knee_tf.controls.grid.run_grid`'s workers (0 there: in this process; -1: per core)."""
    return {0: -1, 1: 0}.get(n, n)


def add_controls(sub) -> None:
    p = add_parser(sub, "controls", "notebook 07's tables and figures from the published grid (results/grid/), "
                                    "training nothing")
    p.add_argument("--config", default="full", help="full | default | path to a StudyConfig JSON: the planned grid "
                                                    "the published jobs are counted against")
    add_set(p)
    add_run(p, "run folder to create (default: runs/<timestamp>-<config>-controls/)", old_out=True)
    p.add_argument("--publish", action="store_true",
                   help="then copy notebook 07's tables and figures to the top-level results/ and figures/ "
                        "(the other steps' published files are kept) and rewrite the generated tables of "
                        "README.md, docs/results.md and docs/performance.md (knee_tf.controls.results_page)")
    p.set_defaults(func=_cmd_controls)


def _cmd_controls(a) -> int:
    from knee_tf.study.pipeline import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        CONTROLS_STEP,
        publish,
        run_controls,
    )

    run = run_controls(a.config, out=a.run, settings=a.settings)
    print(f"controls study finished: {run.root}")
    if a.publish:
        from knee_tf.controls.results_page import (
            refresh_results,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        )
        from knee_tf.study.config import (
            REPO_ROOT,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        )

        publish(run, steps=(CONTROLS_STEP,))
        refresh_results(REPO_ROOT)
    return 0


def add_tour(sub) -> None:
    p = add_parser(sub, "tour", "run the classroom tour (notebooks/00_tour) into a run folder")
    p.add_argument("--config", default="tour", help="tour | path to a StudyConfig JSON")
    add_set(p)
    add_run(p, "run folder to create (default: runs/<timestamp>-tour/)", old_out=True)
    p.set_defaults(func=_cmd_tour)


def _cmd_tour(a) -> int:
    from knee_tf.teach.tour import (
        run_tour,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    print(f"tour finished: {run_tour(a.config, out=a.run, settings=a.settings)}")
    return 0


def add_html(sub) -> None:
    p = add_parser(sub, "html", "render a run's executed notebooks as static HTML pages with an index")
    add_run(p, "run folder to render (default: the newest under runs/)")
    p.set_defaults(func=_cmd_html)


def _cmd_html(a) -> int:
    from knee_tf.study.html import (
        render_run,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )
    from knee_tf.study.pipeline import (
        open_run,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    pages = render_run(resolve(a.run) if a.run else open_run().root)
    print(f"{len(pages) - 1} pages and an index: {pages[-1]}")
    return 0


def add_config(sub) -> None:
    p = add_parser(sub, "config", "every StudyConfig field, grouped, with its default and meaning")
    p.add_argument("--preset", default=None, metavar="NAME", help=f"{' | '.join(PRESETS)}: its values beside the "
                                                                  "defaults, * where they differ (default: none)")
    p.add_argument("--format", choices=FORMATS, default="text", help=f"text, or Markdown ({DOCS_PAGE})")
    p.add_argument("--out", default="", metavar="PATH", help="write the listing to PATH (atomically) instead "
                   f"of printing it, e.g. --format markdown --out {DOCS_PAGE} (default: print it)")
    deprecated(p, "--write", "--out", "out")
    p.set_defaults(func=_cmd_config)


def _cmd_config(a) -> int:
    text = config_listing(a.preset, a.format)
    if a.out:
        atomic_write_text(a.out, text)
        print(f"wrote {a.out}")
    else:
        print(text, end="")
    return 0

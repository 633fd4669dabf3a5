"""The study's commands of ``knee-tf``: synth, ingest, predict, study, grid, controls, tour, html, config."""

from __future__ import annotations

import time

from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_text
from knee_tf.data.ingest import ON_ERROR, ingest, summary_table
from knee_tf.data.layout import PublishedGrid, published_grid
from knee_tf.phantom import synthesize
from knee_tf.study.config import PRESETS, REPO_ROOT, StudyConfig, get_config, resolve
from knee_tf.study.config_doc import DOCS_PAGE, FORMATS, config_listing

_DEFAULT = StudyConfig()


def add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic multi-site knee localizer dataset as DICOM")
    p.add_argument("--out", required=True, help="output folder (DICOM files + data_manifest.csv)")
    p.add_argument("--exams", type=int, default=_DEFAULT.n_exams)
    p.add_argument("--seed", type=int, default=_DEFAULT.synth_seed)
    p.add_argument("--matrix", type=int, default=_DEFAULT.synth_matrix,
                   help="scanner acquisition matrix of the written DICOM (some sites use 0.75x or 2x)")
    p.add_argument("--metal-fraction", type=float, default=_DEFAULT.metal_fraction)
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a StudyConfig synth_* field, e.g. synth_texture=0.5 or synth_appearance=v3 (repeatable)")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(a) -> int:
    cfg = _DEFAULT.with_settings(a.set)
    df = synthesize(a.out, n_exams=a.exams, seed=a.seed, matrix=a.matrix,
                    metal_fraction=a.metal_fraction, workers=a.workers or None,
                    difficulty=cfg.synth_difficulty(), appearance=cfg.synth_appearance)
    print(f"wrote {len(df)} images from {df['exam_id'].nunique()} exams to {a.out}")
    return 0


def add_ingest(sub) -> None:
    p = sub.add_parser("ingest", help="validate a manifest, decode its DICOM files and cache the arrays")
    p.add_argument("--manifest", required=True)
    p.add_argument("--root", required=True, help="data root the manifest paths are relative to")
    p.add_argument("--cache", default=_DEFAULT.cache_dir)
    p.add_argument("--image-size", type=int, default=_DEFAULT.image_size,
                   help="model input: every image is resized to image-size x image-size")
    p.add_argument("--on-error", choices=ON_ERROR, default=_DEFAULT.on_error)
    p.add_argument("--workers", type=int, default=0, help="decoding processes (0 = all cores)")
    p.set_defaults(func=_cmd_ingest)


def _cmd_ingest(a) -> int:
    res = ingest(a.manifest, a.root, cache_dir=a.cache, image_size=a.image_size, on_error=a.on_error,
                 workers=a.workers or None)
    print(summary_table(res.index).to_string())
    if len(res.skipped):
        print(f"skipped rows and reasons: {res.cache_dir / 'skipped.csv'}")
    src = "cache hit" if res.from_cache else "decoded"
    print(f"{len(res.index)} ingested, {len(res.skipped)} skipped ({src}: {res.cache_dir})")
    return 0


def add_predict(sub) -> None:
    p = sub.add_parser("predict", help="apply a trained model to any manifest (through the same ingest path)")
    p.add_argument("--model", required=True, help="published:A or published:B (the shipped models), or a .keras "
                                                  "file written by training (a run folder's models/<arm and seed>/model.keras)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--out", required=True, help="CSV: image_id, plane, p_relevant, predicted, label")
    p.add_argument("--cache", default=_DEFAULT.cache_dir)
    p.add_argument("--on-error", choices=ON_ERROR, default=_DEFAULT.on_error)
    p.add_argument("--workers", type=int, default=0)
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(a) -> int:
    from knee_tf.yourdata.predict import (
        predict_manifest,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    df = predict_manifest(a.model, a.manifest, a.root, a.out, cache_dir=a.cache, on_error=a.on_error,
                          workers=a.workers or None)
    msg = f"wrote {len(df)} predictions to {a.out}"
    if "label" in df and df["label"].ne("").all():
        msg += f" (accuracy {(df['predicted'] == df['label']).mean():.3f})"
    print(msg)
    return 0


def add_study(sub) -> None:
    p = sub.add_parser("study", help="run notebooks 01-07 into a run folder (resumes an interrupted run)")
    p.add_argument("--config", default=None, help="default | smoke | path to a StudyConfig JSON (default: the "
                                                  "config saved in --out if it holds a run, else default)")
    p.add_argument("--seeds", type=int, default=None, help="training seeds per model (default: the config's)")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                   help="override one StudyConfig field, e.g. --set epochs=3 --set n_faithfulness=100 (repeatable)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<timestamp>-<config>/)")
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
    run = run_study(a.config, seeds=a.seeds, out=a.out, settings=a.settings)
    print(f"study finished: {run.root}")
    if a.publish:
        publish(run, force=a.force)
    return 0


def add_grid(sub) -> None:
    p = sub.add_parser("grid", help="train (arm, seed) jobs on Dask: a LocalCluster, an existing cluster, or in-process")
    p.add_argument("--config", default="default", help="default | smoke | path to a StudyConfig JSON")
    p.add_argument("--arms", default="", help="comma-separated arm names (knee_tf.controls.arms); default: the config's "
                                              "controls study (grid_arms, their seeds, the learning curve, the "
                                              "transfer Model A: knee_tf.controls.jobs.controls_plan)")
    p.add_argument("--seeds", type=int, default=None, help="seeds per arm, from the config's seed (default: n_seeds)")
    p.add_argument("--scheduler", default=None, help="tcp://HOST:PORT of a Dask scheduler (default: the config's)")
    p.add_argument("--workers", type=int, default=-1,
                   help="LocalCluster workers on this machine (default -1: one per CPU); 0 = in this process")
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                   help="override a StudyConfig field for the whole grid (repeatable)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<timestamp>-<config>-grid/); "
                                               "a run of `knee-tf study` works too: its ingest is reused")
    p.add_argument("--publish", action="store_true",
                   help="publish each finished job into results/grid/ of the repository (knee_tf.controls.publish) "
                        "and skip jobs published there with the same settings and data")
    p.add_argument("--publish-dir", default="", help="with --publish: the published grid folder "
                                                     "(default: results/grid of the repository)")
    p.add_argument("--republish", action="store_true",
                   help="with --publish: retrain and replace published jobs whose settings or data differ")
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
    root = resolve(a.out) if a.out else RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{cfg.name}-grid"
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
        publish = PublishedGrid(resolve(a.publish_dir)) if a.publish_dir else published_grid(REPO_ROOT)
    res = run_grid(jobs, cfg, root, cache_dir, scheduler=cfg.scheduler if a.scheduler is None else a.scheduler,
                   workers=a.workers, publish=publish, republish=a.republish)
    extra = (f", {len(res.skipped_published)} skipped as published, {len(res.published)} published to "
             f"{publish.root}" if publish is not None else "")
    print(f"grid finished: {len(res.ran)} ran, {len(res.skipped)} skipped{extra}, {len(res.failed)} failed ({root})")
    return 1 if res.failed else 0


def add_controls(sub) -> None:
    p = sub.add_parser("controls", help="notebook 07's tables and figures from the published grid (results/grid/), "
                                        "training nothing")
    p.add_argument("--config", default="full", help="full | default | path to a StudyConfig JSON: the planned grid "
                                                    "the published jobs are counted against (default: full)")
    p.add_argument("--out", default=None, help="run folder (default: runs/<timestamp>-<config>-controls/)")
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

    run = run_controls(a.config, out=a.out)
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
    p = sub.add_parser("tour", help="run the classroom tour (notebooks/00_tour) into a run folder")
    p.add_argument("--config", default="tour", help="tour | path to a StudyConfig JSON")
    p.add_argument("--out", default=None, help="run folder (default: runs/<timestamp>-tour/)")
    p.set_defaults(func=_cmd_tour)


def _cmd_tour(a) -> int:
    from knee_tf.teach.tour import (
        run_tour,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    print(f"tour finished: {run_tour(a.config, out=a.out)}")
    return 0


def add_html(sub) -> None:
    p = sub.add_parser("html", help="render a run's executed notebooks as static HTML pages with an index")
    p.add_argument("--run", default="", help="run folder (default: the newest under runs/)")
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
    p = sub.add_parser("config", help="every StudyConfig field, grouped, with its default and meaning")
    p.add_argument("--preset", default=None, metavar="NAME", help=f"{' | '.join(PRESETS)}: its values beside the defaults, "
                                                  "* where they differ")
    p.add_argument("--format", choices=FORMATS, default="text", help=f"text, or Markdown ({DOCS_PAGE})")
    p.add_argument("--write", default="", metavar="PATH", help="write the listing to PATH (atomically) instead "
                                                              f"of printing it, e.g. --format markdown --write {DOCS_PAGE}")
    p.set_defaults(func=_cmd_config)


def _cmd_config(a) -> int:
    text = config_listing(a.preset, a.format)
    if a.write:
        atomic_write_text(a.write, text)
        print(f"wrote {a.write}")
    else:
        print(text, end="")
    return 0

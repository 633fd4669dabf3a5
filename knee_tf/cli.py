"""``knee-tf`` command line: synth, ingest, predict, study, grid, controls, tour, html, config; scan, split, reslice, pull, push. Also ``python -m knee_tf``.

Bad input ends with one line per problem on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import time

from knee_tf.core.errors import InputError, StepFailed
from knee_tf.core.io import atomic_write_csv, atomic_write_text
from knee_tf.core.vocab import MODEL_A, MODEL_B, PLANES
from knee_tf.data.ingest import ON_ERROR, ingest, summary_table
from knee_tf.data.layout import PublishedGrid, published_grid
from knee_tf.data.manifest import read_manifest
from knee_tf.phantom import synthesize
from knee_tf.study.config import PRESETS, REPO_ROOT, StudyConfig, get_config, resolve
from knee_tf.study.config_doc import DOCS_PAGE, FORMATS, config_listing

_DEFAULT = StudyConfig()


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write the synthetic multi-site knee localizer dataset as DICOM")
    p.add_argument("--out", required=True, help="output folder (DICOM files + data_manifest.csv)")
    p.add_argument("--exams", type=int, default=_DEFAULT.n_exams)
    p.add_argument("--seed", type=int, default=_DEFAULT.synth_seed)
    p.add_argument("--matrix", type=int, default=_DEFAULT.synth_matrix,
                   help="scanner acquisition matrix of the written DICOM (some sites use 0.75x or 2x)")
    p.add_argument("--metal-fraction", type=float, default=_DEFAULT.metal_fraction)
    p.add_argument("--workers", type=int, default=0, help="processes (0 = all cores)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a StudyConfig synth_* difficulty field, e.g. synth_texture=0.5 (repeatable)")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(a) -> int:
    cfg = _DEFAULT.with_settings(a.set)
    df = synthesize(a.out, n_exams=a.exams, seed=a.seed, matrix=a.matrix,
                    metal_fraction=a.metal_fraction, workers=a.workers or None,
                    difficulty=cfg.synth_difficulty())
    print(f"wrote {len(df)} images from {df['exam_id'].nunique()} exams to {a.out}")
    return 0


def _add_ingest(sub) -> None:
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


def _add_predict(sub) -> None:
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


def _add_study(sub) -> None:
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


def _add_grid(sub) -> None:
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
def _add_controls(sub) -> None:
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


def _add_tour(sub) -> None:
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


def _add_html(sub) -> None:
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


def _add_config(sub) -> None:
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


# ----- your own data: scan, split, reslice, pull, push -----

def _add_scan(sub) -> None:
    p = sub.add_parser("scan", help="find the knee localizer slices in a DICOM export (headers only) -> manifest")
    p.add_argument("dir", help="folder to scan (nested, DICOMDIR or loose files, any file names)")
    p.add_argument("--out", required=True, help="manifest CSV to write (scan_report.csv is written beside it)")
    p.add_argument("--model", default=None, help="fill p_relevant and the predicted class with this model: "
                                                 "published:A, published:B or a .keras file (default: none)")
    p.add_argument("--salt", default=None, help="salt file for pseudonyms (default: pseudonym_salt.txt beside --out)")
    p.add_argument("--id-map", default=None, help="where the map back to real ids goes "
                                                  "(default: patient_id_map.csv beside --out)")
    p.add_argument("--cache", default=_DEFAULT.cache_dir)
    p.set_defaults(func=_cmd_scan)


def _cmd_scan(a) -> int:
    from knee_tf.yourdata.scan import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        scan_folder,
        summarise,
    )

    model = None
    if a.model:  # checked before anything is written
        from knee_tf.yourdata.models import (
            open_model,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        )

        model = open_model(a.model)
    res = scan_folder(a.dir, a.out, salt_file=a.salt, id_map=a.id_map)
    print(summarise(res))
    print(f"manifest: {a.out}; not taken, with reasons: {res.report_path}; "
          f"pseudonym map (keep private): {res.id_map_path}")
    if a.model and len(res.manifest):
        from knee_tf.yourdata.scan import (
            add_predictions,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        )

        add_predictions(a.out, a.dir, model, cache_dir=a.cache)
        print(f"predictions of {a.model} added to {a.out} (p_relevant, predicted; label left empty)")
    return 0


def _add_split(sub) -> None:
    p = sub.add_parser("split", help="assign train/val/test by patient (seeded, stratified by site)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--by", choices=("patient",), default="patient")
    p.add_argument("--ratios", default="0.7,0.1,0.2", help="train,val,test shares of patients")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="write here instead of rewriting --manifest")
    p.set_defaults(func=_cmd_split)


def _cmd_split(a) -> int:
    from knee_tf.data.split import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        parse_ratios,
        split_by_patient,
        split_summary,
    )

    df = split_by_patient(read_manifest(a.manifest), parse_ratios(a.ratios), a.seed,
                          manifest_name=a.manifest)
    atomic_write_csv(a.out or a.manifest, df)
    print(split_summary(df).to_string())
    print(f"wrote {a.out or a.manifest}")
    return 0


def _add_reslice(sub) -> None:
    p = sub.add_parser("reslice", help="3D volumes -> tri-plane pseudo-localizer DICOM slices + manifest")
    p.add_argument("inputs", nargs="+", help="DICOM series folders, .nii/.nii.gz files or MRNet-style .npy stacks")
    p.add_argument("--out", required=True, help="output folder (DICOM files and data_manifest.csv)")
    p.add_argument("--orientation", choices=PLANES, default=None,
                   help="acquisition plane of a .npy stack (no header)")
    p.add_argument("--spacing", default=None, help="ROW,COL,SLICE mm of a .npy stack")
    p.add_argument("--series-uid", default=None, help="which series, when a folder holds several")
    p.add_argument("--count", type=int, default=7, help="slices per plane")
    p.add_argument("--thickness", type=float, default=8.0, help="slab thickness (mm)")
    p.add_argument("--gap", type=float, default=13.0, help="slice centre-to-centre spacing (mm)")
    p.add_argument("--matrix", type=int, default=256)
    p.set_defaults(func=_cmd_reslice)


def _cmd_reslice(a) -> int:
    from knee_tf.yourdata.reslice import (
        reslice_to_manifest,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    spacing = None
    if a.spacing:
        try:
            spacing = tuple(float(v) for v in a.spacing.split(","))
            assert len(spacing) == 3 and min(spacing) > 0
        except (ValueError, AssertionError):
            raise InputError(f"--spacing {a.spacing!r}: expected three positive numbers ROW,COL,SLICE") from None
    df = reslice_to_manifest(a.inputs, a.out, a.orientation, spacing, a.series_uid,
                             count=a.count, thickness_mm=a.thickness, spacing_mm=a.gap, matrix=a.matrix)
    print(f"wrote {len(df)} pseudo-localizer slices from {df['exam_id'].nunique()} volume(s) to {a.out}")
    return 0


def _add_pacs_options(p) -> None:
    """Credentials and TLS of pull and push (never a password on the command line)."""
    g = p.add_argument_group("PACS credentials and TLS")
    g.add_argument("--user", default=None, help="HTTP basic auth user name; the password comes from "
                   "KNEE_TF_PACS_PASSWORD, else the netrc file's entry for the host, else a prompt")
    g.add_argument("--netrc", default=None, metavar="FILE", help="netrc file with the password of --user "
                   "(default: ~/.netrc when it exists)")
    g.add_argument("--token-env", default=None, metavar="VAR", help="environment variable holding a bearer token "
                   "(default: KNEE_TF_PACS_TOKEN, when set and no --user)")
    g.add_argument("--ca-bundle", default=None, metavar="FILE", help="PEM certificate(s) of a private certificate "
                   "authority to trust (TLS is always verified)")


def _pacs(a):
    from knee_tf.yourdata.pacs_auth import (
        PacsAuth,  # lazy: start-up time: `knee-tf --help` loads no HTTP library
    )

    pacs = PacsAuth.from_cli(a.url, user=a.user, netrc_file=a.netrc, token_env=a.token_env, ca_bundle=a.ca_bundle)
    if pacs.warning():
        print(pacs.warning(), file=sys.stderr)
    return pacs


def _add_pull(sub) -> None:
    p = sub.add_parser("pull", help="query (QIDO-RS) and retrieve (WADO-RS) studies from a DICOMweb PACS, then scan")
    p.add_argument("--url", required=True, help="DICOMweb root, e.g. https://pacs.example.org/dicom-web")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--study", help="StudyInstanceUID")
    g.add_argument("--patient", help="PatientID")
    g.add_argument("--since", help="studies on or after this date (YYYY-MM-DD or YYYYMMDD)")
    p.add_argument("--out", required=True, help="folder to retrieve into (then scanned into <out>/manifest.csv)")
    p.add_argument("--workers", type=int, default=None, help="instances retrieved at once (default 4; 0: one at a time)")
    _add_pacs_options(p)
    p.set_defaults(func=_cmd_pull)


def _cmd_pull(a) -> int:
    from knee_tf.yourdata.dicomweb import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        PULL_WORKERS,
        pull,
    )
    from knee_tf.yourdata.scan import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        scan_folder,
        summarise,
    )

    n = pull(_pacs(a), a.out, study=a.study, patient=a.patient, since=a.since,
             workers=PULL_WORKERS if a.workers is None else a.workers)
    print(f"retrieved {n.instances} instances of {n.studies} studies into {a.out} ({n.skipped} already there)")
    res = scan_folder(a.out, f"{a.out}/manifest.csv")
    print(summarise(res))
    return 0


def _add_push(sub) -> None:
    p = sub.add_parser("push", help="store Grad-CAM overlays + predictions as a new series per model (STOW-RS)")
    p.add_argument("--url", required=True, help="DICOMweb root")
    p.add_argument("--run", required=True, help="run folder of a study on your data (its models and config)")
    p.add_argument("--manifest", default=None, help="images to push for (default: the run config's manifest)")
    p.add_argument("--root", default=None, help="data root of --manifest (default: the run config's data_root)")
    p.add_argument("--models", default=f"{MODEL_A},{MODEL_B}", help="which arms of the run (comma-separated), e.g. A, B or A,B")
    _add_pacs_options(p)
    p.set_defaults(func=_cmd_push)


def _cmd_push(a) -> int:
    from knee_tf.yourdata.dicomweb import (
        push_run,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    for line in push_run(_pacs(a), a.run, a.manifest, a.root, models=tuple(m.strip() for m in a.models.split(","))):
        print(line)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knee-tf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_synth, _add_ingest, _add_predict, _add_study, _add_grid, _add_controls, _add_tour, _add_html,
                _add_config, _add_scan, _add_split, _add_reslice, _add_pull, _add_push):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        if e.summary:
            print(f"error: {e.summary}", file=sys.stderr)
        for line in e.problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except StepFailed as e:  # its executed notebook holds the traceback
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {e}".splitlines()[0], file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

"""``knee-tf`` command line: synth, ingest, predict, study. Also ``python -m knee_tf``.

Bad input ends with one line per problem on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys

from knee_tf.config import StudyConfig
from knee_tf.errors import InputError, StepFailed
from knee_tf.ingest import ON_ERROR

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
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(a) -> int:
    from knee_tf.phantom import synthesize

    df = synthesize(a.out, n_exams=a.exams, seed=a.seed, matrix=a.matrix,
                    metal_fraction=a.metal_fraction, workers=a.workers or None)
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
    from knee_tf.ingest import ingest, summary_table

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
    p.add_argument("--model", required=True, help="a .keras file written by training (a run folder's models/)")
    p.add_argument("--manifest", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--out", required=True, help="CSV: image_id, plane, p_relevant, predicted, label")
    p.add_argument("--cache", default=_DEFAULT.cache_dir)
    p.add_argument("--on-error", choices=ON_ERROR, default=_DEFAULT.on_error)
    p.add_argument("--workers", type=int, default=0)
    p.set_defaults(func=_cmd_predict)


def _cmd_predict(a) -> int:
    from knee_tf.predict import predict_manifest

    df = predict_manifest(a.model, a.manifest, a.root, a.out, cache_dir=a.cache, on_error=a.on_error,
                          workers=a.workers or None)
    msg = f"wrote {len(df)} predictions to {a.out}"
    if "label" in df and df["label"].ne("").all():
        msg += f" (accuracy {(df['predicted'] == df['label']).mean():.3f})"
    print(msg)
    return 0


def _add_study(sub) -> None:
    p = sub.add_parser("study", help="run notebooks 01-06 into a run folder (resumes an interrupted run)")
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
    from knee_tf.study import publish, run_study

    if a.force and not a.publish:
        raise InputError("--force only applies with --publish")
    run = run_study(a.config, seeds=a.seeds, out=a.out, settings=a.settings)
    print(f"study finished: {run.root}")
    if a.publish:
        publish(run, force=a.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knee-tf", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_synth, _add_ingest, _add_predict, _add_study):
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

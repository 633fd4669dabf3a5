"""The your-own-data commands of ``knee-tf``: scan, label, split, reslice, pull, push (with the PACS options), overlays,
prescribe."""

from __future__ import annotations

import sys
from pathlib import Path

from knee_tf.cli.options import (
    add_cache,
    add_manifest,
    add_model,
    add_parser,
    add_root,
    add_run,
    add_workers,
    cpu_workers,
    deprecated,
)
from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_csv
from knee_tf.core.vocab import MODEL_A, MODEL_B, PLANES
from knee_tf.data.ingest import default_cache_dir
from knee_tf.data.layout import DATA_MANIFEST, PRESCRIBE_FILES
from knee_tf.data.manifest import read_manifest
from knee_tf.study.config import StudyConfig

_DEFAULT = StudyConfig()
PULL_WORKERS_TEXT = "4"  # knee_tf.yourdata.dicomweb.PULL_WORKERS, not imported: `knee-tf --help` loads no HTTP library


def add_scan(sub) -> None:
    p = add_parser(sub, "scan", "find the knee localizer slices in a DICOM export (headers only) -> manifest")
    p.add_argument("dir", metavar="DIR", help="folder to scan (nested, DICOMDIR or loose files, any file names)")
    p.add_argument("--out", required=True, metavar="CSV", help="manifest CSV to write (scan_report.csv is "
                                                               "written beside it)")
    add_model(p, required=False, extra="; fills p_relevant and the predicted class, checked before anything is "
                                       "written (default: none)")
    p.add_argument("--salt", default=None, metavar="FILE",
                   help="salt file for pseudonyms (default: pseudonym_salt.txt beside --out)")
    p.add_argument("--id-map", default=None, metavar="CSV", help="where the map back to real ids goes "
                                                                 "(default: patient_id_map.csv beside --out)")
    add_cache(p)
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

        add_predictions(a.out, a.dir, model, cache_dir=a.cache or default_cache_dir())
        print(f"predictions of {a.model} added to {a.out} (p_relevant, predicted; label left empty)")
    return 0


def add_split(sub) -> None:
    p = add_parser(sub, "split", "assign train/val/test by patient (seeded, stratified by site)")
    add_manifest(p, "manifest CSV to split (rewritten in place unless --out)")
    p.add_argument("--by", choices=("patient",), default="patient", help="unit kept within one split")
    p.add_argument("--ratios", default="0.7,0.1,0.2", help="train,val,test shares of patients")
    p.add_argument("--seed", type=int, default=0, help="shuffling seed")
    p.add_argument("--out", default=None, metavar="CSV", help="write here (default: rewrite --manifest)")
    p.add_argument("--force", action="store_true", help="write even a split with an empty split or a split "
                                                        "missing a class (printed as a warning)")
    p.set_defaults(func=_cmd_split)


def _cmd_split(a) -> int:
    from knee_tf.data.split import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        parse_ratios,
        split_by_patient,
        split_counts,
        split_problems,
        split_summary,
    )

    ratios = parse_ratios(a.ratios)
    df = split_by_patient(read_manifest(a.manifest), ratios, a.seed, manifest_name=a.manifest)
    problems = split_problems(df, ratios)
    if problems:
        what = f"{a.manifest}: {'; '.join(problems)} ({split_counts(df)})"
        if not a.force:
            raise InputError(f"{what}: not written; label more patients, change --ratios or --seed, or --force")
        print(f"warning: {what}", file=sys.stderr)
    atomic_write_csv(a.out or a.manifest, df)
    print(split_summary(df).to_string())
    print(f"wrote {a.out or a.manifest}")
    return 0


def add_reslice(sub) -> None:
    p = add_parser(sub, "reslice", "3D volumes -> tri-plane pseudo-localizer DICOM slices + manifest")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="DICOM series folders, .nii/.nii.gz files or MRNet-style .npy stacks")
    p.add_argument("--out", required=True, metavar="DIR", help="output data folder (DICOM files and "
                                                               "data_manifest.csv)")
    p.add_argument("--orientation", choices=PLANES, default=None,
                   help="acquisition plane of a .npy stack (no header) (default: none; required for .npy)")
    p.add_argument("--spacing", default=None, help="ROW,COL,SLICE mm of a .npy stack (default: none; required "
                                                   "for .npy)")
    p.add_argument("--series-uid", default=None, metavar="UID",
                   help="which series, when a folder holds several (default: the only one)")
    p.add_argument("--count", type=int, default=7, help="slices per plane")
    p.add_argument("--thickness", type=float, default=8.0, help="slab thickness (mm)")
    p.add_argument("--gap", type=float, default=13.0, help="slice centre-to-centre spacing (mm)")
    p.add_argument("--matrix", type=int, default=256, help="rows and columns of the written slices")
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


def add_pacs_options(p) -> None:
    """Credentials and TLS of pull and push (never a password on the command line)."""
    g = p.add_argument_group("PACS credentials and TLS")
    g.add_argument("--user", default=None, help="HTTP basic auth user name; the password comes from "
                   "KNEE_TF_PACS_PASSWORD, else the netrc file's entry for the host, else a prompt "
                   "(default: none, or a token)")
    g.add_argument("--netrc", default=None, metavar="FILE", help="netrc file with the password of --user "
                   "(default: ~/.netrc when it exists)")
    g.add_argument("--token-env", default=None, metavar="VAR", help="environment variable holding a bearer token "
                   "(default: KNEE_TF_PACS_TOKEN, when set and no --user)")
    g.add_argument("--ca-bundle", default=None, metavar="FILE", help="PEM certificate(s) of a private certificate "
                   "authority to trust (TLS is always verified) (default: the system's)")


def _pacs(a):
    from knee_tf.yourdata.pacs_auth import (
        PacsAuth,  # lazy: start-up time: `knee-tf --help` loads no HTTP library
    )

    pacs = PacsAuth.from_cli(a.url, user=a.user, netrc_file=a.netrc, token_env=a.token_env, ca_bundle=a.ca_bundle)
    if pacs.warning():
        print(pacs.warning(), file=sys.stderr)
    return pacs


def add_pull(sub) -> None:
    p = add_parser(sub, "pull", "query (QIDO-RS) and retrieve (WADO-RS) studies from a DICOMweb PACS, then scan")
    p.add_argument("--url", required=True, help="DICOMweb root, e.g. https://pacs.example.org/dicom-web")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--study", help="StudyInstanceUID (one of --study, --patient, --since is required)")
    g.add_argument("--patient", help="PatientID (one of --study, --patient, --since is required)")
    g.add_argument("--since", help="studies on or after this date, YYYY-MM-DD or YYYYMMDD (one of --study, "
                                   "--patient, --since is required)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help=f"folder to retrieve into (then scanned into <out>/{DATA_MANIFEST})")
    add_workers(p, "retrievals at once (threads)", default=None, old_zero="one at a time",
                default_text=f" (default: {PULL_WORKERS_TEXT})")
    add_pacs_options(p)
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
             workers=PULL_WORKERS if a.workers is None else 0 if a.workers == 1 else cpu_workers(a.workers))
    print(f"retrieved {n.instances} instances of {n.studies} studies into {a.out} ({n.skipped} already there)")
    res = scan_folder(a.out, Path(a.out) / DATA_MANIFEST)
    print(summarise(res))
    print(f"manifest: {Path(a.out) / DATA_MANIFEST}")
    return 0


def _arms_option(p, what: str, old_models: bool = False) -> None:
    p.add_argument("--arms", default=f"{MODEL_A},{MODEL_B}", help=f"which arms of the run {what} "
                                                                  "(comma-separated), e.g. A, B or A,B")
    if old_models:
        deprecated(p, "--models", "--arms", "arms")


def _arms(a) -> tuple[str, ...]:
    return tuple(m.strip() for m in a.arms.split(",") if m.strip())


def add_push(sub) -> None:
    p = add_parser(sub, "push", "store Grad-CAM overlays + predictions as a new series per model (STOW-RS)")
    p.add_argument("--url", required=True, help="DICOMweb root")
    add_run(p, "run folder of a study on your data (its models and config)", required=True)
    add_manifest(p, "images to push for (default: the run config's manifest)", required=False)
    add_root(p, "data root of --manifest (default: the run config's data_root)", required=False)
    _arms_option(p, "to push, every seed", old_models=True)
    add_cache(p, "the run config's cache_dir, where the study decoded its data")
    add_pacs_options(p)
    p.set_defaults(func=_cmd_push)


def _cmd_push(a) -> int:
    from knee_tf.yourdata.dicomweb import (
        push_run,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    for line in push_run(_pacs(a), a.run, a.manifest, a.root, models=_arms(a), cache_dir=a.cache):
        print(line)
    return 0


def add_overlays(sub) -> None:
    p = add_parser(sub, "overlays", "write a run's Grad-CAM overlays + predictions as DICOM files, without a PACS")
    p.add_argument("run", metavar="RUN", help="run folder of a study on your data (its models and config)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write into: <StudyUID>/<SeriesUID>/"
                                                               "<SOPInstanceUID>.dcm")
    add_manifest(p, "images to write overlays for (default: the run config's manifest)", required=False)
    add_root(p, "data root of --manifest (default: the run config's data_root)", required=False)
    _arms_option(p, "to write, every seed")
    add_cache(p, "the run config's cache_dir, where the study decoded its data")
    p.set_defaults(func=_cmd_overlays)


def _cmd_overlays(a) -> int:
    from knee_tf.yourdata.run_overlays import (
        write_overlays,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    for line in write_overlays(a.run, a.out, a.manifest, a.root, arms=_arms(a), cache_dir=a.cache):
        print(line)
    return 0


def add_label(sub) -> None:
    p = add_parser(sub, "label", "label a manifest's slices: in JupyterLab (notebook 08), or in the terminal with "
                                 "the same keys")
    p.add_argument("manifest", metavar="MANIFEST", help="manifest CSV to label (rewritten after every key)")
    add_root(p, "data root of the manifest's paths (default: the manifest's folder)", required=False)
    p.add_argument("--terminal", action="store_true", help="label in this terminal even where JupyterLab and a "
                                                           "display are available")
    p.add_argument("--no-picture", action="store_true", help="terminal: do not draw the slice as characters")
    p.set_defaults(func=_cmd_label)


def _cmd_label(a) -> int:
    from knee_tf.yourdata.label import (
        LabelSession,  # lazy: start-up time: `knee-tf --help` loads no PIL
    )
    from knee_tf.yourdata.label_terminal import (  # lazy: start-up time: `knee-tf --help` loads no PIL
        lab_available,
        label_in_terminal,
        open_in_lab,
        prepare_notebook,
        read_keys,
    )

    manifest = Path(a.manifest)
    root = Path(a.root) if a.root else manifest.parent
    session = LabelSession(manifest)  # a missing or unusable manifest fails here, in one line
    if not root.is_dir():
        raise InputError(f"--root {root}: not a folder")
    if not a.terminal and lab_available():
        nb = prepare_notebook(manifest, root, manifest.parent / f"label_{manifest.stem}.ipynb")
        print(f"opening {nb} in JupyterLab (Ctrl-C here stops it; the manifest is saved after every key)")
        return open_in_lab(nb)
    print(f"{len(session.order)} slices in {manifest}; images under {root}")
    label_in_terminal(session, root, read_keys(sys.stdin), picture=not a.no_picture)
    return 0


def add_prescribe(sub) -> None:
    p = add_parser(sub, "prescribe", "first and last relevant slice of each exam and plane (CSV + a PNG per exam), "
                                     "from a DICOM folder or a manifest")
    p.add_argument("source", metavar="SOURCE", help="a DICOM folder (scanned as `knee-tf scan` does) or a manifest CSV")
    add_model(p, required=False, extra=" (default: published:A)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: {ranges}, {slices}, {predictions}, "
                   "{figures}/<exam_id>.png (and from a folder {manifest}, scan_report.csv)".format(**PRESCRIBE_FILES))
    add_root(p, "data root of a manifest's paths (default: the manifest's folder)", required=False)
    add_workers(p, "decoding processes")
    add_cache(p)
    p.add_argument("--salt", default=None, metavar="FILE", help="from a folder: salt file for pseudonyms "
                                                                "(default: pseudonym_salt.txt in --out)")
    p.add_argument("--id-map", default=None, metavar="CSV", help="from a folder: where the map back to real ids goes "
                                                                 "(default: patient_id_map.csv in --out)")
    p.add_argument("--no-figures", action="store_true", help="write the CSVs only (default: a PNG per exam too)")
    p.set_defaults(func=_cmd_prescribe)


def _cmd_prescribe(a) -> int:
    from knee_tf.yourdata.models import (
        open_model,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )
    from knee_tf.yourdata.prescribe import (  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
        prescribe,
        summarise,
    )

    model = open_model(a.model or "published:A")  # checked before anything is written
    res = prescribe(a.source, a.out, model, root=a.root, cache_dir=a.cache or default_cache_dir(),
                    workers=cpu_workers(a.workers), salt_file=a.salt, id_map=a.id_map, figures=not a.no_figures)
    print(summarise(res))
    print(f"prescription: {res.csv}" + (f"; figures: {len(res.figures)} in {res.figures[0].parent}"
                                        if res.figures else ""))
    if res.scan is not None:
        print(f"pseudonym map (keep private): {res.scan.id_map_path}")
    return 0

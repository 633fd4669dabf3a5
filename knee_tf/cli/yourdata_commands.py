"""The your-own-data commands of ``knee-tf``: scan, split, reslice, pull, push (with the PACS options), prescribe."""

from __future__ import annotations

import sys

from knee_tf.core.errors import InputError
from knee_tf.core.io import atomic_write_csv
from knee_tf.core.vocab import MODEL_A, MODEL_B, PLANES
from knee_tf.data.layout import PRESCRIBE_FILES
from knee_tf.data.manifest import read_manifest
from knee_tf.study.config import StudyConfig

_DEFAULT = StudyConfig()


def add_scan(sub) -> None:
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


def add_split(sub) -> None:
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


def add_reslice(sub) -> None:
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


def add_pacs_options(p) -> None:
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


def add_pull(sub) -> None:
    p = sub.add_parser("pull", help="query (QIDO-RS) and retrieve (WADO-RS) studies from a DICOMweb PACS, then scan")
    p.add_argument("--url", required=True, help="DICOMweb root, e.g. https://pacs.example.org/dicom-web")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--study", help="StudyInstanceUID")
    g.add_argument("--patient", help="PatientID")
    g.add_argument("--since", help="studies on or after this date (YYYY-MM-DD or YYYYMMDD)")
    p.add_argument("--out", required=True, help="folder to retrieve into (then scanned into <out>/manifest.csv)")
    p.add_argument("--workers", type=int, default=None, help="instances retrieved at once (default 4; 0: one at a time)")
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
             workers=PULL_WORKERS if a.workers is None else a.workers)
    print(f"retrieved {n.instances} instances of {n.studies} studies into {a.out} ({n.skipped} already there)")
    res = scan_folder(a.out, f"{a.out}/manifest.csv")
    print(summarise(res))
    return 0


def add_push(sub) -> None:
    p = sub.add_parser("push", help="store Grad-CAM overlays + predictions as a new series per model (STOW-RS)")
    p.add_argument("--url", required=True, help="DICOMweb root")
    p.add_argument("--run", required=True, help="run folder of a study on your data (its models and config)")
    p.add_argument("--manifest", default=None, help="images to push for (default: the run config's manifest)")
    p.add_argument("--root", default=None, help="data root of --manifest (default: the run config's data_root)")
    p.add_argument("--models", default=f"{MODEL_A},{MODEL_B}", help="which arms of the run (comma-separated), e.g. A, B or A,B")
    add_pacs_options(p)
    p.set_defaults(func=_cmd_push)


def _cmd_push(a) -> int:
    from knee_tf.yourdata.dicomweb import (
        push_run,  # lazy: start-up time: `knee-tf --help` loads no TensorFlow
    )

    for line in push_run(_pacs(a), a.run, a.manifest, a.root, models=tuple(m.strip() for m in a.models.split(","))):
        print(line)
    return 0


def add_prescribe(sub) -> None:
    p = sub.add_parser("prescribe", help="first and last relevant slice of each exam and plane (CSV + a PNG per "
                                         "exam), from a DICOM folder or a manifest")
    p.add_argument("source", help="a DICOM folder (scanned as `knee-tf scan` does) or a manifest CSV")
    p.add_argument("--model", default="published:A", help="published:A or published:B (the shipped models), or a "
                   ".keras file written by training (a run folder's models/<arm and seed>/model.keras) "
                   "(default: %(default)s)")
    p.add_argument("--out", required=True, help="output folder: {ranges}, {slices}, {predictions}, "
                   "{figures}/<exam_id>.png (and from a folder {manifest}, scan_report.csv)".format(**PRESCRIBE_FILES))
    p.add_argument("--root", default=None, help="data root of a manifest's paths (default: the manifest's folder)")
    p.add_argument("--workers", type=int, default=0, help="decoding processes; 0 = all cores (default: %(default)s)")
    p.add_argument("--cache", default=_DEFAULT.cache_dir, help="ingest cache folder (default: %(default)s)")
    p.add_argument("--salt", default=None, help="from a folder: salt file for pseudonyms "
                                                "(default: pseudonym_salt.txt in --out)")
    p.add_argument("--id-map", default=None, help="from a folder: where the map back to real ids goes "
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

    model = open_model(a.model)  # checked before anything is written
    res = prescribe(a.source, a.out, model, root=a.root, cache_dir=a.cache, workers=a.workers or None,
                    salt_file=a.salt, id_map=a.id_map, figures=not a.no_figures)
    print(summarise(res))
    print(f"prescription: {res.csv}" + (f"; figures: {len(res.figures)} in {res.figures[0].parent}"
                                        if res.figures else ""))
    if res.scan is not None:
        print(f"pseudonym map (keep private): {res.scan.id_map_path}")
    return 0

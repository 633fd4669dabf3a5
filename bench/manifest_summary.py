"""The numbers of ``docs/phantom.md``'s "Measured" section, from a phantom manifest.

    python bench/manifest_summary.py data_manifest.csv
"""

from __future__ import annotations

import sys

import pandas as pd


def main(argv=None) -> int:
    path = (argv or sys.argv[1:])[0]
    df = pd.read_csv(path, keep_default_na=False)
    t = lambda s: s.astype(str).str.lower() == "true"  # noqa: E731
    print(f"images {len(df):,}, exams {df.exam_id.nunique()}, patients {df.patient_id.nunique()}")
    print("planes", df.plane.value_counts().to_dict())
    print("matrix", df.matrix.value_counts().to_dict())
    print(f"wrap {100 * t(df.wrap).mean():.1f} %, ghosts {100 * t(df.ghosts).mean():.1f} %, "
          f"partial Fourier {100 * (df.partial_fourier < 1).mean():.1f} %, "
          f"hard exams {100 * t(df.drop_duplicates('exam_id').hard).mean():.1f} %")
    print("relevant fraction", (df.label == "relevant").groupby(df.plane).mean().round(3).to_dict())
    print(f"label != rule label: {100 * t(df.label_flipped).mean():.2f} % of images; by plane",
          (100 * t(df.label_flipped).groupby(df.plane).mean()).round(2).to_dict())
    print("annotator offsets (mm, median |offset| per annotator)",
          df.annotator_offset_mm.abs().groupby(df.annotator).median().round(1).to_dict())
    print("split x cohort", df.groupby(["cohort", "split"]).size().to_dict())
    print("implants", df.drop_duplicates("exam_id").implant.value_counts().to_dict())
    print("no leg in slice", f"{100 * (df.anatomy == '').mean():.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

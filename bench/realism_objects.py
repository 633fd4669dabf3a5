"""Where a phantom's second objects come from (issue 28's gate, the "second object" statistics).

The real GE localizer has no second object of 10 % of the limb in any of its 27 slices. It is one
1.5 T exam, fat and water 98 degrees apart at its echo, in a transmit-receive knee coil, with its
9 slices per plane within 40 mm of the knee's centre. The phantom's sample (``bench/realism.py``:
the normal cohort, 150 slices per plane) mixes sites, coils and echo times, and it places slices
beyond the knee too (the irrelevant slices its labels are built on). This script measures the same
whole-limb mask and objects as ``bench/realism_stats.object_stats`` on the same sample, and splits
the share of slices with a second object by what the slice is:

* ``beyond 40 mm``: the slice lies more than 40 mm from the knee's centre, outside the real
  localizer's coverage;
* ``opposed fat-water``: its site's echo puts fat within 60 degrees of opposite phase to water, so
  a voxel that mixes fat and water at a boundary keeps less than half of its signal (the dark
  boundary lines of a gradient echo out of phase; ``knee_tf.phantom.sites.fat_phase``);
* ``flexible coil``: a receive array that is not a transmit-receive knee coil, which sees the
  other leg;
* ``like the real localizer``: the rest (within 40 mm, a transmit-receive coil, fat not opposed).

and, for each second object, whether it lies within TOUCH_PX pixels of the largest one (the limb
split along a dark band: a tendon, a bone's cortex, the dark boundary of fat and water) or
further away (a piece apart: the other leg, thigh and calf beyond the knee's width, noise in air).

    python bench/realism_objects.py --data data/v2 --data data/v3 --out bench/logs/realism_objects.csv
    python bench/realism_objects.py --doc docs/phantom.md --csv bench/logs/realism_objects.csv  # its table
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from scipy import ndimage
from tqdm.auto import tqdm

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]
import realism_stats as rs  # noqa: E402
from realism import NATIVE_TOLERANCE, sample  # noqa: E402

from knee_tf.phantom.sites import SITES, fat_phase  # noqa: E402

REAL_REACH_MM = 40.0  # the real localizer's slices: -40 to +40 mm
TOUCH_PX = 8  # a piece split off by a dark band up to this wide (about 7 mm: a tendon, a cortex, a fat-water boundary)
OPPOSED_WITHIN_DEG = 60.0  # a 50/50 fat-water voxel keeps |cos(phase / 2)| < 0.5 of its signal
GROUPS = ("beyond 40 mm", "opposed fat-water", "flexible coil", "like the real localizer")
PLANES = ("axial", "sagittal", "coronal")
BEGIN, END = "<!-- realism-objects:begin -->", "<!-- realism-objects:end -->"


def opposed_sites() -> set[str]:
    """Sites whose echo puts fat within OPPOSED_WITHIN_DEG of opposite phase to water."""
    out = set()
    for site in SITES:
        deg = np.degrees(abs(fat_phase(site))) % 360.0
        if abs(deg - 180.0) < OPPOSED_WITHIN_DEG:
            out.add(site.code)
    return out


def read_slice(path: Path) -> tuple[np.ndarray, float]:
    """A slice's pixels and pixel size, resampled to 0.86 mm as bench/realism.py does where it is
    more than NATIVE_TOLERANCE away."""
    ds = pydicom.dcmread(path)
    img, px = ds.pixel_array.astype(np.float64), float(ds.PixelSpacing[0])
    if abs(px - rs.REAL_PIXEL_MM) / rs.REAL_PIXEL_MM > NATIVE_TOLERANCE:
        img, px = rs.resample_to(img, px), rs.REAL_PIXEL_MM
    return img, px


def second_object(img: np.ndarray, px: float) -> dict:
    """The whole-limb mask's objects of one slice: limb area, second / first, and whether the
    second object lies within TOUCH_PX of the largest one."""
    limb, objects = rs.limb_mask(img)
    lab, n = ndimage.label(objects)
    sizes = np.bincount(lab.ravel())[1:] if n else np.zeros(0)
    order = np.argsort(sizes)[::-1]
    ratio = sizes[order[1]] / sizes[order[0]] if n > 1 else 0.0
    near = bool(n > 1 and (ndimage.binary_dilation(lab == order[0] + 1, iterations=TOUCH_PX)
                           & (lab == order[1] + 1)).any())
    return {"area_cm2": limb.sum() * px ** 2 / 100.0, "second_over_first": float(ratio),
            "second": bool(ratio >= 0.10), "split": near}


def measure(data: Path) -> pd.DataFrame:
    manifest = pd.read_csv(data / "data_manifest.csv")
    picked = sample(manifest)
    rows = [second_object(*read_slice(data / rel)) for rel in tqdm(picked.path, desc=f"objects {data.name}", unit="slice")]
    out = pd.concat([picked[["plane", "image_id", "site", "coil", "slice_location_mm"]].reset_index(drop=True),
                     pd.DataFrame(rows)], axis=1)
    opposed = opposed_sites()
    out["group"] = np.select(
        [out.slice_location_mm.abs() > REAL_REACH_MM, out.site.isin(opposed), ~out.coil.str.contains("TR")],
        GROUPS[:3], GROUPS[3])
    return out


def table(df: pd.DataFrame) -> pd.DataFrame:
    """Per plane and group: slices, the share with a second object, and that share split into
    second objects next to the largest one (split off) and apart from it."""
    rows = []
    for (plane, group), g in df.groupby(["plane", "group"], sort=False):
        rows.append({"plane": plane, "group": group, "slices": len(g), "second": g.second.mean(),
                     "split": (g.second & g.split).mean(), "apart": (g.second & ~g.split).mean()})
    for plane, g in df.groupby("plane", sort=False):
        rows.append({"plane": plane, "group": "all", "slices": len(g), "second": g.second.mean(),
                     "split": (g.second & g.split).mean(), "apart": (g.second & ~g.split).mean()})
    out = pd.DataFrame(rows)
    out["group"] = pd.Categorical(out.group, [*GROUPS, "all"], ordered=True)
    return out.sort_values(["plane", "group"]).reset_index(drop=True)


def doc_table(tables: pd.DataFrame) -> str:
    """The markdown table of docs/phantom.md from :func:`table`'s rows of two phantoms (column
    ``phantom``, the first is the baseline): per plane, the slices like the real localizer as
    counts, the other groups and all slices as shares, baseline -> candidate."""
    names = list(dict.fromkeys(tables.phantom))
    if len(names) != 2:
        raise SystemExit(f"the table compares two phantoms; the CSV holds {len(names)}: {', '.join(names)}")
    a, b = (tables[tables.phantom == n].set_index(["plane", "group"]) for n in names)
    like = GROUPS[3]
    lines = [f"| plane | slices {like}: {names[0]} → {names[1]} | "
             + " | ".join(GROUPS[:3]) + " | all |", "|---" * 6 + "|"]
    for plane in PLANES:
        ra, rb = a.loc[(plane, like)], b.loc[(plane, like)]
        cells = [f"{round(ra.second * ra.slices)} / {ra.slices} → {round(rb.second * rb.slices)} / {rb.slices}"]
        cells += [f"{a.loc[(plane, g)].second:.2f} → {b.loc[(plane, g)].second:.2f}" for g in (*GROUPS[:3], "all")]
        lines.append(f"| {plane} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_doc(doc: Path, tables: pd.DataFrame) -> None:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} block to rewrite")
    head, rest = text.split(BEGIN, 1)
    tmp = doc.with_suffix(doc.suffix + ".tmp")
    tmp.write_text(head + BEGIN + "\n" + doc_table(tables) + "\n" + END + rest.split(END, 1)[1])
    tmp.replace(doc)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, action="append", default=[], help="a data folder (repeatable)")
    p.add_argument("--out", type=Path, help="write the tables of every --data here (CSV, column phantom)")
    p.add_argument("--doc", type=Path, help="rewrite this markdown file's table block from --csv")
    p.add_argument("--csv", type=Path, help="with --doc: the CSV that --out wrote (two phantoms)")
    a = p.parse_args(argv)
    if a.doc is not None:
        if a.csv is None or not a.csv.exists():
            raise SystemExit(f"--doc needs --csv, the tables --out wrote ({a.csv}: not there)")
        write_doc(a.doc, pd.read_csv(a.csv))
        print(f"{a.doc}: second-object table rewritten from {a.csv}")
        return 0
    if not a.data:
        raise SystemExit("give --data (a data folder), or --doc with --csv")
    print(f"sites with fat within {OPPOSED_WITHIN_DEG:.0f} degrees of opposed phase: "
          + ", ".join(sorted(opposed_sites())))
    tables = []
    for data in a.data:
        if not (data / "data_manifest.csv").exists():
            raise SystemExit(f"{data}: no data_manifest.csv")
        t = table(measure(data))
        print(f"\n{data}: share of sampled slices with a second object >= 10 % of the limb "
              f"(split: within {TOUCH_PX} px of the largest object; apart: further)")
        print(t.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        tables.append(t.assign(phantom=data.name))
    if a.out is not None:
        tmp = a.out.with_suffix(".tmp")
        pd.concat(tables).to_csv(tmp, index=False)
        tmp.replace(a.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

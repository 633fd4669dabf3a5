"""How far a phantom's slices are from the real GE knee localizer, statistic by statistic and plane
by plane (issue 28; definitions in ``../shared/REALISM_STATS.md``, real values and quartiles in
``../shared/real_localizer_stats.csv``; the statistics themselves in ``bench/realism_stats.py``).

Sampling as the maintainers describe it: the normal cohort only, 150 slices per plane (pandas
``sample``, ``random_state=0``). Slices whose pixels are more than 15 % away from 0.86 mm are
resampled to 0.86 mm; the pixel-grain statistics (``realism_stats.GRAIN_STATS``, marked † in the
table) use only the native-pixel slices. The per-plane value is the median over slices (the share
of slices for ``second_obj_10pct``); "inside" means q25 <= value <= q75 of the real localizer.

    python bench/realism.py --data data/synthetic [--out bench/logs/realism_today.csv]
    python bench/realism.py --doc docs/phantom.md --csv today=bench/logs/realism_v2.csv \\
        --csv candidate=bench/logs/realism_v3.csv      # rewrite the table in docs/phantom.md
    python bench/realism.py --gate bench/logs/realism_v2.csv bench/logs/realism_v3.csv  # issue 28's gate
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
from tqdm.auto import tqdm

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the bench helpers, then this tree's knee_tf
import realism_stats as rs  # noqa: E402  (the bench's own helper module, beside this file)

REAL_CSV = HERE.parent.parent / "shared" / "real_localizer_stats.csv"
PER_PLANE = 150
NATIVE_TOLERANCE = 0.15
PLANES = ("axial", "sagittal", "coronal")
SHARE_STATS = ("second_obj_10pct",)  # per plane: the share of slices, not a median
BEGIN, END = "<!-- realism-table:begin -->", "<!-- realism-table:end -->"
#: issue 28's gate ("never further out on the contrast, coverage and second-object statistics"):
#: contrast is section 3 of real_localizer_stats.csv (intensity / limb p99), coverage the coil's
#: shading and end-of-field signal (section 7), the second object the objects of section 1
GATE_GROUPS = {
    "contrast": ("bimodality_eta", "bright_share", "dark_share", "p5", "p50", "p95"),
    "coverage": ("end_over_centre_min", "shade_cols", "shade_rows"),
    "second object": ("n_obj", "second_obj_10pct", "second_over_first"),
}


def real_table(path: Path = REAL_CSV) -> pd.DataFrame:
    """The real localizer's statistics: plane, statistic, meaning, median, q25, q75."""
    if not path.exists():
        raise SystemExit(f"{path}: the real localizer's statistics are not there "
                         "(the shared folder beside the repository)")
    return pd.read_csv(path)


def sample(manifest: pd.DataFrame) -> pd.DataFrame:
    """The slices measured: normal cohort, PER_PLANE per plane, pandas sample(random_state=0)."""
    normal = manifest[manifest.cohort == "normal"]
    parts = [g.sample(n=min(PER_PLANE, len(g)), random_state=0)
             for _, g in normal.groupby("plane", sort=False)]
    return pd.concat(parts)


def measure_file(path: Path) -> tuple[dict, bool]:
    """Statistics of one DICOM slice and whether it was measured at its native pixel size."""
    ds = pydicom.dcmread(path)
    img = ds.pixel_array.astype(np.float64)
    px = float(ds.PixelSpacing[0])
    if abs(px - rs.REAL_PIXEL_MM) / rs.REAL_PIXEL_MM <= NATIVE_TOLERANCE:
        return rs.slice_stats(img, px), True
    st = rs.slice_stats(rs.resample_to(img, px), rs.REAL_PIXEL_MM, raw=img)
    return {k: v for k, v in st.items() if k not in rs.GRAIN_STATS}, False


def measure(data: Path, progress: bool = True, workers: int = 2) -> pd.DataFrame:
    """One row per sampled slice: plane, native, then every statistic (NaN where not measured).
    The slices are measured in ``workers`` processes, in sample order."""
    manifest = pd.read_csv(data / "data_manifest.csv")
    picked = sample(manifest)
    paths = [data / rel for rel in picked.path]
    with mp.get_context("spawn").Pool(max(1, workers)) as pool:
        results = list(tqdm(pool.imap(measure_file, paths, chunksize=4), total=len(paths),
                            desc="realism slices", unit="slice", disable=not progress))
    return pd.DataFrame([{"plane": plane, "image_id": iid, "native": native, **st}
                         for plane, iid, (st, native) in zip(picked.plane, picked.image_id, results,
                                                             strict=True)])


def summarise(per_slice: pd.DataFrame, real: pd.DataFrame) -> pd.DataFrame:
    """Per (plane, statistic) of the real table: the phantom's value, slices used, real quartiles
    and whether the value lies inside them."""
    out = []
    for r in real.itertuples(index=False):
        g = per_slice[per_slice.plane == r.plane]
        col = g[r.statistic] if r.statistic in g else pd.Series(dtype=float)
        col = col.dropna()
        value = (col.mean() if r.statistic in SHARE_STATS else col.median()) if len(col) else np.nan
        out.append({"plane": r.plane, "statistic": r.statistic, "value": round(float(value), 4),
                    "n_slices": len(col), "grain": r.statistic in rs.GRAIN_STATS,
                    "real_median": r.median, "real_q25": r.q25, "real_q75": r.q75,
                    "inside": bool(r.q25 <= value <= r.q75)})
    return pd.DataFrame(out)


def print_table(summary: pd.DataFrame) -> None:
    for plane in PLANES:
        s = summary[summary.plane == plane]
        print(f"\n{plane}: {int(s.inside.sum())} of {len(s)} statistics inside the real quartiles")
        for r in s.itertuples(index=False):
            mark = "in " if r.inside else "OUT"
            tag = "†" if r.grain else " "
            print(f"  {mark} {r.statistic + tag:<24} {r.value:>10.4g}   real {r.real_median:>9.4g} "
                  f"[{r.real_q25:.4g}, {r.real_q75:.4g}]  n={r.n_slices}")
    print(f"\ninside the real quartiles: {int(summary.inside.sum())} of {len(summary)} "
          "(statistic x plane) pairs")


def _fmt(v: float) -> str:
    return "–" if not np.isfinite(v) else f"{v:.3g}"


def doc_table(labelled: list[tuple[str, pd.DataFrame]]) -> str:
    """Markdown: per plane and statistic, the real median and quartiles, then each phantom's value
    (bold when inside the quartiles), and the inside counts per phantom and plane."""
    base = labelled[0][1]
    names = [n for n, _ in labelled]
    lines = ["| phantom | " + " | ".join(PLANES) + " | all |", "|---|" + "---|" * (len(PLANES) + 1)]
    for name, s in labelled:
        per = [f"{int(s[s.plane == p].inside.sum())} / {int((s.plane == p).sum())}" for p in PLANES]
        lines.append(f"| {name} | " + " | ".join(per) + f" | **{int(s.inside.sum())} / {len(s)}** |")
    lines += ["", "| plane | statistic | real median [q25, q75] | " + " | ".join(names) + " |",
              "|---|---|---|" + "---|" * len(names)]
    for i, r in enumerate(base.itertuples(index=False)):
        cells = []
        for _, s in labelled:
            row = s.iloc[i]
            if (row.plane, row.statistic) != (r.plane, r.statistic):
                raise SystemExit("the CSVs list different statistics; measure them with the same bench")
            v = _fmt(row.value)
            cells.append(f"**{v}**" if row.inside else v)
        tag = "†" if r.grain else ""
        lines.append(f"| {r.plane} | {r.statistic}{tag} | {_fmt(r.real_median)} [{_fmt(r.real_q25)}, "
                     f"{_fmt(r.real_q75)}] | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_doc(doc: Path, labelled: list[tuple[str, pd.DataFrame]]) -> None:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} block to rewrite")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(head + BEGIN + "\n" + doc_table(labelled) + "\n" + END + tail)


def compare(base: pd.DataFrame, new: pd.DataFrame) -> str:
    """Lines for bench/logs/realism.txt: inside counts per plane of both, then every (plane,
    statistic) that entered or left the real quartiles or moved at least a fifth of its distance to
    the real median (closer "+", further "-")."""
    lines = []
    for plane in PLANES:
        b, n = base[base.plane == plane], new[new.plane == plane]
        lines.append(f"  {plane}: {int(b.inside.sum())} -> {int(n.inside.sum())} inside")
    lines.append(f"  all: {int(base.inside.sum())} -> {int(new.inside.sum())} inside of {len(base)}")
    for (_, b), (_, n) in zip(base.iterrows(), new.iterrows(), strict=True):
        before, after = abs(b.value - b.real_median), abs(n.value - n.real_median)
        flag = ("IN " if n.inside and not b.inside else "OUT" if b.inside and not n.inside else
                "+  " if after < before - 0.2 * before else "-  " if after > before + 0.2 * max(before, 1e-9)
                else None)
        if flag and np.isfinite(before) and np.isfinite(after):
            lines.append(f"    {flag} {b.plane:<8} {b.statistic:<24} {b.value:.4g} -> {n.value:.4g} "
                         f"(real {b.real_median:.4g} [{b.real_q25:.4g}, {b.real_q75:.4g}])")
    return "\n".join(lines)


def outside(row) -> float:
    """How far a summary row's value lies outside the real quartiles (0 inside)."""
    return float(max(row.real_q25 - row.value, row.value - row.real_q75, 0.0))


def gate(base: pd.DataFrame, new: pd.DataFrame) -> tuple[bool, str]:
    """Issue 28's gate for a new default against today's: inside the real quartiles for at least
    twice as many statistics, more than today in every plane, and never further outside the
    quartiles on :data:`GATE_GROUPS`. Returns (passed, the lines that say why)."""
    lines, ok = [], True
    n_base, n_new = int(base.inside.sum()), int(new.inside.sum())
    twice = n_new >= 2 * n_base
    ok &= twice
    lines.append(f"  inside: {n_base} -> {n_new} (needs >= {2 * n_base}) {'ok' if twice else 'FAIL'}")
    for plane in PLANES:
        b, n = int(base[base.plane == plane].inside.sum()), int(new[new.plane == plane].inside.sum())
        ok &= n > b
        lines.append(f"  {plane}: {b} -> {n} {'ok' if n > b else 'FAIL'}")
    key = ["plane", "statistic"]
    both = base.merge(new, on=key, suffixes=("_b", "_n"))
    for group, stats in GATE_GROUPS.items():
        for r in both[both.statistic.isin(stats)].itertuples(index=False):
            ob = outside(pd.Series({"value": r.value_b, "real_q25": r.real_q25_b, "real_q75": r.real_q75_b}))
            on = outside(pd.Series({"value": r.value_n, "real_q25": r.real_q25_b, "real_q75": r.real_q75_b}))
            worse = on > ob
            ok &= not worse
            if worse or ob > 0 or on > 0:
                lines.append(f"  {group:<13} {r.plane:<8} {r.statistic:<20} {r.value_b:.4g} -> "
                             f"{r.value_n:.4g} outside {ob:.4g} -> {on:.4g} "
                             f"{'FURTHER OUT' if worse else 'ok'}")
    lines.append("  gate: " + ("PASSED" if ok else "not passed"))
    return bool(ok), "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, help="a data folder with data_manifest.csv")
    p.add_argument("--out", type=Path, help="write the per-plane values here (CSV)")
    p.add_argument("--slices-out", type=Path, help="also write the per-slice values here (CSV)")
    p.add_argument("--workers", type=int, default=2, help="processes measuring slices")
    p.add_argument("--real", type=Path, default=REAL_CSV, help="the real localizer's statistics (CSV)")
    p.add_argument("--doc", type=Path, help="rewrite the table block of this markdown file")
    p.add_argument("--csv", action="append", default=[], metavar="LABEL=CSV",
                   help="with --doc: a labelled summary CSV (repeatable; the first is the baseline)")
    p.add_argument("--compare", type=Path, nargs=2, metavar=("BASE_CSV", "NEW_CSV"),
                   help="print which statistics moved between two summary CSVs")
    p.add_argument("--gate", type=Path, nargs=2, metavar=("TODAY_CSV", "NEW_CSV"),
                   help="issue 28's gate for a new default (GATE_GROUPS); exit 1 if not passed")
    a = p.parse_args(argv)
    if a.gate:
        passed, text = gate(pd.read_csv(a.gate[0]), pd.read_csv(a.gate[1]))
        print(text)
        return 0 if passed else 1
    if a.compare:
        print(compare(pd.read_csv(a.compare[0]), pd.read_csv(a.compare[1])))
        return 0
    if a.doc:
        pairs = [item.split("=", 1) for item in a.csv]
        if not pairs or any(len(x) != 2 for x in pairs):
            raise SystemExit("--doc needs --csv LABEL=CSV at least once")
        write_doc(a.doc, [(label, pd.read_csv(path)) for label, path in pairs])
        print(f"rewrote the table in {a.doc}")
        return 0
    if a.data is None:
        p.error("--data is required (or --doc)")
    if not (a.data / "data_manifest.csv").exists():
        raise SystemExit(f"{a.data}: no data_manifest.csv")
    t0 = time.perf_counter()
    per_slice = measure(a.data, workers=a.workers)
    summary = summarise(per_slice, real_table(a.real))
    print_table(summary)
    print(f"measured {len(per_slice)} slices of {a.data} in {time.perf_counter() - t0:.0f} s")
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        summary.to_csv(a.out, index=False, lineterminator="\n")
    if a.slices_out:
        per_slice.to_csv(a.slices_out, index=False, lineterminator="\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""README's generated passages, rewritten from the published results.

README quotes the controls study's effects tables and a few counts beside them. They are written here
from the published effects table (``RunLayout.effects_table`` under ``results/``) and the published
grid, never by hand, so a re-publish cannot leave README behind (``knee-tf controls --publish`` calls
:func:`refresh_controls`). The prose that interprets the numbers is written by people;
``tests/controls/test_published_results.py`` checks that every number it quotes is a cell of the published
tables.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd

from knee_tf.controls.markdown_tables import controls_markdown
from knee_tf.controls.publish import rebuild_store
from knee_tf.core.io import atomic_write_text
from knee_tf.data.layout import RunLayout, published_grid

#: the first line of the first generated table, and the caption that ends each table
TABLE_HEAD = "| comparison | seeds |"
TABLE_CAPTION = "Accuracy difference in points, mean over seeds paired on the same images"


def controls_passages(readme: str, effects: pd.DataFrame, store_mb: int, n_jobs: int) -> str:
    """``readme`` with the controls tables (:func:`knee_tf.controls.markdown_tables.controls_markdown`) in place of the
    block from the first :data:`TABLE_HEAD` line to the last :data:`TABLE_CAPTION` line, and the counts
    quoted beside them: the number of comparisons, the smallest q, the store's size and job count."""
    lines = readme.split("\n")
    heads = [i for i, line in enumerate(lines) if line.startswith(TABLE_HEAD)]
    captions = [i for i, line in enumerate(lines) if line.startswith(TABLE_CAPTION)]
    if not heads or not captions or captions[-1] < heads[0]:
        raise ValueError(f"README has no controls tables (a line starting {TABLE_HEAD!r} followed by "
                         f"one starting {TABLE_CAPTION!r}) to rewrite")
    tables = "\n\n".join(t.strip() for t in controls_markdown(effects)).split("\n")
    text = "\n".join(lines[:heads[0]] + tables + lines[captions[-1] + 1:])
    n = int(effects["n_comparisons"].iloc[0])  # the false-discovery family (knee_tf.controls.effects)
    text = re.sub(r"over all \d+ comparisons", f"over all {n} comparisons", text)
    text = re.sub(r"the smallest q is \d\.\d\d", f"the smallest q is {effects['q_bh'].min():.2f}", text)
    return re.sub(r"\(\d+ MB for \d+ jobs", f"({store_mb} MB for {n_jobs} jobs", text)


def refresh_controls(top: str | Path, log=print) -> Path:
    """Rewrite ``top``/README.md's controls passages (:func:`controls_passages`) from ``top``/results
    (atomically); return README's path."""
    top = Path(top)
    readme = top / "README.md"
    effects_path = RunLayout(top).effects_table  # the repository's results/ mirrors a run folder's
    effects = pd.read_csv(effects_path)
    pub = published_grid(top)
    with tempfile.TemporaryDirectory() as tmp:
        store_mb = round(rebuild_store(pub, Path(tmp) / "store.parquet").stat().st_size / 1e6)
    n_jobs = sum(1 for d in pub.root.iterdir() if d.is_dir())
    before = readme.read_text()
    after = controls_passages(before, effects, store_mb, n_jobs)
    if after != before:
        atomic_write_text(readme, after)
    log(f"README: controls tables {'rewritten' if after != before else 'unchanged'} from {effects_path} "
        f"({int(effects['n_comparisons'].iloc[0])} comparisons; store {store_mb} MB for {n_jobs} jobs)")
    return readme

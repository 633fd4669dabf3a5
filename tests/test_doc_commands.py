"""The shell blocks of README.md and docs/*.md run as written (tests/doc_commands.py; docs/cli.md,
"Commands in the docs").

Fast: every block has a marker; every ``knee-tf`` line parses with the current parser and uses no
deprecated spelling; every ``make X`` is a Makefile target and every ``python bench/X.py`` exists;
blocks marked ``fast`` run. Slow: docs/yourdata.md's walk-through, pull to push, against Orthanc.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pacs_servers
import pandas as pd
import pydicom
import pytest
from conftest import require_tool
from doc_commands import (
    KINDS,
    ROOT,
    Block,
    blocks,
    commands,
    find,
    logical_lines,
    makefile_targets,
    variants,
)

from knee_tf.cli import build_parser, subcommands
from knee_tf.cli.options import Deprecated
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.phantom import synthesize
from knee_tf.study.config import StudyConfig
from knee_tf.yourdata.dicomweb import connect
from knee_tf.yourdata.label import LabelSession

BLOCKS = blocks()
COMMANDS = subcommands()
#: The URL the docs give for a PACS; the PACS tests put their Orthanc's in its place.
DOC_PACS_URL = "http://pacs:8042/dicom-web"


def _deprecated_options(name: str) -> set[str]:
    return {o for a in COMMANDS[name]._actions if isinstance(a, Deprecated) for o in a.option_strings}


def problems(block: Block) -> list[str]:
    """What in a block's commands no longer matches the code: a ``knee-tf`` line the parser refuses
    or that uses a deprecated spelling, an unknown ``make`` target, a missing ``python`` script."""
    parser, targets, out = build_parser(), makefile_targets(), []
    for line in logical_lines(block.text):
        for variant in variants(line):
            for words in commands(variant):
                where = f"{block.where}: {' '.join(words)}"
                if words[0] == "knee-tf":
                    if len(words) < 2 or words[1] not in COMMANDS:
                        out.append(f"{where}: no such command")
                        continue
                    old = [w for w in words[2:] if w.split("=")[0] in _deprecated_options(words[1])]
                    if old:
                        out.append(f"{where}: deprecated {', '.join(old)}")
                    try:
                        parser.parse_args(words[1:])
                    except SystemExit:
                        out.append(f"{where}: the parser refuses it")
                elif words[0] == "make":
                    out += [f"{where}: no Makefile target {t}" for t in words[1:] if "=" not in t and t not in targets]
                elif words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
                    if not (ROOT / words[1]).is_file():
                        out.append(f"{where}: no file {words[1]}")
    return out


# ----------------------------------------------------------------------------- every block


def test_the_pages_have_shell_blocks_and_each_has_a_marker():
    assert len(BLOCKS) >= 12, [b.where for b in BLOCKS]
    unmarked = [b.where for b in BLOCKS if not b.kind]
    assert not unmarked, f"no <!-- run: {'|'.join(KINDS)} --> line before the fence: {unmarked}"
    for b in BLOCKS:
        assert (b.kind == "never") == bool(b.reason), f"{b.where}: a reason goes with never, and only with it"
    never = [b for b in BLOCKS if b.kind == "never"]
    assert len(never) <= len(BLOCKS) // 2, [b.where for b in never]


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_every_command_matches_the_code(block, capsys):
    assert not problems(block)
    assert "warning:" not in capsys.readouterr().err  # deprecated spellings and changed meanings warn


def test_a_changed_command_fails(capsys):
    old = Block("README.md", 1, "bash", "fast", "",
                "knee-tf synth --out d --image-size 128\nknee-tf study --out runs/x\nmake no-such-target\n"
                "python bench/no_such_bench.py\nknee-tf frobnicate\n")
    found = problems(old)
    assert [p.split(": ")[-1] for p in found] == [
        "the parser refuses it", "deprecated --out", "no Makefile target no-such-target", "no file bench/no_such_bench.py",
        "no such command"], found


def test_documented_alternatives_and_placeholders_expand():
    assert variants("knee-tf scan export/ --out m.csv [--model published:A | runs/<run>:A:0]") == [
        "knee-tf scan export/ --out m.csv --model published:A", "knee-tf scan export/ --out m.csv --model runs/demo:A:0",
        "knee-tf scan export/ --out m.csv"]
    assert variants("knee-tf pull --url URL (--study UID | --patient ID) --out DIR [--workers 4]") == [
        "knee-tf pull --url http://pacs:8042/dicom-web --study 1.2.3.4 --out folder --workers 4",
        "knee-tf pull --url http://pacs:8042/dicom-web --patient pat001 --out folder --workers 4",
        "knee-tf pull --url http://pacs:8042/dicom-web --study 1.2.3.4 --out folder"]
    assert variants("knee-tf ingest --on-error fail|skip") == ["knee-tf ingest --on-error fail",
                                                              "knee-tf ingest --on-error skip"]
    assert commands("printf 'r\\nq\\n' | knee-tf label m.csv") == [["printf", "r\\nq\\n"], ["knee-tf", "label", "m.csv"]]
    assert logical_lines("cat > a.json <<EOF\n{\"a\": 1}\nEOF\nmake x   # note\n") == ["cat > a.json <<EOF", "make x"]


# ----------------------------------------------------------------------------- running them


def shim_env(tmp: Path) -> dict[str, str]:
    """The environment a block runs in: ``knee-tf`` on PATH is this tree's package (``python -m knee_tf``
    with this repository first on sys.path, not whatever the venv's entry point imports), no display."""
    bin_ = tmp / "bin"
    bin_.mkdir(exist_ok=True)
    shim = bin_ / "knee-tf"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH="{ROOT}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" -m knee_tf "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(PATH=f"{bin_}{os.pathsep}{env.get('PATH', '')}", TF_CPP_MIN_LOG_LEVEL="2")
    return env


def run_block(text: str, cwd: Path, env: dict[str, str], stdin: str = "", timeout: int = 600):
    """Run a block's text with bash -e in ``cwd``; returns the finished process (output captured)."""
    t0 = time.perf_counter()
    proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", text], cwd=cwd, env=env, input=stdin,
                          capture_output=True, text=True, timeout=timeout)
    print(f"{time.perf_counter() - t0:.1f} s: {text.splitlines()[0]}")  # shown when a test fails
    return proc


def _ok(proc, block: Block) -> str:
    assert proc.returncode == 0, f"{block.where} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def phantom_export(tmp_path_factory):
    """Two phantom exams at matrix 64 (the study's difficulty): (folder, their manifest)."""
    folder = tmp_path_factory.mktemp("phantom2")
    df = synthesize(folder, n_exams=2, matrix=64, workers=1, progress=False,
                    difficulty=StudyConfig().synth_difficulty())
    return folder, df


def test_the_fast_blocks_run(phantom_export, tmp_path):
    """docs/cli.md's piped labelling, in a folder with what the page assumes: export/ and its
    unlabelled work/manifest.csv."""
    fast = [b for b in BLOCKS if b.kind == "fast"]
    assert [b.page for b in fast] == ["docs/cli.md"], [b.where for b in fast]
    folder, df = phantom_export
    (tmp_path / "export").symlink_to(folder)
    (tmp_path / "work").mkdir()
    df.drop(columns=["label", "split"]).to_csv(tmp_path / "work" / "manifest.csv", index=False)
    out = _ok(run_block(fast[0].text, tmp_path, shim_env(tmp_path)), fast[0])
    session = LabelSession(tmp_path / "work" / "manifest.csv")
    first = session.df.loc[session.order[:3], "label"].tolist()
    assert first == ["relevant", "irrelevant", ""], (first, out)  # r, i, s then backspace undoes the skip
    assert session.position == 2


# ----------------------------------------------------------------------------- the own-data walk-through

#: The walk-through's config is the page's, at the smoke preset's size (a minute of training), with
#: the two arms of the method only (each arm's model is pushed: about 2 s per exam on 2 cores).
SMOKE_FIELDS = ("image_size", "conv_filters", "dense_units", "epochs", "batch_size", "patience", "cam_batch_size",
                "predict_batch_size", "n_bootstrap", "precision", "controls_source")
WALKTHROUGH_ARMS = (MODEL_A, MODEL_B)
#: Phantom exams in the walk-through's PACS (the page's was run on 24).
WALKTHROUGH_EXAMS = 12


@pytest.mark.slow
def test_own_data_walkthrough_pull_scan_label_split_study_push(tmp_path):
    """docs/yourdata.md steps 1-6 and prescribe (the shipped model, then the run's) as written, in order, in one folder: 12 phantom exams in Orthanc are
    pulled, scanned, labelled by key presses on stdin (the phantom's labels standing in for a person),
    split, studied and pushed back. Changed from the page: the PACS URL (the test's Orthanc), the
    study's size (the smoke preset's fields, :data:`SMOKE_FIELDS`, two arms), its cache folder (temporary)."""
    exe = require_tool("Orthanc", why="the walk-through pulls from and pushes to a PACS")
    require_tool(pacs_servers.ORTHANC_PLUGIN, why="Orthanc's DICOMweb plugin (Debian package orthanc-dicomweb)")
    steps = [find("docs/yourdata.md", s) for s in ("knee-tf pull", "knee-tf scan", "knee-tf label", "knee-tf split",
                                                  "knee-tf study", "knee-tf push", "knee-tf prescribe export/",
                                                  "knee-tf prescribe work/")]
    assert [b.kind for b in steps] == ["walkthrough"] * 8
    assert [b.where for b in BLOCKS if b.kind == "walkthrough"] == [b.where for b in steps]
    user = tmp_path / "user"
    user.mkdir()
    env = shim_env(tmp_path)
    with pacs_servers.orthanc(exe, tmp_path / "orthanc") as url:
        truth = pacs_servers.load_phantom_exams(connect(url), tmp_path / "phantom", n_exams=WALKTHROUGH_EXAMS)
        truth_label = {pydicom.dcmread(tmp_path / "phantom" / p, stop_before_pixels=True).SOPInstanceUID: lab
                       for p, lab in zip(truth["path"], truth["label"], strict=True)}

        pull, scan, label, split, study, push, shipped, prescribe = steps
        _ok(run_block(pull.text.replace(DOC_PACS_URL, url), user, env), pull)
        (scan_line,) = logical_lines(scan.text)
        _ok(run_block(variants(scan_line)[-1], user, env), scan)  # without the optional --model
        manifest = pd.read_csv(user / "work" / "manifest.csv", dtype=str, keep_default_na=False)
        assert sorted(manifest["sop_uid"]) == sorted(truth_label), "the scan did not take every pulled slice"

        session = LabelSession(user / "work" / "manifest.csv")
        keys = ["r" if truth_label[session.df.loc[i, "sop_uid"]] == "relevant" else "i" for i in session.order]
        _ok(run_block(label.text, user, env, stdin="\n".join(keys) + "\n"), label)
        labelled = pd.read_csv(user / "work" / "manifest.csv", dtype=str, keep_default_na=False)
        assert labelled["label"].tolist() == [truth_label[u] for u in labelled["sop_uid"]]

        _ok(run_block(split.text, user, env), split)
        assert set(pd.read_csv(user / "work" / "manifest.csv")["split"]) == {"train", "val", "test"}

        smoke = StudyConfig.smoke().to_dict()
        extra = {k: smoke[k] for k in SMOKE_FIELDS} | {"cache_dir": str(tmp_path / "cache"),
                                                        "grid_arms": list(WALKTHROUGH_ARMS)}
        page_json = '"data_root": "$PWD/export"}'
        assert page_json in study.text
        text = study.text.replace(page_json, page_json[:-1] + ", " + json.dumps(extra)[1:])
        _ok(run_block(text, user, env), study)
        assert json.loads((user / "runs" / "mydata" / "config.json").read_text())["manifest"] == str(
            user / "work" / "manifest.csv")

        out = _ok(run_block(push.text.replace(DOC_PACS_URL, url), user, env), push)
        pushed = [ln for ln in out.splitlines() if "stored" in ln]
        assert len(pushed) == len(WALKTHROUGH_ARMS) * WALKTHROUGH_EXAMS, out  # one line per model and study

    for block, folder in ((shipped, "prescription-shipped"), (prescribe, "prescription")):
        # the shipped published:A on the pulled folder, then the run's Model A on the user's manifest
        _ok(run_block(block.text, user, env), block)
        ranges = pd.read_csv(user / "work" / folder / "slice_ranges.csv")
        assert ranges["exam_id"].nunique() == WALKTHROUGH_EXAMS, (folder, ranges["exam_id"].nunique())
        assert set(ranges["plane"]) == {"axial", "sagittal", "coronal"}, folder

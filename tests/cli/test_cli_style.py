"""One style of command line (docs/cli.md), checked over every subcommand of knee_tf.cli.build_parser()."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from knee_tf.cli import build_parser, main, options_table, subcommands
from knee_tf.cli.options import (
    WORKERS_MEANING,
    Deprecated,
    HelpFormatter,
    ZeroMeantOtherwise,
    workers,
)
from knee_tf.cli.study_commands import _grid_workers

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = subcommands()
#: Names for things that have one name (docs/cli.md); none of these may be a live option.
SYNONYMS = {"--out-dir", "--output", "--output-dir", "--run-dir", "--rundir", "--data-root", "--data", "--model-path",
            "--models", "--write", "--n-workers", "--jobs", "--processes", "--threads", "--cache-dir", "--settings",
            "--override", "--csv", "--manifest-path", "--dir"}
#: Subcommands that read a StudyConfig (those with --config, and synth's difficulty fields).
READS_CONFIG = {name for name, p in COMMANDS.items() if any("--config" in a.option_strings for a in p._actions)}
RST = re.compile(r"``|:(?:func|mod|class|meth|data|attr):|^\.\. ", re.M)


def _live(p: argparse.ArgumentParser):
    """Options and positionals a user sees (no help action, no deprecated alias)."""
    return [a for a in p._actions if not isinstance(a, (argparse._HelpAction, Deprecated))]


def _option(p, name: str) -> argparse.Action | None:
    return next((a for a in _live(p) if name in a.option_strings), None)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help_that_shows_its_default(name):
    p = COMMANDS[name]
    fmt = HelpFormatter(prog=p.prog)
    for a in _live(p):
        assert a.help and a.help.strip(), f"{name} {a.option_strings or a.dest}: no help text"
        if not a.option_strings:
            continue
        text = fmt._expand_help(a)
        assert "(default" in text or "required)" in text, f"{name} {a.option_strings[0]}: help shows no default: {text}"
        assert "default: None" not in text and "default: []" not in text, f"{name} {a.option_strings[0]}: {text}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_one_name_for_one_thing(name):
    p = COMMANDS[name]
    for a in _live(p):
        for opt in a.option_strings:
            assert opt not in SYNONYMS, f"{name} {opt}: this thing's name is in docs/cli.md"
        help_ = (a.help or "").lower()
        if help_.startswith("run folder"):
            assert a.option_strings in ([], ["--run"]), f"{name} {a.option_strings}: a run folder is --run"
    run, out = _option(p, "--run"), _option(p, "--out")
    if run is not None:
        assert run.dest == "run" and run.metavar == "DIR" and "run folder" in run.help
    if out is not None:
        assert not out.help.lower().startswith("run folder"), f"{name} --out: a run folder is --run"
    if (m := _option(p, "--model")) is not None:
        assert "published:A" in m.help and "RUN:ARM[:SEED]" in m.help and ".keras" in m.help
    if (m := _option(p, "--manifest")) is not None:
        assert m.metavar == "CSV"
    if (r := _option(p, "--root")) is not None:
        assert r.metavar == "DIR" and "root" in r.help


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_workers_means_the_same_everywhere(name):
    w = _option(COMMANDS[name], "--workers")
    if w is None:
        return
    assert w.metavar == "N" and ("0 = one per CPU core, 1 = in this" in w.help), f"{name} --workers: {w.help}"
    assert w.type is workers or (name in ("grid", "pull") and isinstance(w, ZeroMeantOtherwise))


def test_set_wherever_a_config_is_read():
    assert {"study", "grid", "controls", "tour"} <= READS_CONFIG
    for name in READS_CONFIG | {"synth"}:
        s = _option(COMMANDS[name], "--set")
        assert s is not None and s.dest == "settings" and isinstance(s, argparse._AppendAction), name


def test_help_shows_no_restructured_text(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert not RST.search(top), top
    assert all(name in top for name in COMMANDS)
    for name, p in COMMANDS.items():
        assert not RST.search(p.format_help()), f"knee-tf {name} --help shows reST"


def test_the_docs_table_is_the_parser():
    page = (ROOT / "docs" / "cli.md").read_text()
    assert options_table() in page, "regenerate the table of docs/cli.md from knee_tf.cli.options_table()"


@pytest.mark.parametrize("argv, dest, value, new", [
    (["study", "--out", "r1"], "run", "r1", "--run"),
    (["grid", "--out", "r2"], "run", "r2", "--run"),
    (["controls", "--out", "r3"], "run", "r3", "--run"),
    (["tour", "--out", "r4"], "run", "r4", "--run"),
    (["config", "--write", "c.md"], "out", "c.md", "--out"),
    (["push", "--url", "http://x", "--run", "r", "--models", "A"], "arms", "A", "--arms"),
])
def test_old_spellings_still_work_with_a_one_line_warning(argv, dest, value, new, capsys):
    args = build_parser().parse_args(argv)
    assert getattr(args, dest) == value
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "deprecated" in err[0] and f"use {new}" in err[0] and argv[0] in err[0]
    # the new spelling gives the same, silently
    fixed = [new if a == argv[-2] else a for a in argv]
    assert getattr(build_parser().parse_args(fixed), dest) == value
    assert capsys.readouterr().err == ""


def test_every_deprecated_alias_is_tested():
    tested = {("study", "--out"), ("grid", "--out"), ("controls", "--out"), ("tour", "--out"), ("config", "--write"),
              ("push", "--models")}
    found = {(name, a.option_strings[0]) for name, p in COMMANDS.items() for a in p._actions if isinstance(a, Deprecated)}
    assert found == tested


def test_grid_workers_new_meaning_and_warning(capsys):
    assert (_grid_workers(0), _grid_workers(1), _grid_workers(3)) == (-1, 0, 3)  # run_grid: -1 per core, 0 in-process
    assert build_parser().parse_args(["grid", "--workers", "1"]).workers == 1
    assert capsys.readouterr().err == ""
    assert build_parser().parse_args(["grid", "--workers", "0"]).workers == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--workers 1" in err[0]
    assert build_parser().parse_args(["grid"]).workers == 0 and capsys.readouterr().err == ""


def test_pull_workers_new_meaning_and_warning(capsys):
    from knee_tf.cli.yourdata_commands import PULL_WORKERS_TEXT
    from knee_tf.yourdata.dicomweb import PULL_WORKERS

    assert PULL_WORKERS_TEXT == str(PULL_WORKERS)  # the help's default is the function's
    base = ["pull", "--url", "http://x", "--since", "2000-01-01", "--out", "o"]
    assert build_parser().parse_args(base).workers is None and capsys.readouterr().err == ""
    assert build_parser().parse_args([*base, "--workers", "0"]).workers == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "meant one at a time" in err[0]


def test_negative_workers_are_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "--out", "x", "--workers", "-1"])
    assert WORKERS_MEANING in capsys.readouterr().err


def test_tour_and_controls_pass_set_to_their_config(tmp_path, monkeypatch, capsys):
    import json

    import knee_tf.study.pipeline as pipeline
    import knee_tf.teach.tour as tour

    executed = []
    monkeypatch.setattr(tour, "execute_notebook", lambda src, dst, params: executed.append(params))
    assert main(["tour", "--run", str(tmp_path / "t"), "--set", "epochs=2", "--set", "reveal_answers=true"]) == 0
    saved = json.loads((tmp_path / "t" / "config.json").read_text())
    assert (saved["epochs"], saved["reveal_answers"]) == (2, True) and executed[0]["run_dir"] == str(tmp_path / "t")
    seen = {}
    monkeypatch.setattr(pipeline, "run_study", lambda cfg, out, steps, log: seen.update(cfg=cfg, out=out) or
                        pipeline.Run(out, cfg))
    assert main(["controls", "--run", str(tmp_path / "c"), "--set", "n_bootstrap=50"]) == 0
    assert seen["cfg"].n_bootstrap == 50 and seen["cfg"].controls_source == "published" and seen["out"] == tmp_path / "c"
    assert "controls study finished" in capsys.readouterr().out

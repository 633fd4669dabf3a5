"""The knee-tf command line: the study (synth ... config) and your own data (scan ... overlays).

Also ``python -m knee_tf``. Bad input ends with one line per problem on stderr and exit code 2,
never a traceback. One style for every subcommand's options: docs/cli.md (knee_tf.cli.options).
"""

from __future__ import annotations

import argparse
import sys

from knee_tf.cli import study_commands as st
from knee_tf.cli import yourdata_commands as yd
from knee_tf.cli.options import Deprecated
from knee_tf.core.errors import InputError, StepFailed

#: Each subcommand's parser builder, in the order ``knee-tf --help`` lists them.
STUDY_COMMANDS = (st.add_synth, st.add_ingest, st.add_predict, st.add_study, st.add_grid, st.add_controls, st.add_tour,
                  st.add_html, st.add_config)
YOURDATA_COMMANDS = (yd.add_scan, yd.add_label, yd.add_split, yd.add_reslice, yd.add_pull, yd.add_push,
                     yd.add_overlays, yd.add_prescribe)
#: The top-level help (plain text: no reST markup).
DESCRIPTION = ("knee-tf: activation-map-based augmentation for knee MRI localizers. Study: synth, ingest, predict, "
               "study, grid, controls, tour, html, config. Your own data: scan, label, split, reslice, pull, push, "
               "overlays, prescribe. Options mean the same in every subcommand (docs/cli.md); "
               "`knee-tf COMMAND --help` shows each one with its default.")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="knee-tf", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (*STUDY_COMMANDS, *YOURDATA_COMMANDS):
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


def subcommands(parser: argparse.ArgumentParser | None = None) -> dict[str, argparse.ArgumentParser]:
    """Each subcommand's parser, by name, in ``--help`` order."""
    parser = parser or build_parser()
    return dict(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


def options_table() -> str:
    """docs/cli.md's table: every subcommand's positionals and options, and its deprecated spellings
    (``tests/cli/test_cli_style.py`` checks the page holds exactly this)."""
    rows = ["| command | arguments and options | deprecated spellings (one release) |", "|---|---|---|"]
    for name, p in subcommands().items():
        args, old = [], []
        for a in p._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            if isinstance(a, Deprecated):
                old.append(f"`{a.option_strings[0]}` → `{a.new}`")
            elif a.option_strings:
                args.append(f"`{a.option_strings[0]}`")
            else:
                args.append(f"`{a.metavar or a.dest.upper()}`")
        rows.append(f"| `{name}` | {' '.join(args)} | {', '.join(old) or '—'} |")
    return "\n".join(rows) + "\n"

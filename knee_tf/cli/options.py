"""The options every ``knee-tf`` subcommand shares: one name and one meaning each (docs/cli.md).

- ``--run DIR``: a run folder, read or created (study, grid, controls, tour, html, push);
- ``--out PATH``: an output file or folder that is not a run folder;
- ``--model SPEC``: published:A, a .keras file, or RUN:ARM[:SEED] (:func:`knee_tf.yourdata.models.open_model`);
- ``--manifest CSV`` (read) and ``--root DIR`` (its data root);
- ``--workers N``: N processes; 0 = all cores, 1 = in this process;
- ``--set FIELD=VALUE`` wherever a StudyConfig is read;
- ``--cache DIR``: the ingest cache (:func:`knee_tf.data.ingest.default_cache_dir`).

An old spelling stays for one release as a hidden alias (:func:`deprecated`) that prints a one-line
warning to stderr and then does what the new option does. Every option's help shows its default
(:class:`HelpFormatter`); ``tests/cli/test_cli_style.py`` checks all of this over the parser.
"""

from __future__ import annotations

import argparse
import os
import sys

from knee_tf.data.ingest import CACHE_ENV

#: The help text of ``--workers`` (what N means is the same in every subcommand).
WORKERS_MEANING = "N at once; 0 = one per CPU core, 1 = in this process"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends each option's default to its help, unless the help already says it (``default``).

    Required options get ``(required)``, flags ``(default: off)``; a default of None or an empty list
    must be described in words by the help itself (the style test checks that)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (not action.option_strings or text == argparse.SUPPRESS or "(default" in text
                or action.default is argparse.SUPPRESS):
            return text
        if action.required:
            return f"{text} (required)"
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return f"{text} (default: {'on' if action.default else 'off'})"
        if action.default is None or action.default == [] or action.default == "":
            return text
        return f"{text} (default: %(default)s)"


class Deprecated(argparse.Action):
    """A hidden old spelling of ``new``: warns in one line, then stores into ``new``'s destination."""

    def __init__(self, option_strings, dest, new: str = "", convert=None, **kw):
        self.new, self.convert = new, convert
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {parser.prog} {option_string} is deprecated and goes in the next release; use {self.new}",
              file=sys.stderr)
        value = self.convert(values) if self.convert else values
        if isinstance(getattr(namespace, self.dest, None), list) and not isinstance(value, list):
            getattr(namespace, self.dest).append(value)
        else:
            setattr(namespace, self.dest, value)


def deprecated(p: argparse.ArgumentParser, old: str, new: str, dest: str, **kw) -> None:
    """Keep ``old`` as a warned alias of ``new`` (stored into ``dest``) for one release."""
    p.add_argument(old, dest=dest, action=Deprecated, new=new, **kw)


def add_parser(sub, name: str, help: str, description: str = "") -> argparse.ArgumentParser:
    """A subcommand's parser, with :class:`HelpFormatter`."""
    return sub.add_parser(name, help=help, description=description or help[:1].upper() + help[1:] + ".",
                          formatter_class=HelpFormatter)


def add_run(p, help: str, required: bool = False, old_out: bool = False) -> None:
    """``--run DIR`` (dest ``run``); ``old_out``: ``--out`` was its name before."""
    p.add_argument("--run", default=None, required=required, metavar="DIR", help=help)
    if old_out:
        deprecated(p, "--out", "--run", "run")


def workers(text: str) -> int:
    """``--workers`` value: an integer >= 0 (argparse type)."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}") from None
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0 ({WORKERS_MEANING}), got {n}")
    return n


class ZeroMeantOtherwise(argparse.Action):
    """``--workers`` where 0 meant something else before (``old_zero``): warns in one line, for one release,
    when 0 (or the old -1) is given; stores the value (at least 0)."""

    def __init__(self, option_strings, dest, old_zero: str = "", **kw):
        self.old_zero = old_zero
        super().__init__(option_strings, dest, **kw)

    def __call__(self, parser, namespace, values, option_string=None):
        if values in (0, -1):
            print(f"warning: {parser.prog} --workers {values}: 0 now means one per CPU core (before, 0 meant "
                  f"{self.old_zero}); use --workers 1 for one at a time in this process", file=sys.stderr)
        setattr(namespace, self.dest, max(0, values))


def add_workers(p, what: str = "processes", default: int | None = 0, old_zero: str = "", default_text: str = "") -> None:
    """``--workers N`` (:data:`WORKERS_MEANING`); ``old_zero``: what 0 meant before in this command (warned)."""
    kw = dict(action=ZeroMeantOtherwise, old_zero=old_zero, type=int) if old_zero else dict(type=workers)
    p.add_argument("--workers", default=default, metavar="N", help=f"{what}: {WORKERS_MEANING}{default_text}", **kw)


def cpu_workers(n: int) -> int:
    """``--workers`` N as a count: 0 -> the number of CPU cores, else N."""
    return n or os.cpu_count() or 1


def add_set(p, what: str = "override one StudyConfig field (repeatable), e.g. --set epochs=3") -> None:
    p.add_argument("--set", dest="settings", action="append", default=[], metavar="FIELD=VALUE",
                   help=f"{what} (default: the config's values)")


def add_manifest(p, help: str = "manifest CSV to read", required: bool = True) -> None:
    p.add_argument("--manifest", required=required, default=None, metavar="CSV", help=help)


def add_root(p, help: str = "data root the manifest's paths are relative to", required: bool = True) -> None:
    p.add_argument("--root", required=required, default=None, metavar="DIR", help=help)


def add_model(p, required: bool, extra: str = "") -> None:
    p.add_argument("--model", required=required, default=None, metavar="SPEC",
                   help="published:A | published:B (the shipped models), a .keras file, or RUN:ARM[:SEED] "
                        f"(a run folder's model, e.g. runs/x:A:0){extra}")


def add_cache(p, default_text: str = "") -> None:
    where = default_text or (f"${CACHE_ENV}, else $XDG_CACHE_HOME/knee-tf, else ~/.cache/knee-tf; "
                             "never the current folder")
    p.add_argument("--cache", default=None, metavar="DIR",
                   help=f"ingest cache folder of decoded images (default: {where})")

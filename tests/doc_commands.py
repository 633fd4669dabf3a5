"""The shell blocks of README.md and docs/*.md, each with the marker that says how the suite runs it.

A block is a fenced ``bash``/``sh``/``shell``/``console`` block, or an unlabelled fence whose lines
start with ``knee-tf``, ``make`` or ``python``. The line just before its fence is an HTML comment
(docs/cli.md, "Commands in the docs"):

* ``<!-- run: fast -->``: run as written by tests/test_doc_commands.py, in a prepared temporary folder;
* ``<!-- run: slow -->`` / ``<!-- run: pacs -->``: the same in a slow test (``pacs``: against Orthanc);
* ``<!-- run: walkthrough -->``: a step of docs/yourdata.md's walk-through, run end to end by one slow test;
* ``<!-- run: synopsis -->``: a usage summary: every line parses, none runs;
* ``<!-- run: never: REASON -->``: not run (the whole study, a server that runs until stopped, ...).

Every ``knee-tf`` line of every block is parsed by :func:`knee_tf.cli.build_parser` after
:func:`variants` expands its alternatives (``[--model A | B]``, ``fail|skip``, ``(--a X | --b Y)``)
and :data:`PLACEHOLDERS`.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from markdown_pages import PAGES, ROOT

SHELL_LANGS = {"bash", "sh", "shell", "console"}
#: First words that make an unlabelled fence a shell block.
SHELL_WORDS = ("knee-tf", "make", "python")
KINDS = ("fast", "slow", "pacs", "walkthrough", "synopsis", "never")
MARKER = re.compile(r"^<!-- run: (?P<kind>[a-z]+)(?:: (?P<reason>.+?))? -->$")
_FENCE = re.compile(r"^```(?P<lang>\S*)\s*$")

#: Documented placeholders and metavars, and the value a parse test gives each (whole words only).
PLACEHOLDERS = {
    "<run>": "demo", "<folder>": "demo", "FIELD=VALUE": "epochs=1", "PATH.json": "my.json",
    "MANIFEST.csv": "work/manifest.csv", "MANIFEST": "work/manifest.csv", "ROW,COL,SLICE": "0.5,0.5,3",
    "HOST:PORT": "127.0.0.1:8786", "SCHEDULER": "127.0.0.1", "A,B,...": "A,B", "...": "",
    "DIR": "folder", "CSV": "work/manifest.csv", "SPEC": "published:A", "URL": "http://pacs:8042/dicom-web",
    "UID": "1.2.3.4", "ID": "pat001", "DATE": "2024-01-01", "PLANE": "axial", "NAME": "smoke", "FILE": "file.txt",
    "VAR": "PACS_TOKEN", "PATH": "out.txt", "INPUT": "volume.nii.gz", "RUN": "runs/demo", "N": "2", "S": "0",
}
_PLACEHOLDER = re.compile("|".join(
    (re.escape(k) if not k[0].isalpha() else rf"(?<![\w.:/-]){re.escape(k)}(?![\w.:/-])")
    for k in sorted(PLACEHOLDERS, key=len, reverse=True)))


@dataclass(frozen=True)
class Block:
    """One shell block: its page (relative to the repository), the line of its opening fence, its
    language, its marker (kind, reason) and its lines."""

    page: str
    line: int
    lang: str
    kind: str
    reason: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _is_shell(lang: str, body: list[str]) -> bool:
    if lang in SHELL_LANGS:
        return True
    return lang == "" and any(ln.split()[0] in SHELL_WORDS for ln in body if ln.strip())


def page_blocks(path: Path) -> list[Block]:
    """Every shell block of one page; a block without a valid marker has kind ``""``."""
    lines = path.read_text().splitlines()
    out, i = [], 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), len(lines))
        body = lines[i + 1:end]
        if _is_shell(m["lang"], body):
            mark = MARKER.match(lines[i - 1].strip()) if i else None
            kind = mark["kind"] if mark and mark["kind"] in KINDS else ""
            out.append(Block(path.relative_to(ROOT).as_posix(), i + 1, m["lang"], kind,
                             (mark["reason"] or "") if mark else "", "\n".join(body) + "\n"))
        i = end + 1
    return out


def blocks() -> list[Block]:
    """Every shell block of README.md and docs/*.md, in page order."""
    return [b for page in PAGES for b in page_blocks(page)]


def find(page: str, contains: str) -> Block:
    """The one block of ``page`` whose text contains ``contains`` (AssertionError otherwise)."""
    found = [b for b in blocks() if b.page == page and contains in b.text]
    assert len(found) == 1, f"{page}: {len(found)} shell blocks contain {contains!r}"
    return found[0]


# ----------------------------------------------------------------------------- command lines


_DEFINITION = re.compile(r"^\s*(?P<name>[A-Z][A-Za-z ]*): (?P<value>\[.*)$")


def logical_lines(text: str) -> list[str]:
    """A block's command lines: comments dropped, ``\\`` continuations joined, heredoc bodies skipped,
    and a synopsis's definition lines (``PACS options: [--user NAME] ...``) written out where
    ``[PACS options]`` stands."""
    defined = {m["name"]: m["value"] for ln in text.splitlines() if (m := _DEFINITION.match(ln))}
    text = "\n".join(ln for ln in text.splitlines() if not _DEFINITION.match(ln))
    for name, value in defined.items():
        text = text.replace(f"[{name}]", value)
    out, pending, heredoc = [], "", None
    for raw in text.splitlines():
        if heredoc is not None:
            if raw.strip() == heredoc:
                heredoc = None
            continue
        line = re.sub(r"(^|\s)#.*$", "", raw).rstrip()
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if m := re.search(r"<<-?\s*'?\"?(\w+)", line):
            heredoc = m.group(1)
        if line:
            out.append(line)
    return out


_GROUP = re.compile(r"([\[(])([^\[\]()]*)[\])]")


def _pick(line: str, i: int, minimal: bool) -> str:
    """One variant of a line: alternative ``i`` (modulo their count) of every group and ``a|b`` word,
    optional ``[...]`` groups dropped when ``minimal``. ``[--opt A | B]`` is ``--opt A`` or ``--opt B``."""
    while m := _GROUP.search(line):
        alts = [a.strip() for a in m.group(2).split(" | ")]
        option = alts[0].split()[0] if len(alts[0].split()) == 2 and alts[0].startswith("--") else ""
        if option and not any(a.startswith("-") for a in alts[1:]):  # [--model A | B]: --model A, --model B
            alts = [alts[0]] + [f"{option} {a}" for a in alts[1:]]
        repl = "" if (minimal and m.group(1) == "[") else alts[i % len(alts)]
        line = line[:m.start()] + repl + line[m.end():]
    return " ".join(w.split("|")[i % len(w.split("|"))] if "|" in w and w != "|" else w for w in line.split(" "))


def variants(line: str) -> list[str]:
    """The concrete command lines a documented line stands for: each alternative once, and the line
    without its optional groups; placeholders replaced from :data:`PLACEHOLDERS`."""
    line = _PLACEHOLDER.sub(lambda m: PLACEHOLDERS[m.group(0)], line)
    n = max([len(g.split(" | ")) for g in re.findall(r"[\[(]([^\[\]()]*)[\])]", line)]
            + [len(w.split("|")) for w in line.split() if "|" in w and w != "|"] + [1])
    out = [_pick(line, i, False) for i in range(n)] + [_pick(line, 0, True)]
    return list(dict.fromkeys(" ".join(v.split()) for v in out))


def commands(line: str) -> list[list[str]]:
    """The simple commands of a concrete line (split at ``|``, ``&&``, ``;``), each as its words."""
    return [shlex.split(part) for part in re.split(r"\s(?:\||&&|;)\s", line) if part.strip()]


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([A-Za-z0-9_.-]+):", (ROOT / "Makefile").read_text(), flags=re.M))

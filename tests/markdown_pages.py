"""Reading README.md and docs/*.md in tests: tables, generated blocks, prose, headings and links.

The pages' numbers are checked against results/ by value (:func:`agrees`), never by the sentences
around them; :func:`prose` is a page without its generated blocks, which the generator's own tests cover.
"""

from __future__ import annotations

import re
from pathlib import Path

from knee_tf.controls.results_page import begin_marker, end_marker

ROOT = Path(__file__).resolve().parents[1]
#: Every page whose links must resolve: README and the docs folder.
PAGES: tuple[Path, ...] = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))

_NUMBER = re.compile(r"[+\-−]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[+-]?\d+)?")


def read(page: str) -> str:
    """The text of a page, by its path relative to the repository top."""
    return (ROOT / page).read_text()


def block(text: str, name: str) -> str:
    """The generated block ``name`` of a page's text (AssertionError when it has none)."""
    start, end = text.find(begin_marker(name)), text.find(end_marker(name))
    assert 0 <= start < end, f"no generated block {name!r}"
    return text[start + len(begin_marker(name)):end]


def prose(text: str) -> str:
    """A page's text without its generated blocks and code fences, line breaks as spaces and the
    typographic minus as '-' (so a number that line wrapping splits is read whole)."""
    text = re.sub(r"<!-- begin generated ([\w-]+):.*?<!-- end generated \1 -->", " ", text, flags=re.DOTALL)
    text = re.sub(r"^```.*?^```", " ", text, flags=re.DOTALL | re.MULTILINE)
    return " ".join(text.replace("−", "-").split())


def tables(text: str) -> list[list[dict[str, str]]]:
    """Every pipe table of ``text``: a list of rows, each a dict of header -> cell (stripped)."""
    out, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].startswith("|") and i + 1 < len(lines) and re.fullmatch(r"\|(?:\s*:?-+:?\s*\|)+", lines[i + 1].strip()):
            head = _cells(lines[i])
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("|"):
                rows.append(dict(zip(head, _cells(lines[i]), strict=True)))
                i += 1
            out.append(rows)
        else:
            i += 1
    return out


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def numbers(cell: str) -> list[str]:
    """The numbers in a table cell or a phrase, as printed ('-1.3', '91.0', '1,798', '8.27e-05')."""
    return [n.replace("−", "-") for n in _NUMBER.findall(cell)]


def agrees(quoted: str, value: float) -> bool:
    """Whether ``quoted`` (a number as a page prints it) is ``value`` rounded to the digits it shows
    (decimal places, or significant digits in exponent or .3g notation)."""
    q = quoted.replace(",", "").replace("−", "-")
    if "e" in q:
        mantissa = q.split("e")[0].lstrip("+-")
        digits = len(mantissa.replace(".", "")) - 1
        return float(f"{value:.{digits}e}") == float(q)
    decimals = len(q.split(".")[1]) if "." in q else 0
    return abs(float(q) - value) <= 0.5 * 10 ** -decimals + 1e-12


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its rendered text in lower case, punctuation removed (letters,
    digits, '_', '-' and spaces kept), spaces as hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def headings(text: str) -> set[str]:
    """The anchors of every heading of a Markdown text (outside code fences), GitHub's way: a repeated
    heading gets -1, -2, ..."""
    seen: dict[str, int] = {}
    out = set()
    for line in re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE).splitlines():
        m = re.match(r"#{1,6} (.+?)\s*#*\s*$", line)
        if m:
            s = slug(m[1])
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def links(text: str) -> list[str]:
    """Every link target of a Markdown text outside code fences and code spans: inline links and
    images ``[text](target)`` and reference definitions ``[name]: target``."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"`[^`\n]*`", "", text)
    inline = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", text)
    definition = r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+(?:\"[^\"]*\"|'[^']*'|\([^)]*\)))?\s*$"
    return inline + re.findall(definition, text, flags=re.MULTILINE)


def broken_links(page: Path) -> list[str]:
    """The relative links of ``page`` that do not resolve: a file or folder that does not exist, or an
    anchor that is not a heading of the Markdown page it points to. External links are not followed."""
    bad = []
    for target in links(page.read_text()):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target} (no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and (dest.suffix != ".md" or anchor not in headings(dest.read_text())):
            bad.append(f"{target} (no heading #{anchor} in {dest.name})")
    return bad

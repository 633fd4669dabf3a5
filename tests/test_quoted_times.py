"""Every time a user reads (README, the Makefile, the notebooks, the CLI help, the settings' docstrings, the
running and teaching pages) comes from one measured place: the goals table of docs/performance.md.

Each quoted duration ("about 11 minutes", "about a minute", "43 s", "10 min 51 s", "284 ms") is attributed to
the subject named nearest before it in its paragraph (``make study``, the smoke study, the tour, the
explorers, ``knee-tf synth``) and must be one of the durations of that subject's row of the table (for
``make study``, its first: the current measurement, not the earlier ones the row keeps), as rounded as
the quote is ("about N minutes": N is a measured time in whole minutes). A time with no
subject, or one the table does not have, fails: measure it and put it in the table first.
"""

from __future__ import annotations

import re

import pytest
from markdown_pages import ROOT, tables

from knee_tf.cli import build_parser

#: Subject -> (words that name it in a page, the start of its row in the performance table).
#: Subjects whose quotes must be the row's first (current) measurement, not an earlier one it keeps.
CURRENT_ONLY = {"study"}
SUBJECTS: dict[str, tuple[tuple[str, ...], str]] = {
    "study": (("make study", "knee-tf study --config default"), "`make study` after set-up"),
    "smoke": (("make smoke", "smoke", "one-minute run"), "`knee-tf study --config smoke`"),
    "tour": (("tour", "nbmake"), "`notebooks/00_tour` under nbmake"),
    "explorer": (("explorer", "slider", "flip search", "first image of a session"), "Grad-CAM explorer, a new image"),
    "synth": (("knee-tf synth", "generating the data", "generates the data"), "`knee-tf synth`, 513 exams"),
}
_WORDS = {"a": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "ten": 10}
_DURATION = re.compile(
    r"(?P<approx>about |under |within |in )?(?:(?P<min>\d+) min (?P<sec>\d+) s\b|(?P<num>\d+(?:\.\d+)?|"
    + "|".join(_WORDS) + r") ?(?P<unit>ms|s|min|minutes?|seconds?)\b)")


def _seconds(m: re.Match) -> float:
    if m["min"]:
        return 60 * int(m["min"]) + int(m["sec"])
    num = m["num"]
    value = float(_WORDS.get(num, num) if num in _WORDS else num)
    unit = m["unit"]
    return value / 1000 if unit == "ms" else value * 60 if unit.startswith("min") else value


def durations(text: str) -> list[tuple[re.Match, float]]:
    """Every duration quoted in ``text`` with its value in seconds."""
    out = []
    for m in _DURATION.finditer(text.replace("**", "")):
        if m["num"] in _WORDS and (not m["approx"] or not m[0].endswith(" " + m["unit"])):
            continue  # "two s" and "about as" are no quotes; "about two minutes" is
        out.append((m, _seconds(m)))
    return out


def measured() -> dict[str, list[float]]:
    """Subject -> every duration (seconds) of its row in docs/performance.md's goals table."""
    (rows, *_) = tables((ROOT / "docs" / "performance.md").read_text())
    found = {}
    for subject, (_, start) in SUBJECTS.items():
        row = [r for r in rows if r["what"].startswith(start)]
        assert len(row) == 1, f"docs/performance.md: no single row starting {start!r}"
        values = [s for _, s in durations(" ".join(row[0].values()))]
        found[subject] = values[:1] if subject in CURRENT_ONLY else values
    return found


def agrees(m: re.Match, seconds: float, values: list[float]) -> bool:
    """Whether the quote ``m`` (``seconds``) is one of ``values`` as rounded as the quote is."""
    if m["approx"] == "under ":
        return any(v <= seconds for v in values)
    if m["unit"] and m["unit"].startswith("min") and not m["min"]:
        return any(round(v / 60) == seconds / 60 for v in values)  # whole minutes
    digits = len(m["num"].split(".")[1]) if m["num"] and "." in m["num"] else 0
    scale = 1000 if m["unit"] == "ms" else 1
    return any(round(v * scale, digits) == round(seconds * scale, digits) for v in values)


def quoting_texts() -> dict[str, str]:
    """Where users read times: name -> text, split into paragraphs by blank lines."""
    texts = {p: (ROOT / p).read_text() for p in ("README.md", "Makefile", "docs/running.md", "docs/teaching.md")}
    texts |= {f"notebooks/{p.name}": p.read_text() for p in sorted((ROOT / "notebooks").glob("*.py"))}
    texts["knee_tf/study/config.py"] = (ROOT / "knee_tf" / "study" / "config.py").read_text()
    parser = build_parser()
    helps = [parser.format_help()]
    for action in parser._subparsers._group_actions:  # every subcommand's --help
        helps += [sub.format_help() for sub in action.choices.values()]
    texts["knee-tf --help"] = "\n\n".join(helps)
    return texts


def quotes() -> list[tuple[str, str, str | None, float, re.Match]]:
    """(where, the quote, its subject or None, seconds, match) for every duration of quoting_texts()."""
    out = []
    for where, text in quoting_texts().items():
        for para in re.split(r"\n\s*\n|\n- |\n#\s+\n", text):
            flat = " ".join(para.split()).replace("`", "").replace("**", "").lower()
            for m, seconds in durations(flat):
                before = flat[:m.start()]
                named = [(before.rfind(w), s) for s, (words, _) in SUBJECTS.items() for w in words if w in before]
                subject = max(named)[1] if named else None
                out.append((where, flat[max(0, m.start() - 60):m.end()], subject, seconds, m))
    return out


def test_the_duration_reader():
    (m, s), = durations("took about 16 minutes on 2 cores")
    assert s == 960 and agrees(m, s, [651 + 300]) and not agrees(m, s, [651])
    (m, s), = durations("in about a minute")
    assert s == 60 and agrees(m, s, [43]) and not agrees(m, s, [97])
    (m, s), = durations("**10 min 51 s** (651 s)")[:1]
    assert s == 651 and agrees(m, s, [651])
    assert [s for _, s in durations("0.37 s: 28 ms, 57 ms and 284 ms")] == [0.37, 0.028, 0.057, 0.284]
    assert durations("two s and 2 cores") == []


QUOTES = quotes()


def test_times_are_quoted_where_users_read():
    subjects = {subject for _, _, subject, _, _ in QUOTES}
    assert {"study", "smoke", "tour"} <= subjects, subjects  # the scan finds the quotes it is for


@pytest.mark.parametrize("where,quote,subject,seconds,m", QUOTES, ids=[f"{q[0]}:{q[1][-30:]}" for q in QUOTES])
def test_every_quoted_time_is_a_measured_one(where, quote, subject, seconds, m):
    assert subject is not None, f"{where}: '…{quote}' names no subject of docs/performance.md's table ({list(SUBJECTS)})"
    values = measured()[subject]
    assert agrees(m, seconds, values), (f"{where}: '…{quote}' ({subject}) is not one of the times docs/performance.md "
                                        f"measured for it: {values} s")

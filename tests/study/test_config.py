"""``knee-tf config`` and docs/config.md: every StudyConfig field, grouped, with its default and the
meaning written once, as the field's trailing comment in knee_tf/study/config.py."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from knee_tf.cli import main
from knee_tf.study.config import PRESETS, StudyConfig, get_config
from knee_tf.study.config_doc import DOCS_PAGE, config_listing, config_rows, field_meanings, show

ROOT = Path(__file__).resolve().parents[2]
FIELDS = [f.name for f in dataclasses.fields(StudyConfig)]


def test_every_field_has_a_group_and_a_meaning():
    meanings = field_meanings()
    assert list(meanings) == FIELDS
    empty = [name for name, (group, meaning) in meanings.items() if not group or not meaning]
    assert not empty, empty
    groups = [group for group, _ in meanings.values()]
    assert groups[0] == "the run" and "ingest (knee_tf.data.ingest)" in groups
    # the meaning is the comment on the field's own line, not a block comment above it
    assert meanings["grid_workers"][1].startswith("notebooks 02, 05, 07 without a scheduler")
    assert meanings["synth_texture"][1].startswith("strength of the tissue textures")


def _load_class(tmp_path, monkeypatch, name: str, body: str):
    """``Settings``, a frozen dataclass with ``body``, from a module file of its own (for its source)."""
    path = tmp_path / f"{name}.py"
    path.write_text(f"from dataclasses import dataclass\n\n@dataclass(frozen=True)\nclass Settings:\n{body}")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module.Settings


def test_a_field_without_a_meaning_or_a_group_is_named(tmp_path, monkeypatch):
    good = _load_class(tmp_path, monkeypatch, "good", "    # --- one ---\n    a: int = 1  # the a\n"
                                                      "    # a note above b, not its meaning\n"
                                                      "    b: tuple = (\n        1, 2)  # the b\n")
    assert field_meanings(good) == {"a": ("one", "the a"), "b": ("one", "the b")}
    no_meaning = _load_class(tmp_path, monkeypatch, "no_meaning", "    # --- one ---\n    a: int = 1  # the a\n"
                                                                  "    # a block comment is not a meaning\n"
                                                                  "    b: int = 2\n")
    with pytest.raises(ValueError, match=r"^Settings\.b: no meaning"):
        field_meanings(no_meaning)
    no_group = _load_class(tmp_path, monkeypatch, "no_group", "    a: int = 1  # the a\n")
    with pytest.raises(ValueError, match=r"^Settings\.a: no group"):
        field_meanings(no_group)


def test_rows_give_each_preset_beside_the_default(monkeypatch):
    monkeypatch.delenv("KNEE_TF_SMOKE", raising=False)
    for name in PRESETS:
        assert get_config(name) == PRESETS[name]()  # get_config takes its presets from PRESETS
        cfg = PRESETS[name]()
        rows = config_rows(name)
        assert [r.field for r in rows] == FIELDS
        assert [r.value for r in rows] == [getattr(cfg, f) for f in FIELDS]
        assert [r.default for r in rows] == [getattr(StudyConfig(), f) for f in FIELDS]
        assert {r.field for r in rows if r.differs} == {f for f in FIELDS if getattr(cfg, f) != getattr(StudyConfig(), f)}
    assert not any(r.differs for r in config_rows("default"))
    assert [r.type for r in config_rows()][FIELDS.index("severities")] == "tuple[int, ...]"
    with pytest.raises(ValueError, match=r"^unknown preset 'nope': one of default, smoke, tour, full, paper_point$"):
        config_rows("nope")


def _entries(text: str) -> dict[str, tuple[bool, str]]:
    """{field: (marked with *, its text)} of a text listing; a wide value continues on indented lines."""
    entries: dict[str, tuple[bool, str]] = {}
    last = None
    for line in text.splitlines():
        words = line.split()
        marked = words[:1] == ["*"]
        name = words[1] if marked and len(words) > 1 else (words[0] if words else "")
        if line.startswith("  ") and name in FIELDS and name not in entries:
            entries[name], last = (marked, line + " "), name
        elif line.startswith("      ") and last:  # continuation of the last field
            entries[last] = (entries[last][0], entries[last][1] + line.strip() + " ")
        else:
            last = None
    return entries


def test_printed_listing_names_every_field_with_its_default(capsys):
    assert main(["config"]) == 0
    text = capsys.readouterr().out
    entries = _entries(text)
    assert list(entries) == FIELDS
    meanings = field_meanings()
    for name, (marked, line) in entries.items():
        assert not marked and f" {show(getattr(StudyConfig(), name))} " in line, (name, line)
        assert line.rstrip().endswith(meanings[name][1]), line
    headers = [ln for ln in text.splitlines() if ln and not ln.startswith(" ")][2:]
    assert headers == list(dict.fromkeys(group for group, _ in meanings.values()))


def test_a_preset_is_listed_beside_the_default_and_differences_are_marked(capsys):
    assert main(["config", "--preset", "full"]) == 0
    entries = _entries(capsys.readouterr().out)
    full, default = StudyConfig.full(), StudyConfig()
    assert list(entries) == FIELDS
    for name, (marked, line) in entries.items():
        value, dflt = getattr(full, name), getattr(default, name)
        assert marked == (value != dflt) and f" {show(value)} " in line, line
        assert (f" ({show(dflt)}) " in line) == (value != dflt), line  # the default where it differs
    assert sum(m for m, _ in entries.values()) == sum(r.differs for r in config_rows("full")) > 0
    assert main(["config", "--preset", "full", "--format", "markdown"]) == 0
    page = capsys.readouterr().out
    assert f"| `n_seeds` | `int` | **`{full.n_seeds}`** | `{default.n_seeds}` |" in page
    assert f"| `epochs` | `int` | `{default.epochs}` | `{default.epochs}` |" in page


def test_an_unknown_preset_is_one_line_naming_the_presets():
    proc = subprocess.run([sys.executable, "-m", "knee_tf", "config", "--preset", "fast"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.splitlines() == ["error: unknown preset 'fast': one of default, smoke, tour, full, paper_point"]


def test_docs_page_is_the_generated_listing(tmp_path, capsys):
    page = config_listing(fmt="markdown")
    assert (ROOT / DOCS_PAGE).read_text() == page, f"regenerate: knee-tf config --format markdown --out {DOCS_PAGE}"
    for name in FIELDS:
        assert f"| `{name}` | " in page, name
    assert "&lt;data\\_root>" in page  # Markdown in a meaning is shown as typed
    out = tmp_path / "docs" / "config.md"
    assert main(["config", "--format", "markdown", "--out", str(out)]) == 0
    assert out.read_text() == page and capsys.readouterr().out == f"wrote {out}\n"
    assert [p.name for p in out.parent.iterdir()] == ["config.md"]  # no temporary file left beside it


def test_top_level_help_lists_config_and_loads_no_tensorflow():
    code = ("import sys\nfrom knee_tf.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('tensorflow' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[-1] == "False"
    assert any(line.split()[:1] == ["config"] for line in proc.stdout.splitlines()), proc.stdout


def test_paper_point_is_the_analysis_plans_operating_point():
    """docs/analysis_plan.md: the default data and settings with 100 whole training exams (subset_seed 0), the
    plan's eight arms, 10 seeds of the main arms and 5 of the others, cam_transfer, and (amendment 1) the
    cam_hard cohort, published apart from the full-data grid."""
    from knee_tf.controls.arms import get_arm
    from knee_tf.controls.jobs import controls_plan

    cfg = get_config("paper_point")
    differs = {f.name for f in dataclasses.fields(cfg) if getattr(cfg, f.name) != getattr(StudyConfig(), f.name)}
    assert differs == {"name", "train_exams", "n_seeds", "n_seeds_other", "grid_arms", "transfer_seed",
                       "cam_hard_weight", "grid_workers", "publish_grid_as"}
    assert (cfg.train_exams, cfg.subset_seed, cfg.cam_hard_weight, cfg.cam_hard_smooth_sigma,
            cfg.cam_hard_threshold) == (100, 0, 1.0, 8.0, 0.4)
    seeds = {}
    for job in controls_plan(cfg):
        seeds.setdefault(job.label.split(" ")[0] if job.variant else job.arm, set()).add(job.seed)
    assert {a: len(s) for a, s in seeds.items() if a in cfg.grid_arms} == {
        a: 10 if get_arm(a).main_seeds else 5 for a in cfg.grid_arms}
    assert {a for a in cfg.grid_arms if get_arm(a).main_seeds} == {"A", "B", "A_steps", "B_random", "erasing"}


@pytest.mark.parametrize("change, match", [({"cam_hard_weight": 1.5}, "cam_hard_weight must lie in"),
                                           ({"cam_hard_threshold": 1.0}, "cam_hard_threshold in"),
                                           ({"publish_grid_as": "../x"}, "a published grid's name is")])
def test_bad_cam_hard_or_grid_name_is_one_line(change, match):
    with pytest.raises(ValueError, match=match):
        StudyConfig(**change)

"""The seams: run-folder names (knee_tf.data.layout), the vocabulary and decision rule (knee_tf.core.vocab),
and one settings source (StudyConfig fields, `knee-tf study --set`)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from knee_tf.core.cam import compute_cams
from knee_tf.core.vocab import (
    CAM_METHODS,
    CLASSES,
    OPTIONAL_COLUMNS,
    PLANES,
    REQUIRED_COLUMNS,
    check_targets,
    predicted_class,
)
from knee_tf.data.layout import FIGURES, RESULTS, RunLayout
from knee_tf.study.config import StudyConfig

ROOT = Path(__file__).resolve().parent.parent


def test_layout_names_models_of_any_arm_and_every_figure_and_table(tmp_path):
    lay = RunLayout(tmp_path)
    assert lay.model("A", 0) == tmp_path / "models" / "model_a_seed0" / "model.keras"
    assert lay.model("B_random", 2).parent.name == "model_b_random_seed2"  # a new arm needs no code
    assert lay.training_log("A_steps", 1) == lay.model_dir("A_steps", 1) / "training_log.csv"
    one = [lay.model("B", 3), lay.training_log("B", 3), lay.tensorboard("B", 3), lay.grid_predictions("B", 3),
           lay.job_record("B", 3)]
    assert {p.parent for p in one} == {lay.model_dir("B", 3)} and len(set(one)) == 5  # one folder per job
    assert len({lay.model(a, s) for a in ("A", "B", "A_steps") for s in (0, 1)}) == 6
    with pytest.raises(ValueError, match="arm"):
        lay.model("A/../x", 0)
    paths = [getattr(lay, f"figure_{k}") for k in FIGURES] + [getattr(lay, k) for k in RESULTS]
    assert len(set(paths)) == len(FIGURES) + len(RESULTS)
    assert all(p.parent in (lay.figures, lay.results) for p in paths)
    with pytest.raises(AttributeError, match="no file"):
        _ = lay.figure_nonexistent
    assert not any(tmp_path.iterdir())  # naming creates nothing; create() makes the folders
    assert sorted(p.name for p in lay.create().root.iterdir()) == sorted(
        ["artifacts", "figures", "models", "notebooks", "results", "steps"])


def test_no_run_folder_file_name_outside_the_layout():
    names = [f"{stem}.png" for stem in FIGURES.values()] + list(RESULTS.values()) + [
        "ingest.json", "aug_pool_seed", "fig2_examples.npz", "model_a_seed", "model_b_seed", "config.json"]
    sources = [p for p in (ROOT / "knee_tf").rglob("*.py") if p.name != "layout.py"]
    sources += sorted((ROOT / "notebooks").glob("*.py"))
    hits = [(p.name, n) for p in sources for n in names if n in p.read_text()]
    assert not hits, hits


def test_no_class_or_plane_name_outside_the_vocabulary():
    literal = re.compile("[\"']({})[\"']".format("|".join(CLASSES + PLANES)))
    sources = [p for p in (ROOT / "knee_tf").rglob("*.py") if p.name != "vocab.py"]
    sources += sorted((ROOT / "notebooks").glob("*.py"))
    hits = [(p.name, m.group(0)) for p in sources for m in literal.finditer(p.read_text())]
    assert not hits, hits


def test_no_cam_method_name_outside_the_vocabulary():
    """config, plots, arms, explorers and notebooks take CAM method names from knee_tf.core.vocab, whose
    names are exactly the registry's (knee_tf.core.cam_methods.REGISTRY)."""
    literal = re.compile("[\"']({})[\"']".format("|".join(re.escape(m) for m in CAM_METHODS)))
    sources = [p for p in (ROOT / "knee_tf").rglob("*.py") if p.name != "vocab.py"]
    sources += sorted((ROOT / "notebooks").glob("*.py"))
    hits = [(p.name, m.group(0)) for p in sources for m in literal.finditer(p.read_text())]
    assert not hits, hits


@pytest.mark.parametrize("settings, message", [
    (dict(cam_methods=("gradcam", "scorecam")), "cam_methods: unknown CAM method 'scorecam'"),
    (dict(cohort3_method="gradcampp"), "cohort3_method: unknown CAM method 'gradcampp'"),
    (dict(cam_methods=("gradcam", "gradcam")), "cam_methods must be distinct"),
    (dict(cam_methods=()), "cam_methods must be distinct"),
    (dict(cam_methods="gradcam"), "cam_methods must be a tuple"),
])
def test_config_rejects_an_unknown_cam_method_in_one_line_naming_the_registered_ones(settings, message):
    with pytest.raises(ValueError, match=re.escape(message)) as err:
        StudyConfig.smoke(**settings)
    assert "\n" not in str(err.value)
    if "unknown" in message:
        assert str(err.value).endswith("; registered: " + ", ".join(CAM_METHODS))
    assert StudyConfig.smoke(cam_methods=CAM_METHODS, cohort3_method=CAM_METHODS[-1]).cam_methods == CAM_METHODS


#: The modules that own arm and cohort names: the vocabulary's constants and the two tables.
#: the tables of names: the vocabulary, the arms, the cohorts, and the analysis plan's test families
NAME_OWNERS = ("knee_tf/core/vocab.py", "knee_tf/controls/arms.py", "knee_tf/study/cohorts.py",
               "knee_tf/controls/families.py")
#: Sequences of arm names that are a setting's value, not a list of the table: (file, source) -> why.
CHOSEN_ARMS = {("knee_tf/study/config.py", "(MODEL_A, MODEL_B, A_STEPS, B_RANDOM)"):
               "StudyConfig.grid_arms' default: the arms `make study` trains, named as `--arms` names them",
               ("knee_tf/study/config.py", "(MODEL_A, MODEL_B, A_STEPS, B_RANDOM, ERASING, B_UNTRAINED, B_KEEP, MRI_AUG)"):
               "StudyConfig.paper_point's arms: the eight arms docs/analysis_plan.md names for the operating point",
               ("knee_tf/controls/results_page.py", "(MODEL_A, B_RANDOM)"):
               "the headline table's two references of B: Model A and the random-placement control"}


def _arm_and_cohort_names() -> tuple[list[set[str]], list[set[str]]]:
    """The registered arm names and cohort names, and for each kind the identifiers of the constants that
    hold one: ([arm names, cohort names], [arm constants, cohort constants])."""
    import knee_tf.core.vocab as vocab
    from knee_tf.controls.arms import ARMS
    from knee_tf.study import cohorts

    kinds = [set(ARMS), set(cohorts.COHORTS)]
    consts = [{k for m in (vocab, cohorts) for k, v in vars(m).items() if k.isupper() and isinstance(v, str) and v in names}
              for names in kinds]
    return kinds, consts


def _names_spelled(path: Path, kinds: list[set[str]], consts: list[set[str]]) -> list[str]:
    """``line: source`` of every tuple, list or set display in ``path`` holding two or more arm names, or two
    or more cohort names (string literals or the constants that hold them; one arm beside one cohort is a
    table key, not a list), and of every string literal that is an arm or cohort name with an underscore
    (``"B_random"``, ``"cam_b"``: identifiers, never ordinary words)."""
    import ast

    def is_name(e, names, held) -> bool:
        return ((isinstance(e, ast.Constant) and e.value in names) or (isinstance(e, ast.Name) and e.id in held)
                or (isinstance(e, ast.Attribute) and e.attr in held))

    names = set().union(*kinds)
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)) and any(
                sum(is_name(e, n, c) for e in node.elts) >= 2 for n, c in zip(kinds, consts, strict=True)):
            out.append(f"{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and node.value in names and "_" in node.value:
            out.append(f"{node.lineno}: {node.value!r}")
    return out


def test_no_list_of_arm_or_cohort_names_outside_their_tables():
    """Arms (knee_tf.controls.arms.ARMS) and cohorts (knee_tf.study.cohorts.COHORTS) are listed, grouped and
    ordered by their tables alone: no other module or notebook spells a sequence of their names. (A dict
    keyed by names, such as a builder's dispatch or a plot's colour per model, says something about each
    name and is not a list.)"""
    names, consts = _arm_and_cohort_names()
    sources = [p for p in sorted((ROOT / "knee_tf").rglob("*.py")) if str(p.relative_to(ROOT)) not in NAME_OWNERS]
    sources += sorted((ROOT / "notebooks").glob("*.py"))
    hits = [f"{p.relative_to(ROOT)}:{hit}" for p in sources for hit in _names_spelled(p, names, consts)
            if (str(p.relative_to(ROOT)), hit.split(": ", 1)[1]) not in CHOSEN_ARMS]
    assert not hits, "\n".join(hits)


def test_the_name_list_test_catches_a_list(tmp_path):
    names, consts = _arm_and_cohort_names()
    assert {"MODEL_A", "B_RANDOM"} <= consts[0] and {"NORMAL", "CAM_B"} <= consts[1]
    assert "B_share2" in names[0] and "new_site" in names[1]
    bad = tmp_path / "m.py"
    bad.write_text("CONTROLS = (A_STEPS, vocab.B_RANDOM)\nfor c in [NORMAL, 'metal']:\n    pass\n"
                   "one = {MODEL_A: 1, MODEL_B: 2}\nif arm == 'B_share2':\n    pass\nkey = (MODEL_A, NORMAL)\n")
    assert _names_spelled(bad, names, consts) == ["1: (A_STEPS, vocab.B_RANDOM)", "2: [NORMAL, 'metal']",
                                                  "5: 'B_share2'"]


def test_decision_rule_ties_go_to_irrelevant_like_argmax():
    p = np.array([0.0, 0.49, 0.5, 0.5000001, 1.0])
    np.testing.assert_array_equal(predicted_class(p), [0, 0, 0, 1, 1])
    probs = np.stack([1 - p, p], axis=1)
    np.testing.assert_array_equal(predicted_class(p), probs.argmax(1))


def test_the_one_target_check_is_used_by_cam_and_faithfulness(tiny_trained_model, toy_blob_data):
    x = toy_blob_data["test"][0][:4]
    np.testing.assert_array_equal(check_targets(None, 3), [-1, -1, -1])
    np.testing.assert_array_equal(check_targets(1, 3), [1, 1, 1])
    for bad, match in ((np.array([0.5, 1.0]), "int class indices"), (np.array([0, 2, 0, 0]), "lie in"),
                       (np.array([0, 1]), "shape")):
        with pytest.raises(ValueError, match=match):
            check_targets(bad, 4)
        with pytest.raises(ValueError, match=match):
            compute_cams(tiny_trained_model, x, layers=("pool4",), targets=bad, progress=False)
        from knee_tf.core.faithfulness import faithfulness_curves

        cams = compute_cams(tiny_trained_model, x, layers=("pool4",), progress=False)
        with pytest.raises(ValueError, match=match):
            faithfulness_curves(tiny_trained_model, x, cams, targets=bad, steps=2, progress=False)


def test_manifest_columns_documented_in_the_docs():
    page = (ROOT / "docs" / "yourdata.md").read_text()
    table = page[page.index("| column | required | meaning |"):page.index("```csv")]
    for col in REQUIRED_COLUMNS + OPTIONAL_COLUMNS[:6]:
        assert f"`{col}`" in table, col


def test_with_settings_parses_and_checks_types():
    cfg = StudyConfig.smoke().with_settings(["epochs=3", "severities=[1,3]", "aug_weight_range=[0.6, 0.9]",
                                             "name=mine", "learning_rate=1e-2"])
    assert (cfg.epochs, cfg.severities, cfg.aug_weight_range, cfg.name, cfg.learning_rate) == (
        3, (1, 3), (0.6, 0.9), "mine", 0.01)
    for bad, match in (("epochs=three", "integer"), ("epoch=3", "StudyConfig field"), ("epochs", "field=value"),
                       ("severities=3", "list")):
        with pytest.raises(ValueError, match=match):
            StudyConfig.smoke().with_settings([bad])


def test_every_notebook_knob_is_a_config_field():
    fields = set(StudyConfig.__dataclass_fields__)
    assert {"n_faithfulness", "faithfulness_steps", "n_dicom_export", "on_error", "predict_batch_size",
            "corruption_seed", "synth_matrix", "n_figure3_per_cohort"} <= fields
    for nb in sorted((ROOT / "notebooks").glob("*.py")):
        text = nb.read_text()
        params = text[text.index('tags=["parameters"]'):].split("# %%", 1)[0]
        assigned = re.findall(r"^(\w+) =", params, flags=re.M)
        assert assigned == ["config", "run_dir"], (nb.name, assigned)


@pytest.mark.parametrize("setting, line", [
    ("epochs=x", "error: --set 'epochs=x': epochs is an integer"),
    ('cam_methods=["gradcam", "scorecam"]',
     "error: cam_methods: unknown CAM method 'scorecam'; registered: " + ", ".join(CAM_METHODS)),
])
def test_cli_set_rejects_a_bad_value_in_one_line(setting, line):
    proc = subprocess.run([sys.executable, "-m", "knee_tf", "study", "--config", "smoke", "--set", setting],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [line]


# ----------------------------------------------------------------------------- the wings

#: the wings, lowest first: a module imports from its own wing and the wings before it, never after
WINGS = ("core", "data", "phantom", "study", "controls", "yourdata", "teach")


def _knee_tf_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every knee_tf import in a file, at module level or inside a function."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "knee_tf":
                found += [(node.lineno, f"knee_tf.{a.name}") for a in node.names]
            elif node.module.startswith("knee_tf."):
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            found.append((node.lineno, "relative import"))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "knee_tf"]
    return found


def _wing(module: str) -> str:
    return module.split(".")[1] if module.count(".") >= 1 else ""


def test_every_module_lives_in_a_wing():
    top = sorted(p.name for p in (ROOT / "knee_tf").iterdir() if p.suffix == ".py" or (p / "__init__.py").exists())
    assert top == sorted(["__init__.py", "__main__.py", "cli", *WINGS]), top


def test_no_wing_imports_a_wing_above_it():
    """core imports no other wing; each wing imports only from itself and the wings before it."""
    upward = []
    for wing in WINGS:
        for path in sorted((ROOT / "knee_tf" / wing).rglob("*.py")):
            for line, module in _knee_tf_imports(path):
                target = _wing(module) if module != "relative import" else "?"
                if target not in WINGS or WINGS.index(target) > WINGS.index(wing):
                    upward.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not upward, "\n".join(upward)


def test_the_wing_order_test_catches_an_upward_import(tmp_path):
    bad = tmp_path / "m.py"
    bad.write_text("def f():\n    from knee_tf.study.config import StudyConfig\n    return StudyConfig\n")
    assert [m for _, m in _knee_tf_imports(bad)] == ["knee_tf.study.config"]
    assert WINGS.index(_wing("knee_tf.study.config")) > WINGS.index("core")


def test_importing_core_loads_none_of_the_study_tooling():
    """``import knee_tf.core`` (and every core module) in a fresh interpreter loads no cluster, notebook,
    PACS or widget library: the thin helper stands alone."""
    heavy = ("dask", "distributed", "papermill", "nbformat", "highdicom", "dicomweb_client", "ipywidgets")
    core = sorted(p.stem for p in (ROOT / "knee_tf" / "core").glob("*.py") if p.stem != "__init__")
    code = ("import sys, importlib\nimport knee_tf.core\n"
            f"for m in {core!r}: importlib.import_module('knee_tf.core.' + m)\n"
            f"print(sorted(k for k in {heavy!r} if k in sys.modules))\n"
            "print(sorted(k.split('.')[1] for k in sys.modules if k.startswith('knee_tf.') and k.count('.') >= 1))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    loaded, wings = proc.stdout.strip().splitlines()[-2:]
    assert loaded == "[]", loaded
    assert set(eval(wings)) == {"core"}, wings  # no other wing came along

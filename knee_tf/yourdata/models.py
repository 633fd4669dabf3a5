"""Which model a command uses: a shipped model (``published:A``), a ``.keras`` file, or a run folder's model.

The repository ships the weights of the published grid's seed-0 Model A and Model B in
``results/models/`` (:func:`knee_tf.data.layout.published_weights`; weights only, about 2 MB each), so
that ``knee-tf predict --model published:A`` and ``knee-tf scan --model published:B`` work on a fresh
clone without training. The architecture, input size and training precision are read from the
published job's record (:meth:`knee_tf.data.layout.PublishedGrid.job_record`): the rebuilt model is the one whose
predictions were published, and a test checks them byte for byte on the normal test cohort.

Model specs (:func:`open_model`):

* ``published:A``, ``published:B`` (seed 0), or ``published:A:<seed>`` where those weights are shipped;
* a ``.keras`` file written by training (:meth:`knee_tf.data.layout.RunLayout.model`);
* ``RUN:ARM`` or ``RUN:ARM:SEED``: the model of (arm, seed) in the run folder RUN (seed: the run
  config's first seed, else 0), e.g. ``runs/20260101-mydata:A:0``;
* a run folder alone, or a model folder inside one, is refused with what to pass instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from knee_tf.core.io import atomic_path
from knee_tf.core.model import build_lenet, load_model
from knee_tf.core.precision import training_precision
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.data.layout import MODEL_FILES, RunLayout, published_grid, published_weights

#: The prefix of a shipped model's spec, and the (arm, seed) pairs the repository ships.
PUBLISHED = "published:"
SHIPPED: tuple[tuple[str, int], ...] = ((MODEL_A, 0), (MODEL_B, 0))


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def parse_published(spec: str) -> tuple[str, int]:
    """``"published:A"`` -> ("A", 0); ``"published:B:0"`` -> ("B", 0). A one-line ValueError otherwise."""
    parts = spec[len(PUBLISHED):].split(":")
    if len(parts) not in (1, 2) or not parts[0] or (len(parts) == 2 and not parts[1].isdigit()):
        raise ValueError(f"model {spec!r}: expected published:ARM or published:ARM:SEED, e.g. published:A")
    return parts[0], int(parts[1]) if len(parts) == 2 else 0


def published_record(arm: str, seed: int = 0, top: str | Path | None = None) -> dict:
    """The published grid job's record (settings, resolved precision, data digest, commit) of a shipped model."""
    path = published_grid(top or _repo_root()).job_record(arm, seed)
    if not path.is_file():
        raise ValueError(f"published:{arm}:{seed}: no published grid job {path.parent.name} "
                         f"(shipped: {', '.join(f'published:{a}' for a, _ in SHIPPED)})")
    return json.loads(path.read_text())


def build_published(record: dict):
    """An untrained LeNet with the architecture and dtype policy of a published job's record."""
    s = record["settings"]
    with training_precision(record["precision"]):
        return build_lenet(input_shape=(int(s["image_size"]), int(s["image_size"]), 1),
                           conv_filters=tuple(s["conv_filters"]), dense_units=tuple(s["dense_units"]))


def load_published(arm: str, seed: int = 0, top: str | Path | None = None):
    """The shipped model of (arm, seed): the published job's architecture with the shipped weights."""
    top = top or _repo_root()
    record = published_record(arm, seed, top)
    weights = published_weights(top, arm, seed)
    if not weights.is_file():
        example = RunLayout(Path("runs") / "RUN").model(arm, seed)
        raise ValueError(f"published:{arm}:{seed}: its weights are not shipped ({weights.name} missing from "
                         f"{weights.parent}); pass --model a .keras file of your own training (e.g. {example}), "
                         "or ship the weights with `python bench/ship_models.py RUN`")
    model = build_published(record)
    model.load_weights(weights)
    return model


def export_weights(model, arm: str, seed: int, top: str | Path | None = None) -> Path:
    """Write a trained model's weights as the shipped weights of (arm, seed), atomically; return the path.

    Only for a model that reproduces the published job (``bench/ship_models.py`` checks that first).
    The weights are copied into a model built from the published record first (:func:`build_published`),
    never trained, so the file holds the layers' variables only, not the optimizer's two moments per
    variable, which would triple it."""
    top = top or _repo_root()
    path = published_weights(top, arm, seed)
    bare = build_published(published_record(arm, seed, top))
    bare.set_weights(model.get_weights())
    with atomic_path(path, suffix=".weights.h5") as tmp:
        bare.save_weights(tmp)
    return path


def study_model(study, arm: str = MODEL_A, spec: str = ""):
    """(model, where it came from) for a notebook that explains a model (03, 04) or an explorer.

    spec ``""``: the run's (arm, first seed) model when it has been trained, else the shipped
    ``published:<arm>`` (so the notebooks open on a fresh clone without training); any other spec as
    :func:`open_model` reads it. ValueError in one line when the model's input size is not the
    study's ``image_size`` (the shipped models take the default config's images)."""
    run, size = study.run, int(study.config.image_size)
    own = run.layout.model(arm, run.seeds[0])
    if spec:
        where = spec
    elif own.is_file():
        spec, where = str(own), f"this run's Model {arm} (seed {run.seeds[0]})"
    else:
        spec = f"{PUBLISHED}{arm}"
        where = f"the shipped {spec} (this run has no trained Model {arm} yet; docs/model_card.md)"
    model = open_model(spec)
    if tuple(model.input_shape[1:3]) != (size, size):
        raise ValueError(f"{spec}: takes {model.input_shape[1]} x {model.input_shape[2]} images, but the study's "
                         f"config ({study.config.name}) makes {size} x {size}; train its own Model {arm} "
                         "(notebook 02) or use a config of that image size")
    return model, where


def _first_seed(run: Path) -> int:
    config = RunLayout(run).config
    try:
        return int(json.loads(config.read_text()).get("seed", 0)) if config.is_file() else 0
    except (ValueError, OSError):
        return 0


def run_model_path(text: str) -> Path | None:
    """The model file a ``RUN:ARM[:SEED]`` spec names, or None when ``text`` is not one (no such folder)."""
    parts = text.split(":")
    for n_tail in (2, 1):
        if len(parts) <= n_tail:
            continue
        run, tail = Path(":".join(parts[:-n_tail])), parts[-n_tail:]
        if not run.is_dir() or not tail[0] or (n_tail == 2 and not tail[1].isdigit()):
            continue
        try:
            return RunLayout(run).model(tail[0], int(tail[1]) if n_tail == 2 else _first_seed(run))
        except ValueError as e:
            raise ValueError(f"--model {text}: {e}") from None
    return None


def _folder_hint(path: Path) -> str:
    """What to pass instead of a folder: its run's RUN:ARM:SEED specs, or the model file inside it."""
    if (path / MODEL_FILES["model"]).is_file():
        return f"pass the model file {path / MODEL_FILES['model']}"
    models = sorted(path.glob(f"**/{MODEL_FILES['model']}"))
    if not models:
        return "it holds no model; pass a .keras file, RUN:ARM:SEED or published:A"
    specs = []
    for m in models[:4]:
        parsed = RunLayout.parse_model_name(m.parent.name)
        if m.parent.parent.parent == path and parsed:
            arm, seed = parsed
            specs.append(f"{path}:{arm.upper() if len(arm) == 1 else arm}:{seed}")
    return (f"pass {' or '.join(specs)}, or the model file, e.g. {models[0]}" if specs
            else f"pass the model file, e.g. {models[0]}")


def open_model(spec: str | Path, top: str | Path | None = None):
    """The Keras model a ``--model`` spec names (module docstring); a one-line ValueError saying what to pass."""
    text = str(spec)
    if text.startswith(PUBLISHED):
        return load_published(*parse_published(text), top=top)
    path = Path(text)
    if not path.exists() and (found := run_model_path(text)) is not None:
        if not found.is_file():
            raise ValueError(f"--model {text}: no model {found} in that run folder ({_folder_hint(found.parents[2])})")
        path = found
    if path.is_dir():
        raise ValueError(f"--model {text}: a folder; {_folder_hint(path)}")
    if not path.exists():
        raise ValueError(f"--model {text}: no such file (pass a .keras file, RUN:ARM:SEED, or published:A / published:B)")
    return load_model(path)


def input_size(model) -> int:
    """The square image size the model takes (its input's height)."""
    return int(model.input_shape[1])


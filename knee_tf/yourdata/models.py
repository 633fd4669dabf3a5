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
* a run folder, or a model folder inside one, is refused with the file to pass instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from knee_tf.core.io import atomic_path
from knee_tf.core.model import build_lenet, load_model
from knee_tf.core.precision import training_precision
from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.data.layout import RunLayout, published_grid, published_weights

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

    Only for a model that reproduces the published job (``bench/ship_models.py`` checks that first)."""
    path = published_weights(top or _repo_root(), arm, seed)
    with atomic_path(path, suffix=".weights.h5") as tmp:
        model.save_weights(tmp)
    return path


def open_model(spec: str | Path, top: str | Path | None = None):
    """The Keras model a ``--model`` spec names (module docstring); a one-line ValueError saying what to pass."""
    text = str(spec)
    if text.startswith(PUBLISHED):
        return load_published(*parse_published(text), top=top)
    path = Path(text)
    if path.is_dir():
        models = sorted(path.glob(f"**/{RunLayout(path).model('a', 0).name}"))
        hint = f"; for example {models[0]}" if models else ""
        raise ValueError(f"--model {text}: a folder; pass the model file inside it{hint}, or published:A")
    if not path.exists():
        raise ValueError(f"--model {text}: no such file (pass a .keras file, or published:A / published:B)")
    return load_model(path)


def input_size(model) -> int:
    """The square image size the model takes (its input's height)."""
    return int(model.input_shape[1])


"""Apply a trained model to any manifest, through the same validation, decoding and cache as training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from knee_tf.core.io import atomic_write_csv
from knee_tf.core.model import predict_proba
from knee_tf.core.vocab import CLASSES, RELEVANT, predicted_class
from knee_tf.data.ingest import ingest
from knee_tf.yourdata.models import open_model


def predict_manifest(model, manifest: str | Path, root: str | Path, out_csv: str | Path,
                     cache_dir: str | Path = "data/cache", on_error: str = "fail", workers: int | None = None,
                     batch_size: int = 256) -> pd.DataFrame:
    """Write ``out_csv`` with image_id, plane, p_relevant, predicted and (when known) label; return it.

    model: a loaded Keras model or a spec of :func:`knee_tf.yourdata.models.open_model` (``published:A``,
    a ``.keras`` file). The image size comes from the model's input, so the cache matches what the model
    was trained on.
    """
    if isinstance(model, (str, Path)):
        model = open_model(model)
    size = int(model.input_shape[1])
    data = ingest(manifest, root, cache_dir=cache_dir, image_size=size, on_error=on_error, workers=workers,
                  use="predict")
    probs = predict_proba(model, np.asarray(data.images), batch_size=batch_size)
    df = pd.DataFrame({
        "image_id": data.index["image_id"],
        "plane": data.index["plane"],
        "p_relevant": np.round(probs[:, CLASSES.index(RELEVANT)], 6),
        "predicted": np.asarray(CLASSES)[predicted_class(probs[:, CLASSES.index(RELEVANT)])],
    })
    if "label" in data.index and data.index["label"].ne("").any():
        df["label"] = data.index["label"].to_numpy()
    atomic_write_csv(out_csv, df)
    return df


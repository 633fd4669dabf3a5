"""Shared pytest fixtures.

Model/CAM fixtures (``toy_blob_data``, ``tiny_train_result``, ``tiny_trained_model``): a seeded
synthetic toy problem in which class 1 ("relevant") images contain one bright Gaussian blob at a
random position and class 0 images contain only background (noise plus a faint smooth ramp). A
smoke-sized LeNet learns it in a few seconds, and the blob mask is a known "true" explanation.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from knee_tf.core.vocab import MODEL_A, MODEL_B


def require_tool(*names: str, why: str) -> str:
    """The path of the first of ``names`` found on PATH (or as an absolute path).

    Missing: the test skips with a clear reason on a developer's machine, and *fails* under CI
    (``CI`` set, as `.ci/run` runs), where `.ci/run` installs every system package the tests need.
    """
    for name in names:
        found = name if os.path.isabs(name) and os.path.exists(name) else shutil.which(name)
        if found:
            return found
    msg = f"{' / '.join(names)} not installed ({why}); `.ci/run` installs it with apt-get"
    if os.environ.get("CI", "") not in ("", "0", "false"):
        pytest.fail(f"under CI: {msg}")
    pytest.skip(msg)


# ----------------------------------------------------------------------------- parallel runs (make test: pytest-xdist)

#: Session fixtures too expensive to compute once per worker: every test that uses one runs on one worker.
SHARED_SESSION_FIXTURES = ("first_run", "small_grid")


def pytest_itemcollected(item):
    """Under ``pytest -n N --dist loadgroup`` (make test), keep work shared by tests on one worker.

    A test that uses a :data:`SHARED_SESSION_FIXTURES` fixture joins that fixture's group, so the smoke
    study and the small grid are each computed once per run, not once per worker; every other test
    stays with its file, so module fixtures are not computed twice either. Without xdist the marks
    do nothing. The mark is set as each test is collected: pytest-xdist turns ``xdist_group`` marks
    into groups in its own ``pytest_collection_modifyitems``, which runs before a conftest's, so a
    mark added there came too late and the groups were silently ignored
    (tests/test_parallel_groups.py checks that they hold)."""
    used = [name for name in SHARED_SESSION_FIXTURES if name in getattr(item, "fixturenames", ())]
    item.add_marker(pytest.mark.xdist_group(used[0] if used else item.nodeid.split("::")[0]))


#: The longest units of work of `make test`, queued first in this order (measured with a per-test timeline in
#: a fresh clone, docs/performance.md): the smoke study's group (about 330 s on one process) and the
#: own-data walk-through's file (about 150 s). Started first, one on each process, they run beside the
#: short files instead of after them. make test passes ``--no-loadscope-reorder``: without it, pytest-xdist
#: queues units by their number of tests, whatever the collection order.
LONGEST_UNITS = ("first_run", "tests/test_doc_commands.py")


def pytest_collection_modifyitems(items):
    """Queue the tests of :data:`LONGEST_UNITS` first, in that order; every other test keeps its place."""
    rank = {name: i for i, name in enumerate(LONGEST_UNITS)}

    def unit(item) -> str:
        mark = item.get_closest_marker("xdist_group")
        return mark.args[0] if mark else item.nodeid.split("::")[0]

    items.sort(key=lambda item: rank.get(unit(item), len(rank)))


@pytest.fixture(scope="session", autouse=True)
def user_cache(tmp_path_factory):
    """The user cache folder (knee_tf.data.ingest.default_cache_dir) of every test and the processes it
    starts: a temporary folder, never the person's ~/.cache/knee-tf."""
    from knee_tf.data.ingest import CACHE_ENV

    path = tmp_path_factory.mktemp("user_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(path))
        yield path


#: Toy image side; divisible by 16 for four max-pool blocks (pool4 is 4 x 4).
TOY_SIZE = 64


def make_blob_images(n: int, size: int = TOY_SIZE, seed: int = 0):
    """Seeded toy set: images float32 (n, size, size, 1) in [0, 1], labels int32 (n,) (half are 1),
    blob masks float32 (n, size, size) in [0, 1] (the blob's Gaussian profile; zero for class 0)."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % 2).astype(np.int32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    sigma = size / 16
    margin = 3 * sigma
    centres = rng.uniform(margin, size - margin, size=(n, 2)).astype(np.float32)
    blobs = np.exp(-((yy - centres[:, :1, None]) ** 2 + (xx - centres[:, 1:, None]) ** 2)
                   / (2 * sigma**2)).astype(np.float32)
    blobs *= labels[:, None, None]
    ramp_angle = rng.uniform(0, 2 * np.pi, size=(n, 1, 1))
    ramp = 0.1 * (1 + np.cos(ramp_angle) * (xx / size - 0.5) + np.sin(ramp_angle) * (yy / size - 0.5))
    noise = rng.uniform(0, 0.1, size=(n, size, size))
    images = np.clip(ramp + noise + 0.8 * blobs, 0, 1).astype(np.float32)[..., None]
    return images, labels, blobs


@pytest.fixture(scope="session")
def toy_blob_data():
    """{"train"|"val"|"test": (images, labels, blob_masks)} from :func:`make_blob_images`."""
    return {"train": make_blob_images(512, seed=1), "val": make_blob_images(128, seed=2),
            "test": make_blob_images(64, seed=3)}


@pytest.fixture(scope="session")
def tiny_train_result(toy_blob_data, tmp_path_factory):
    """A smoke-sized LeNet trained (seeded) on the toy blob problem: a knee_tf.core.model.TrainResult."""
    from knee_tf.core.model import train_classifier
    from knee_tf.study.config import StudyConfig

    cfg = StudyConfig.smoke(image_size=TOY_SIZE, epochs=8, patience=3, learning_rate=3e-3)
    (xt, yt, _), (xv, yv, _) = toy_blob_data["train"], toy_blob_data["val"]
    return train_classifier(xt, yt, xv, yv, tmp_path_factory.mktemp("tiny_model") / "tiny.keras", seed=cfg.seed,
                            verbose=0, **cfg.training_settings())


@pytest.fixture(scope="session")
def tiny_trained_model(tiny_train_result):
    """The trained keras.Model of :func:`tiny_train_result` (input (64, 64, 1), 2 classes)."""
    return tiny_train_result.model


@pytest.fixture(scope="session")
def tiny_bf16_model(toy_blob_data, tmp_path_factory):
    """The same tiny LeNet trained in ``mixed_bfloat16`` (bfloat16 compute, float32 variables and softmax)."""
    from knee_tf.core.model import train_classifier
    from knee_tf.study.config import StudyConfig

    cfg = StudyConfig.smoke(image_size=TOY_SIZE, epochs=8, patience=3, learning_rate=3e-3,
                            precision="mixed_bfloat16")
    (xt, yt, _), (xv, yv, _) = toy_blob_data["train"], toy_blob_data["val"]
    return train_classifier(xt, yt, xv, yv, tmp_path_factory.mktemp("tiny_bf16") / "tiny_bf16.keras",
                            seed=cfg.seed, verbose=0, **cfg.training_settings()).model
# ----------------------------------------------------------------------------- one smoke study per session


@pytest.fixture(scope="session")
def smoke_config(tmp_path_factory):
    """The smoke config with its data and cache in a temporary folder (generated once per session)."""
    from knee_tf.study.config import StudyConfig

    tmp = tmp_path_factory.mktemp("smoke")
    cfg = StudyConfig.smoke(data_root=str(tmp / "data"), cache_dir=str(tmp / "cache"))
    # the reference (tests/data/smoke_cohorts.csv) was made with the data and cache under the repository
    path = tmp / "smoke.json"
    cfg.save(path)
    return path


@pytest.fixture(scope="session")
def first_run(smoke_config, tmp_path_factory):
    """One smoke study (every notebook executed), shared by the session: (run folder, runner log).

    No test changes it: tests/study/test_study.py deletes and recomputes parts of copies of it."""
    from knee_tf.study.pipeline import run_study

    out = tmp_path_factory.mktemp("run1")
    log = []
    run_study(str(smoke_config), out=out, log=log.append)
    return out, log


# ----------------------------------------------------------------------------- one small grid per session

#: The small grid's arms and seeds (tests/controls/test_grid.py, test_grid_publish.py).
GRID_ARMS, GRID_SEEDS = (MODEL_A, MODEL_B), (0, 1)


@pytest.fixture(scope="session")
def small_grid(tmp_path_factory):
    """One small grid shared by the session: the smoke config at 32 x 32 (phantom matrix 64), its data and
    ingest cache in a temporary folder, and the jobs of :data:`GRID_ARMS` x :data:`GRID_SEEDS` run
    in-process through the CLI (a fresh process, as `knee-tf grid --workers 1`; it synthesizes and
    ingests the data) into ``tmp / "in_process"``. tests/controls/test_grid.py compares a cluster run
    with it; tests/controls/test_grid_publish.py publishes from its data and from its run folder.

    Returns {"tmp", "cfg", "cache"}."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from knee_tf.data.layout import RunLayout
    from knee_tf.study.config import StudyConfig

    tmp = tmp_path_factory.mktemp("grid")
    cfg = StudyConfig.smoke(data_root=str(tmp / "data"), cache_dir=str(tmp / "cache"), image_size=32,
                            synth_matrix=64)
    cfg.save(tmp / "smoke.json")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    cli = subprocess.run([sys.executable, "-m", "knee_tf", "grid", "--config", str(tmp / "smoke.json"),
                          "--arms", ",".join(GRID_ARMS), "--seeds", str(len(GRID_SEEDS)), "--workers", "1",
                          "--run", str(tmp / "in_process")], capture_output=True, text=True, env=env, timeout=600)
    assert cli.returncode == 0, cli.stderr[-3000:]
    cache = Path(json.loads(RunLayout(tmp / "in_process").ingest_record.read_text())["cache_dir"])
    return {"tmp": tmp, "cfg": cfg, "cache": cache}


#: Where browser tests leave their screenshots (gitignored): tests/output/browser/.
OUTPUT_DIR = os.path.join(os.path.dirname(__file__), "output")


@pytest.fixture(scope="session")
def output_dir():
    """tests/output/ (gitignored): screenshots and timings a person can look at after the run."""
    from pathlib import Path

    path = Path(OUTPUT_DIR)
    path.mkdir(parents=True, exist_ok=True)
    return path

"""make test runs in two processes (pytest-xdist, ``--dist loadgroup``) and relies on tests/conftest.py's
groups: a session fixture in SHARED_SESSION_FIXTURES (the smoke study, the small grid) is computed once
per run, on one worker, not once per worker. pytest 9 with pytest-xdist 3.8 ignored the groups without a
word (xdist renames a grouped test's ``_nodeid``, which pytest 9 no longer reads), and every shared
fixture was computed twice. This runs a small suite with the repository's grouping hook and counts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

CONFTEST = f'''
import importlib.util, os, pytest
_spec = importlib.util.spec_from_file_location("repo_conftest", {str(TESTS / "conftest.py")!r})
_repo = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_repo)
pytest_itemcollected = _repo.pytest_itemcollected

@pytest.fixture(scope="session")
def first_run(tmp_path_factory):
    with open(os.environ["GROUP_LOG"], "a") as f:
        f.write(f"{{os.getpid()}}\\n")
'''


@pytest.mark.slow  # a pytest session with two worker processes
@pytest.mark.skipif(importlib.util.find_spec("xdist") is None, reason="pytest-xdist not installed (make setup installs it)")
def test_a_shared_session_fixture_is_computed_once_under_two_workers(tmp_path):
    (tmp_path / "conftest.py").write_text(CONFTEST)
    for name in "abcd":  # four files, each with a test on the shared fixture and two without
        (tmp_path / f"test_{name}.py").write_text(
            "def test_shared(first_run):\n    pass\n\n\ndef test_one():\n    pass\n\n\ndef test_two():\n    pass\n")
    log = tmp_path / "computed.txt"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "2", "--dist", "loadgroup", "-p",
                           "no:cacheprovider", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                          env={**os.environ, "GROUP_LOG": str(log)}, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "12 passed" in proc.stdout
    assert len(log.read_text().splitlines()) == 1, "the shared fixture was computed on more than one worker"

"""Teaching mode in a real browser (Debian's chromium + chromium-driver through Selenium) and the tour.

(a) every page `knee-tf html` renders from the session's smoke run loads with no broken image and
    shows its figures (the explorers as their last state);
(b) JupyterLab on loopback opens notebook 04 on the smoke run: moving the weight slider changes
    Model A's printed probability; the flip button moves it to the flip point and the label changes;
(c) the tour runs under nbmake within its time budget.

Screenshots of (a) and (b), and the tour's time, go to tests/output/ (gitignored). Without Chromium
the browser tests skip with the reason; under CI they fail (tests/conftest.py: require_tool).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
from conftest import require_tool

from knee_tf.core.vocab import MODEL_A, MODEL_B
from knee_tf.data.layout import RunLayout
from knee_tf.study.config import StudyConfig
from knee_tf.study.html import render_run
from knee_tf.study.pipeline import STEPS

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
#: The tour's promise (docs/teaching.md): at most three minutes on a 2-core laptop, data generation included.
TOUR_BUDGET_S = 180


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium driven by chromedriver (Selenium), closed at teardown."""
    chromium = require_tool("chromium", "chromium-browser", "google-chrome", why="browser tests of teaching mode")
    driver_path = require_tool("chromedriver", "/usr/lib/chromium/chromedriver", why="Selenium's Chromium driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(120)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def rendered_pages(first_run):
    out, _ = first_run
    return render_run(out, log=lambda m: None)


def _images(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.images).map(i => ({complete: i.complete, width: i.naturalWidth,"
        " cls: i.className, src: i.src.slice(0, 40)}))")


def test_every_rendered_page_loads_with_its_figures(browser, rendered_pages, first_run, output_dir):
    out, _ = first_run
    layout = RunLayout(out)
    shots = output_dir / "browser"
    shots.mkdir(exist_ok=True)
    pages = [p for p in rendered_pages if p != layout.html_index]
    assert sorted(p.stem for p in pages) == sorted(s.name for s in STEPS)
    browser.get(layout.html_index.as_uri())
    links = browser.execute_script("return Array.from(document.querySelectorAll('a')).map(a => a.href)")
    targets = [Path(link.removeprefix("file://")) for link in links]
    assert sorted(t.name for t in targets if t.suffix == ".html") == sorted(p.name for p in pages)
    assert {t.name for t in targets if t.suffix == ".md"} == {"README.md", "teaching.md"}
    assert all(t.exists() for t in targets), targets  # the links back to the project resolve
    assert browser.find_elements("css selector", "table.kt-headline td")  # the run's headline numbers
    assert not browser.find_elements("xpath", "//*[contains(text(), '**')]")  # Markdown rendered, not raw
    browser.save_screenshot(str(shots / "html_index.png"))
    for page in pages:
        browser.get(page.as_uri())
        back = browser.execute_script("return Array.from(document.querySelectorAll('nav.kt-nav a')).map(a => a.href)")
        assert len(back) == 2 and all(b.endswith("/index.html") for b in back), (page.name, back)  # top and bottom
        images = _images(browser)
        broken = [i for i in images if not i["complete"] or i["width"] == 0]
        assert images and not broken, (page.name, broken)
        nb = nbformat.read(layout.executed_notebook(page.stem), as_version=4)
        figures = sum("image/png" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))
        assert len(images) >= figures, (page.name, len(images), figures)
        browser.execute_script("document.images[0].scrollIntoView({block: 'start'})")  # its first figure
        browser.save_screenshot(str(shots / f"html_{page.stem}.png"))
    for stem in ("03_gradcam_layers", "04_augmentations"):  # the explorers' last state, as static HTML
        browser.get(layout.html_page(stem).as_uri())
        views = [i for i in _images(browser) if "kt-widget-image" in i["cls"]]
        assert len(views) == 1 and views[0]["width"] > 200, (stem, views)
        text = browser.find_element("tag name", "body").text
        assert ("deletion AUC" if stem.startswith("03") else "Model A: p(relevant)") in text
        box = browser.find_element("css selector", "img.kt-widget-image").find_element("xpath", "./..")
        browser.execute_script("arguments[0].scrollIntoView({block: 'start'})", box)
        browser.save_screenshot(str(shots / f"html_{stem}_explorer.png"))


# ----------------------------------------------------------------------------- (b) JupyterLab


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def jupyterlab(first_run, tmp_path_factory):
    """JupyterLab on 127.0.0.1 (own port and token, settings and runtime folders in a temporary
    folder) serving a copy of notebook 04 whose run_dir is the smoke run; killed at teardown."""
    out, _ = first_run
    work = tmp_path_factory.mktemp("lab")
    nb = nbformat.read(ROOT / "notebooks" / "04_augmentations.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = f'config = "default"\nrun_dir = {str(out)!r}  # the session\'s smoke run'
    nbformat.write(nb, work / "04_augmentations.ipynb")
    tracker = work / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
    tracker.parent.mkdir(parents=True)
    tracker.write_text(json.dumps({"windowingMode": "none"}))  # every cell in the page, not only visible ones
    news = work / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    news.parent.mkdir(parents=True)
    news.write_text(json.dumps({"fetchNews": "false"}))  # no "news?" pop-up over the screenshots
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(work / "config"), JUPYTER_RUNTIME_DIR=str(work / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(work / "settings"), JUPYTERLAB_WORKSPACES_DIR=str(work / "workspaces"),
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={work}", "--allow-root",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0"]
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=work, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(120):
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"JupyterLab exited: {(work / 'lab.log').read_text()[-2000:]}") from None
                time.sleep(0.5)
        else:
            raise RuntimeError("JupyterLab did not start in 60 s")
        yield url, token, work
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and the kernels it started
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


_CALL = re.compile(r"Model A: p\(relevant\) = ([0-9.]+) → (\w+)")


def _wait(condition, timeout: float, what: str, driver=None, shot=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    if driver is not None and shot is not None:
        driver.save_screenshot(str(shot))
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_jupyterlab_explorer_slider_and_flip(browser, jupyterlab, output_dir):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    url, token, work = jupyterlab
    shots = output_dir / "browser"
    shots.mkdir(exist_ok=True)
    browser.get(f"{url}/lab/tree/04_augmentations.ipynb?token={token}")
    _wait(lambda: browser.execute_script(
        "const a = window.jupyterapp; return !!(a && a.shell.currentWidget && a.shell.currentWidget.sessionContext"
        " && a.shell.currentWidget.sessionContext.session && a.shell.currentWidget.sessionContext.session.kernel)"),
        120, "the notebook and its kernel", browser, shots / "lab_04_timeout.png")
    browser.execute_script("window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def calls_text():
        found = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".widget-html") if "Model A: p(" in e.text]
        return found[0] if found else ""

    first = _wait(calls_text, 300, "the augmentation explorer", browser, shots / "lab_04_timeout.png")
    browser.execute_script("window.jupyterapp.commands.execute('notebook:move-cursor-to-bottom')")
    slider = next(e for e in browser.find_elements(By.CSS_SELECTOR, ".widget-slider")
                  if "weight w" in e.text)
    calls = next(e for e in browser.find_elements(By.CSS_SELECTOR, ".widget-html") if "Model A: p(" in e.text)
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", calls)
    browser.save_screenshot(str(shots / "lab_04_explorer.png"))
    p0, label0 = _CALL.search(first).groups()

    def set_weight(value: float):
        readout = slider.find_element(By.CSS_SELECTOR, ".widget-readout")
        readout.click()
        readout.send_keys(Keys.CONTROL, "a")
        readout.send_keys(f"{value:.3f}", Keys.ENTER)

    set_weight(1.0)
    moved = _wait(lambda: (t := calls_text()) != first and t, 60, "Model A's probability to change")
    assert _CALL.search(moved).group(1) != p0, (first, moved)
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", calls)
    browser.save_screenshot(str(shots / "lab_04_slider_moved.png"))

    set_weight(0.0)  # the original image: the original call
    _wait(lambda: (m := _CALL.search(calls_text())) and m.group(2) == _original_call(calls_text()), 60,
          "the original call at w = 0")
    button = next(e for e in browser.find_elements(By.CSS_SELECTOR, "button") if "smallest w that flips" in e.text)
    button.click()
    note = _wait(lambda: next((e.text for e in browser.find_elements(By.CSS_SELECTOR, ".widget-html")
                               if "flips at w" in e.text or "No w in" in e.text), ""), 60, "the flip search")
    assert "flips at w" in note, note
    flip = float(re.search(r"flips at w = ([0-9.]+)", note).group(1))
    flipped = _wait(lambda: (m := _CALL.search(calls_text())) and m.group(2) != _original_call(calls_text())
                    and calls_text(), 60, "the label to flip at the flip point", browser, shots / "lab_04_timeout.png")
    value = float(slider.find_element(By.CSS_SELECTOR, ".widget-readout").text)
    assert abs(value - flip) <= 1e-3 + 1e-9, (value, flip)
    browser.execute_script("arguments[0].scrollIntoView({block: 'end'})", calls)
    browser.save_screenshot(str(shots / "lab_04_flipped.png"))
    set_weight(max(0.0, value - 0.002))  # just below the flip point: the original call again
    _wait(lambda: (m := _CALL.search(calls_text())) and m.group(2) == _original_call(calls_text()), 60,
          "the original call just below the flip point")
    print(f"explorer: first {first!r}; flipped at w = {flip} -> {flipped!r}")


def _original_call(text: str) -> str:
    m = re.search(r"Model A: p\(relevant\) = [0-9.]+ → \w+ \(original image: [0-9.]+ → (\w+)\)", text)
    return m.group(1) if m else ""


# ----------------------------------------------------------------------------- (c) the tour


def test_tour_runs_under_nbmake_within_its_budget(tmp_path, output_dir):
    """nbmake on a copy of notebooks/00_tour.ipynb whose config keeps data, cache and runs in
    tmp_path, so the time includes data generation. The wall time is written to
    tests/output/tour_time.json; the 3-minute budget is asserted under CI (a dedicated machine),
    while on a shared developer machine the time is reported (other processes compete for the cores)."""
    cfg = StudyConfig.tour(data_root=str(tmp_path / "data"), cache_dir=str(tmp_path / "cache"))
    cfg.save(tmp_path / "tour.json")
    nb = nbformat.read(ROOT / "notebooks" / "00_tour.ipynb", as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = f'config = {str(tmp_path / "tour.json")!r}\nrun_dir = ""'
    nbformat.write(nb, tmp_path / "00_tour.ipynb")
    env = dict(os.environ, KNEE_TF_RUNS=str(tmp_path / "runs"))
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbmake",
                           "--nbmake-timeout=600", str(tmp_path / "00_tour.ipynb")],
                          capture_output=True, text=True, env=env, cwd=tmp_path)
    seconds = time.perf_counter() - t0
    load = os.getloadavg()
    (output_dir / "tour_time.json").write_text(json.dumps(
        {"seconds": round(seconds, 1), "budget_s": TOUR_BUDGET_S, "load_average_1_5_15": load,
         "cpus": os.cpu_count(), "ci": bool(os.environ.get("CI"))}, indent=2) + "\n")
    assert proc.returncode == 0, proc.stdout[-3000:]
    runs = list((tmp_path / "runs").glob("*-tour"))
    assert len(runs) == 1 and all(RunLayout(runs[0]).model(arm, 0).exists() for arm in (MODEL_A, MODEL_B))
    print(f"tour under nbmake: {seconds:.0f} s (load average {load[0]:.1f})")
    if os.environ.get("CI", "") not in ("", "0", "false"):
        assert seconds <= TOUR_BUDGET_S, f"the tour took {seconds:.0f} s > {TOUR_BUDGET_S} s"
    elif seconds > TOUR_BUDGET_S:
        import warnings

        warnings.warn(f"the tour took {seconds:.0f} s (> {TOUR_BUDGET_S} s) at load average {load[0]:.1f}",
                      stacklevel=1)

"""The MLflow UI shows a sweep the way the README says: one parent run, its jobs nested under it.

A real end-to-end check in a headless browser: a small sweep is run through the CLI into a
throwaway SQLite store, `mlflow server` is started on it, and the system Chromium (Debian's
`chromium` package, driven by Playwright) opens the experiment's runs page. The test expands the
sweep's parent run and checks that its four jobs appear under it, then opens the loss chart and
MLflow's compare page. The experiment's plain address lands on the runs (not MLflow 3's GenAI
overview), and the parent run's page shows the sweep's comparison table as its description. Screenshots go to a temporary folder; with HARNESS_UPDATE_SCREENSHOTS=1
they replace the committed ones in tests/ui/ (mlflow-sweep.png is the one in the README).

Needs: the `chromium` apt package and the `playwright` pip package (the dev extra). Without them
the test is skipped, except under CI (CI=true), where it fails: CI installs both.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import pytest

from tests.helpers import environment_without_mlflow, running_mlflow_server, skip_or_fail

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[1]
# Run colours follow run ids, so each run gives new bytes: keep the committed pictures unless asked.
UI_DIR = (REPO_ROOT / "tests" / "ui" if os.environ.get("HARNESS_UPDATE_SCREENSHOTS") == "1"
          else Path(os.environ.get("TMPDIR", "/tmp")) / f"harness-ui-{os.getpid()}")
SWEEP_SHOT = UI_DIR / "mlflow-sweep.png"
COMPARE_SHOT = UI_DIR / "mlflow-compare.png"
PARENT_SHOT = UI_DIR / "mlflow-parent.png"

EXPERIMENT = "pytorch-examples"
SWEEP_ARGS = ["-m", "model=cubic,legendre", "optimizer=sgd,rmsprop", "steps=100"]
PARENT_PREFIX = "sweep model=cubic,legendre optimizer=sgd,rmsprop"
CHILD_NAMES = {  # {model}-{implementation}-{optimizer}-lr{lr:g}-seed{seed}
    "cubic-module-sgd-lr1e-06-seed0",
    "cubic-module-rmsprop-lr0.001-seed0",
    "legendre-module-sgd-lr1e-06-seed0",
    "legendre-module-rmsprop-lr0.001-seed0",
}

CHROMIUM_CANDIDATES = ("chromium", "chromium-browser")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
VIEWPORT = {"width": 1600, "height": 900}
SERVER_START_TIMEOUT_S = 90
UI_TIMEOUT_MS = 30_000




def find_chromium() -> str | None:
    for name in CHROMIUM_CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    """Headless system Chromium driven by Playwright (no browser download needed)."""
    chromium = find_chromium()
    if chromium is None:
        skip_or_fail("no Chromium on PATH (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("the playwright package is not installed (pip install -e '.[dev]')")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                     headless=True)
        try:
            yield browser
        finally:
            browser.close()


# --- the store and the server ------------------------------------------------------------------

@pytest.fixture(scope="module")
def sweep_store(tmp_path_factory):
    """A SQLite store holding one CLI sweep of four jobs; returns (uri, experiment_id, runs)."""
    root = tmp_path_factory.mktemp("browser")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    env = environment_without_mlflow()
    env.update(MLFLOW_TRACKING_URI=uri, PYTHONUNBUFFERED="1")
    hydra_dirs = [f"hydra.run.dir={root}/hydra/run", f"hydra.sweep.dir={root}/hydra/multirun"]
    proc = subprocess.run([sys.executable, "-m", "src.train", *SWEEP_ARGS, *hydra_dirs],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (f"sweep exited {proc.returncode}\n{proc.stdout[-3000:]}\n"
                                  f"{proc.stderr[-3000:]}")

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment is not None, f"no experiment {EXPERIMENT!r} in {uri}"
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("harness.sweep") == "true"]
    assert len(parents) == 1, [r.info.run_name for r in runs]
    parent = parents[0]
    assert parent.info.run_name.startswith(PARENT_PREFIX), parent.info.run_name
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert {r.info.run_name for r in children} == CHILD_NAMES
    assert len(runs) == 1 + len(CHILD_NAMES), [r.info.run_name for r in runs]
    for child in children:
        assert child.info.status == "FINISHED", (child.info.run_name, child.info.status)
        assert len(client.get_metric_history(child.info.run_id, "loss")) > 1, child.info.run_name
    return uri, experiment.experiment_id, parent, sorted(children, key=lambda r: r.info.run_name)




@pytest.fixture(scope="module")
def mlflow_server(browser, sweep_store):
    """`mlflow server` on the sweep's store at a free local port; yields its base URL."""
    uri = sweep_store[0]
    with running_mlflow_server(uri, Path(uri[len("sqlite:///"):]).parent,
                               timeout_s=SERVER_START_TIMEOUT_S) as base_url:
        yield base_url


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        yield page
    finally:
        context.close()


# --- helpers for the page ----------------------------------------------------------------------

def cosmetic(what: str, action) -> None:
    """A step that only makes the screenshot nicer: a failure is a warning, not a test failure."""
    try:
        action()
    except Exception as exc:  # noqa: BLE001 - playwright raises its own Error/TimeoutError
        warnings.warn(f"screenshot cosmetics: could not {what}: {str(exc).splitlines()[0]}")


def close_assistant(page) -> None:
    """MLflow 3.17 opens an 'MLflow Assistant' side panel on first visit; it hides the table."""
    close = page.get_by_role("button", name="Close", exact=True)
    if close.count():
        close.first.click(timeout=5_000)


def run_link(page, run_id: str):
    """The run-name link of a run in the runs table (href ends with /runs/<run_id>)."""
    return page.locator(f'a[href$="/runs/{run_id}"]')


def row_index(locator) -> int:
    return int(locator.evaluate("e => e.closest('[role=row]').getAttribute('row-index')"))


def settle(page, ms: int = 1000) -> None:
    page.wait_for_timeout(ms)  # plotly transitions; only before screenshots


# --- the tests ---------------------------------------------------------------------------------

def test_sweep_parent_with_nested_children_and_loss_chart(page, mlflow_server, sweep_store):
    _, experiment_id, parent, children = sweep_store
    # `#/experiments/<id>` alone opens the GenAI overview in MLflow 3.17; the runs list is
    # `#/experiments/<id>/runs`, and workflowType=machine_learning selects the "Model training" UI.
    page.goto(f"{mlflow_server}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")

    parent_link = run_link(page, parent.info.run_id)
    parent_link.wait_for(state="visible")
    assert parent_link.inner_text().strip() == parent.info.run_name
    page.get_by_text(f"{1 + len(children)} matching runs").wait_for()
    cosmetic("close the assistant panel", lambda: close_assistant(page))

    # Collapsed: the jobs are not listed at the top level, only under their parent.
    for child in children:
        assert run_link(page, child.info.run_id).count() == 0, (
            f"{child.info.run_name} is listed before its parent run is expanded")

    parent_row = page.locator('[role=row]', has=parent_link)
    expander = (parent_row.locator('button[data-component-id*="runnamecellrenderer"]')
                .or_(parent_row.locator('[role=gridcell] button')).first)
    expander.click()

    parent_x = parent_link.bounding_box()["x"]
    parent_index = row_index(parent_link)
    child_indexes = []
    for child in children:
        link = run_link(page, child.info.run_id)
        link.wait_for(state="visible")
        assert link.inner_text().strip() == child.info.run_name
        child_indexes.append(row_index(link))
        assert link.bounding_box()["x"] > parent_x + 5, (
            f"{child.info.run_name} is not indented under the parent run")
    # The four jobs are the rows right under the parent.
    assert sorted(child_indexes) == list(range(parent_index + 1, parent_index + 1 + len(children)))

    # Chart view of the same runs, filtered to the per-step loss metric.
    page.locator("label", has=page.locator('input[value="CHART"]')).click()
    page.get_by_placeholder("Search metric charts").fill("^loss$")
    for child in children:  # the chart's legend names each job's loss curve
        page.get_by_text(f"{child.info.run_name} (loss)", exact=True).first.wait_for()
    for child in children:  # still nested in the run list beside the chart
        expect_visible(run_link(page, child.info.run_id))

    cosmetic("set the loss chart's y axis to log scale", lambda: loss_log_scale(page))
    cosmetic("enlarge the loss chart", lambda: enlarge_chart(page))
    cosmetic("widen the run list", lambda: widen_run_list(page))
    settle(page)
    UI_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SWEEP_SHOT), full_page=True)
    assert SWEEP_SHOT.stat().st_size > 10_000


def test_compare_page_shows_the_four_jobs(page, mlflow_server, sweep_store):
    _, experiment_id, _, children = sweep_store
    query = urllib.parse.urlencode({
        "runs": json.dumps([c.info.run_id for c in children]),
        "experiments": json.dumps([experiment_id]),
        "workflowType": "machine_learning",
    })
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1400})
    page.goto(f"{mlflow_server}/#/compare-runs?{query}")
    page.get_by_text(f"Comparing {len(children)} Runs from 1 Experiment").wait_for()
    for child in children:
        page.get_by_text(child.info.run_name, exact=True).first.wait_for()
    page.get_by_text("Parallel Coordinates Plot").first.wait_for()
    cosmetic("close the assistant panel", lambda: close_assistant(page))
    settle(page)
    UI_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(COMPARE_SHOT), full_page=True)
    assert COMPARE_SHOT.stat().st_size > 10_000


def test_experiment_page_lands_on_the_runs(page, mlflow_server, sweep_store):
    """The address `make ui` prints opens the runs, not MLflow 3's GenAI overview."""
    from src.report.mlflow_ui import KIND_TAG, TRAINING_KIND, landing_url

    uri, experiment_id, parent, _ = sweep_store
    import mlflow

    tags = mlflow.MlflowClient(tracking_uri=uri).get_experiment(experiment_id).tags
    assert tags[KIND_TAG] == TRAINING_KIND and "sin(x)" in tags["mlflow.note.content"]
    page.goto(landing_url(mlflow_server, experiment_id))
    run_link(page, parent.info.run_id).wait_for(state="visible")
    assert f"/experiments/{experiment_id}/runs" in page.url and "overview" not in page.url
    page.get_by_text("matching runs").first.wait_for()


def test_parent_description_shows_the_comparison_table(page, mlflow_server, sweep_store):
    _, experiment_id, parent, children = sweep_store
    page.set_viewport_size({"width": VIEWPORT["width"], "height": 1100})
    page.goto(f"{mlflow_server}/#/experiments/{experiment_id}/runs/{parent.info.run_id}"
              "?workflowType=machine_learning")
    header = page.locator("th", has_text="final_loss").first
    header.wait_for(state="visible")
    table = page.locator("table", has=header)
    for column in ("variant", "seed", "gap", "wall time (s)", "status"):
        assert table.locator("th", has_text=column).count() == 1, column
    for child in children:  # one row per job, named by its variant
        assert table.locator("td", has_text=child.data.tags["variant"]).count() == 1
    cosmetic("close the assistant panel", lambda: close_assistant(page))
    settle(page)
    UI_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(PARENT_SHOT), full_page=True)
    assert PARENT_SHOT.stat().st_size > 10_000


def expect_visible(locator) -> None:
    locator.wait_for(state="visible")


def loss_log_scale(page) -> None:
    page.locator('button[data-component-id$="chartcard.common.tsx_158"]').first.click(timeout=5_000)
    page.get_by_role("menuitem", name="Configure").click(timeout=5_000)
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("switch").nth(1).click(timeout=5_000)  # X log, Y log, ignore outliers
    dialog.get_by_role("button", name="Save changes").click(timeout=5_000)
    dialog.wait_for(state="hidden", timeout=5_000)


def enlarge_chart(page) -> None:
    handle = page.get_by_test_id("draggable-card-resize-handle").first
    box = handle.bounding_box(timeout=5_000)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(VIEWPORT["width"] - 100, VIEWPORT["height"] - 40, steps=15)
    page.mouse.up()


def widen_run_list(page) -> None:
    panel = page.locator(".react-resizable").first
    box = panel.bounding_box(timeout=5_000)
    y = box["y"] + 200
    page.mouse.move(box["x"] + box["width"] - 1, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] + 150, y, steps=10)
    page.mouse.up()

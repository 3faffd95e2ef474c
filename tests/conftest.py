"""Shared helpers for the CLI tests: a throwaway MLflow store and the training CLI as a subprocess.

Every test that runs `python -m src.train` gets its own SQLite store under pytest's tmp_path
(never the repository's mlruns/): MLFLOW_TRACKING_URI points at it in the child's environment,
Hydra's output folders are sent there too, and the child runs from an unrelated working
directory, which proves the CLI does not depend on being started from the repository root.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pytest

from tests.helpers import environment_without_mlflow

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 300
SWEEP_TAG = "harness.sweep"  # the tag a sweep's parent run carries (src/tracking/sweep.py)


@dataclass
class CliResult:
    args: list
    returncode: int
    stdout: str
    stderr: str

    def describe(self) -> str:
        return (f"`python -m src.train {' '.join(self.args)}` exited {self.returncode}\n"
                f"--- stdout (tail) ---\n{self.stdout[-1500:]}\n"
                f"--- stderr (tail) ---\n{self.stderr[-3000:]}")

    @property
    def stderr_lines(self) -> list:
        return [line for line in self.stderr.splitlines() if line.strip()]


class Store:
    """A fresh SQLite tracking store in a temporary folder, and ways to run the CLI against it."""

    _calls = itertools.count()

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "mlflow.db"
        self.uri = f"sqlite:///{self.db}"
        self.cwd = self.root / "elsewhere"  # an unrelated working directory for the CLI
        self.cwd.mkdir(exist_ok=True)
        self._client = None

    # --- the CLI --------------------------------------------------------------------------------
    def env(self, tracking_uri: Optional[str] = "default", **extra) -> dict:
        """The child's environment: this store as MLFLOW_TRACKING_URI, unbuffered stdout."""
        env = environment_without_mlflow()
        if tracking_uri == "default":
            tracking_uri = self.uri
        if tracking_uri is not None:
            env["MLFLOW_TRACKING_URI"] = tracking_uri
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def argv(self, args: Sequence[str]) -> list:
        """The command line, with Hydra's output folders moved into this store's folder."""
        n = next(self._calls)
        hydra_dirs = [f"hydra.run.dir={self.root}/hydra/{n}",
                      f"hydra.sweep.dir={self.root}/hydra/{n}-multirun"]
        return [sys.executable, "-m", "src.train", *args, *hydra_dirs]

    def popen(self, args: Sequence[str], env: Optional[dict] = None, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(args), cwd=self.cwd, env=env or self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)

    def run_cli(self, *args: str, env: Optional[dict] = None,
                timeout: float = CLI_TIMEOUT_S) -> CliResult:
        proc = subprocess.run(self.argv(args), cwd=self.cwd, env=env or self.env(),
                              capture_output=True, text=True, timeout=timeout)
        return CliResult(list(args), proc.returncode, proc.stdout, proc.stderr)

    # --- what the store holds -------------------------------------------------------------------
    def client(self):
        if self._client is None:
            self._client = mlflow_client(self.uri)
        return self._client

    def runs(self) -> list:
        """Every run in every experiment (active or deleted); [] if the database was never made."""
        return all_runs(self.uri)

    def job_runs(self) -> list:
        """The runs of training jobs: a sweep's parent run is left out."""
        return [r for r in self.runs() if r.data.tags.get(SWEEP_TAG) != "true"]


def mlflow_client(uri: str):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=uri)


def all_runs(uri: str) -> list:
    from mlflow.entities import ViewType

    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).exists():
        return []
    client = mlflow_client(uri)
    ids = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    if not ids:
        return []
    return client.search_runs(ids, run_view_type=ViewType.ALL, max_results=50000)


def loss_history(client, run_id: str, key: str = "loss") -> list:
    """The metric's history as (step, value) pairs, by step."""
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def run_many(jobs: Sequence[tuple], max_parallel: int = 4,
             timeout: float = CLI_TIMEOUT_S) -> list:
    """Run several CLI commands at once: jobs are (store, args); results in the same order."""
    with ThreadPoolExecutor(max_workers=max_parallel) as pool:
        futures = [pool.submit(store.run_cli, *args, timeout=timeout) for store, args in jobs]
        return [f.result() for f in futures]


@pytest.fixture
def store(tmp_path) -> Store:
    """A fresh, empty tracking store for one test."""
    return Store(tmp_path / "store")


@pytest.fixture(scope="session")
def make_store(tmp_path_factory):
    """Fresh stores for module-scoped fixtures: make_store("name")."""
    def make(name: str) -> Store:
        return Store(tmp_path_factory.mktemp(name))
    return make


# --- the repository's mlruns/ is the user's: no test writes there ----------------------------------
USER_STORE = REPO_ROOT / "mlruns"


def _user_store_entries() -> set:
    return {str(p.relative_to(USER_STORE)) for p in USER_STORE.rglob("*")} \
        if USER_STORE.exists() else set()


def pytest_sessionstart(session):
    session.config.user_store_before = _user_store_entries()


def pytest_sessionfinish(session, exitstatus):
    before = getattr(session.config, "user_store_before", None)
    if before is None or hasattr(session.config, "workerinput"):
        return
    written = sorted(_user_store_entries() - before)
    if written:
        print(f"\nerror: the tests wrote into the repository's mlruns/ (the user's store): "
              f"{', '.join(written[:5])}", file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED

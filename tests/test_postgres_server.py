"""A parallel sweep through a real MLflow tracking server backed by PostgreSQL.

The module fixture starts a throwaway PostgreSQL cluster in a temporary folder (initdb, pg_ctl;
as the `postgres` user when the tests run as root, since initdb refuses root) and an
`mlflow server` on it with proxied artifacts. A joblib sweep then tracks through the server, and
every row is counted back twice: through the server (MlflowClient) and in PostgreSQL itself.

Without the PostgreSQL server binaries the module is skipped, except on CI (CI=true), which
installs them: there the absence is a failure.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.helpers import (
    free_port,
    skip_or_fail,
    stop_process_group,
    wait_until_healthy,
)

# PostgreSQL drivers (module, SQLAlchemy scheme), named explicitly: with SQLAlchemy >= 2.1 a bare
# postgresql:// means psycopg 3, which the `postgres` extra installs (see
# test_documented_postgresql_uri_has_its_driver). The first one installed is used.
DRIVERS = (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))


def installed_driver():
    """(DB-API module, SQLAlchemy scheme) of the first PostgreSQL driver installed, or None."""
    import importlib

    for module, scheme in DRIVERS:
        try:
            return importlib.import_module(module), scheme
        except ImportError:
            continue
    return None
PG_TOOLS = ("initdb", "pg_ctl", "pg_isready", "createdb")
SERVER_START_TIMEOUT_S = 120
CLI_TIMEOUT_S = 600
STEPS = 500
SEEDS = range(4)
ARTIFACTS = {"config.yaml", "overrides.yaml", "loss_curve.png", "fit.png"}
SWEEP_ARGS = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "experiment=autograd",
              f"seed=range({len(SEEDS)})", f"steps={STEPS}"]





def pg_bin_dir() -> Path | None:
    """A folder holding every PostgreSQL tool we need: $PG_BIN, the PATH's, or Debian's newest."""
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    for tool in PG_TOOLS:
        found = shutil.which(tool)
        if found:
            candidates.append(Path(found).resolve().parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=lambda p: int(p.split("/")[-2])
                                           if p.split("/")[-2].isdigit() else 0, reverse=True)]
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in PG_TOOLS):
            return folder
    return None


def run_checked(cmd: list, what: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}): {' '.join(map(str, cmd))}\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


class Postgres:
    """A throwaway cluster: trust auth, listening on 127.0.0.1:<port> and a private socket."""

    def __init__(self, bindir: Path, dbapi):
        self.bindir, self.dbapi = bindir, dbapi
        self.as_postgres: list = []
        owner = None
        if os.geteuid() == 0:  # initdb refuses to run as root
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                skip_or_fail("running as root and there is no `postgres` user to run initdb as")
            if not shutil.which("runuser"):
                skip_or_fail("running as root and `runuser` is missing")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        # Not under pytest's tmp folder: that one is private to root (mode 0700).
        self.root = Path(tempfile.mkdtemp(prefix="pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.started = False

    def tool(self, name: str, *args) -> list:
        return [*self.as_postgres, str(self.bindir / name), *map(str, args)]

    def start(self) -> None:
        run_checked(self.tool("initdb", "-D", self.data, "--auth=trust", "-U", "postgres",
                              "-E", "UTF8", "--locale=C", "--no-sync"), "initdb")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   f"-c fsync=off")
        with open(self.root / "pg_ctl.out", "w") as out:  # the postmaster must not hold a pipe
            code = subprocess.call(self.tool("pg_ctl", "-D", self.data, "-l", self.log, "-w",
                                             "-t", "60", "-o", options, "start"),
                                   stdout=out, stderr=subprocess.STDOUT, timeout=90)
        self.started = True
        if code != 0:
            pytest.fail(f"pg_ctl start failed ({code}):\n{self.tail()}")
        deadline = time.monotonic() + 60
        while subprocess.call(self.tool("pg_isready", "-h", "127.0.0.1", "-p", self.port),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL not ready within 60 s:\n{self.tail()}")
            time.sleep(0.3)
        run_checked(self.tool("createdb", "-h", "127.0.0.1", "-p", self.port, "-U", "postgres",
                              "mlflow"), "createdb")

    def tail(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in (self.root / "pg_ctl.out", self.log)
                         if p.exists())

    def stop(self) -> None:
        if self.started:
            subprocess.call(self.tool("pg_ctl", "-D", self.data, "-m", "immediate", "stop"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self):
        return self.dbapi.connect(host="127.0.0.1", port=self.port, user="postgres",
                                dbname="mlflow")



@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(tracking URI, Postgres, artifacts folder) of a running mlflow server on PostgreSQL."""
    bindir = pg_bin_dir()
    if bindir is None:
        skip_or_fail(f"the PostgreSQL server binaries ({', '.join(PG_TOOLS)}) are not installed")
    driver = installed_driver()
    if driver is None:
        skip_or_fail("no PostgreSQL driver (psycopg2 or psycopg) is installed "
                    "(pip install -e '.[postgres]')")
    mlflow_exe = Path(sys.executable).parent / "mlflow"
    assert mlflow_exe.exists(), f"no mlflow executable beside {sys.executable}"

    tmp = tmp_path_factory.mktemp("postgres_server")
    pg = Postgres(bindir, driver[0])
    proc = None
    log = None
    try:
        pg.start()
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        artifacts = tmp / "artifacts"
        env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"  # halves the start-up
        log = open(tmp / "server.log", "w")
        proc = subprocess.Popen(
            [str(mlflow_exe), "server",
             "--backend-store-uri", f"{driver[1]}://postgres@127.0.0.1:{pg.port}/mlflow",
             "--artifacts-destination", str(artifacts),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=tmp, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        wait_until_healthy(proc, url, tmp / "server.log", SERVER_START_TIMEOUT_S)
        yield url, pg, artifacts, tmp
    finally:
        if proc is not None:
            stop_process_group(proc)
        if log is not None:
            log.close()
        pg.stop()


@pytest.fixture(scope="module")
def sweep(server):
    url, pg, artifacts, tmp = server
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MLFLOW_") and k != "HARNESS_PARENT_RUN"}
    env.update(MLFLOW_TRACKING_URI=url, PYTHONUNBUFFERED="1")
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    argv = [sys.executable, "-m", "src.train", "-m", f"hydra.run.dir={tmp}/hydra_run",
            f"hydra.sweep.dir={tmp}/hydra_sweep", *SWEEP_ARGS[1:]]
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=CLI_TIMEOUT_S)
    assert result.returncode == 0, (f"sweep exited {result.returncode}\n{result.stdout[-2000:]}\n"
                                    f"{result.stderr[-4000:]}")
    return result


def test_documented_postgresql_uri_has_its_driver():
    """README and pyproject say `mlflow server --backend-store-uri postgresql://...` after
    `pip install -e '.[postgres]'`: the driver SQLAlchemy picks for a bare postgresql:// must
    then be importable."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    dialect = make_url("postgresql://user@localhost/mlflow").get_dialect()
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        pytest.fail(f"SQLAlchemy {sqlalchemy.__version__} maps postgresql:// to the "
                    f"{dialect.driver!r} driver, which is not installed ({exc}); the `postgres` "
                    f"extra must install it.")


@pytest.mark.slow
def test_parallel_sweep_through_postgres_backed_server(server, sweep):
    from mlflow import MlflowClient

    url, pg, artifacts, _ = server
    # --- through the server
    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("pytorch-examples")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("harness.sweep") == "true"]
    assert len(parents) == 1 and len(runs) == 1 + len(SEEDS), (
        f"{len(parents)} parents, {len(runs)} runs")
    parent = parents[0]
    assert parent.info.status == "FINISHED", parent.info.status
    assert parent.data.metrics.get("n_jobs") == len(SEEDS)
    assert parent.data.metrics.get("n_finished") == len(SEEDS)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(int(c.data.params["seed"]) for c in children) == list(SEEDS)
    for child in children:
        assert child.info.status == "FINISHED", child.info.status
        history = client.get_metric_history(child.info.run_id, "loss")
        assert sorted(m.step for m in history) == list(range(STEPS)), (
            f"{child.info.run_name}: {len(history)} loss values")
        listed = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert ARTIFACTS <= listed, f"{child.info.run_name}: artifacts {sorted(listed)}"
    # artifacts went through the server into its destination
    assert len(list(artifacts.rglob("loss_curve.png"))) == len(SEEDS)

    # --- in PostgreSQL itself
    conn = pg.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM metrics WHERE key = 'loss'")
            assert cur.fetchone()[0] == STEPS * len(SEEDS)
            cur.execute("SELECT run_uuid, count(*), count(DISTINCT step), min(step), max(step) "
                        "FROM metrics WHERE key = 'loss' GROUP BY run_uuid")
            per_run = sorted(cur.fetchall())
            assert per_run == sorted((c.info.run_id, STEPS, STEPS, 0, STEPS - 1)
                                     for c in children), per_run
            cur.execute("SELECT run_uuid, status FROM runs")
            rows = dict(cur.fetchall())
    finally:
        conn.close()
    assert rows == {r.info.run_id: "FINISHED" for r in runs}, rows


@pytest.mark.slow
def test_fast_path_is_taken_for_postgresql(server):
    """The recorder's bulk insert of loss histories, straight into PostgreSQL (a fresh database)."""
    from tests.test_fast_path import assert_fast_path_taken

    _, pg, _, _ = server
    run_checked(pg.tool("createdb", "-h", "127.0.0.1", "-p", pg.port, "-U", "postgres",
                        "fastpath"), "createdb")
    assert_fast_path_taken(f"{installed_driver()[1]}://postgres@127.0.0.1:{pg.port}/fastpath")

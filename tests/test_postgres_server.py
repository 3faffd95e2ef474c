"""A parallel sweep through a real MLflow tracking server backed by PostgreSQL.

The module fixture starts a throwaway PostgreSQL cluster in a temporary folder (initdb, pg_ctl;
as the `postgres` user when the tests run as root, since initdb refuses root) and an
`mlflow server` on it with proxied artifacts. A joblib sweep then tracks through the server, and
every row is counted back twice: through the server (MlflowClient) and in PostgreSQL itself.

Without the PostgreSQL server binaries the module is skipped, except on CI (CI=true), which
installs them: there the absence is a failure.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import (
    environment_without_mlflow,
    installed_driver,
    run_checked,
    running_mlflow_server,
    running_postgres,
)

CLI_TIMEOUT_S = 600
STEPS = 500
SEEDS = range(4)
ARTIFACTS = {"config.yaml", "overrides.yaml", "loss_curve.png", "fit.png"}
SWEEP_ARGS = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "experiment=autograd",
              f"seed=range({len(SEEDS)})", f"steps={STEPS}"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """(tracking URI, Postgres, artifacts folder) of a running mlflow server on PostgreSQL."""
    tmp = tmp_path_factory.mktemp("postgres_server")
    artifacts = tmp / "artifacts"
    with running_postgres() as (pg, scheme), \
            running_mlflow_server(pg.uri(scheme), tmp, "--artifacts-destination",
                                  str(artifacts)) as url:
        yield url, pg, artifacts, tmp


@pytest.fixture(scope="module")
def sweep(server):
    url, pg, artifacts, tmp = server
    env = environment_without_mlflow()
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
    run_checked(pg.tool("createdb", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                        "fastpath"), "createdb")
    assert_fast_path_taken(f"{installed_driver()[1]}://postgres@127.0.0.1:{pg.port}/fastpath")

"""`python -m src.reproduce`: re-run from the logged config, compare curves bit for bit."""

import os
import sqlite3
import subprocess
import sys

import mlflow
import pytest

pytestmark = pytest.mark.slow


def cli(module, *args, env, cwd):
    return subprocess.run([sys.executable, "-m", module, *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def logged_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("reproduce")
    db = tmp / "mlflow.db"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{db}"}
    done = cli("src.train", "experiment=autograd", "seed=3", "steps=300", "lr=2e-6",
               f"hydra.run.dir={tmp}/hydra", env=env, cwd=tmp)
    assert done.returncode == 0, done.stderr
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs([client.get_experiment_by_name("pytorch-examples").experiment_id])
    return env, tmp, db, client, run.info.run_id


def test_identical_reproduction_is_logged_and_tagged(logged_run):
    env, tmp, _, client, run_id = logged_run
    done = cli("src.reproduce", run_id, env=env, cwd=tmp)
    assert done.returncode == 0, done.stderr
    assert f"identical: 300 losses of run {run_id}" in done.stdout
    exp = client.get_experiment_by_name("pytorch-examples").experiment_id
    (copy,) = client.search_runs([exp], f"tags.reproduces = '{run_id}'")
    # the logged config, not today's defaults: lr, seed and steps come back as logged
    assert copy.data.params["lr"] == "2e-06" and copy.data.params["seed"] == "3"
    assert copy.data.params["steps"] == "300"
    history = [m.value for m in client.get_metric_history(copy.info.run_id, "loss")]
    original = [m.value for m in client.get_metric_history(run_id, "loss")]
    assert history == original


def test_an_altered_curve_is_reported_at_its_step(logged_run):
    env, tmp, db, _, run_id = logged_run
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE metrics SET value = value * 1.001 "
                     "WHERE run_uuid = ? AND key = 'loss' AND step = 123", (run_id,))
    done = cli("src.reproduce", run_id, env=env, cwd=tmp)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "first difference at step 123" in done.stdout
    assert "relative 0.000999" in done.stdout or "relative 0.001" in done.stdout


def test_unknown_run_id_is_one_line_error(logged_run):
    env, tmp, *_ = logged_run
    done = cli("src.reproduce", "0123456789abcdef0123456789abcdef", env=env, cwd=tmp)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: run 0123456789abcdef")


def test_first_difference_reports_length_mismatch():
    from src.reproduce import describe_difference, first_difference

    assert first_difference([1.0, 2.0], [1.0, 2.0]) is None
    assert first_difference([1.0, 2.0, 3.0], [1.0, 2.0]) == (2, 3.0, None)
    assert "differ in length" in describe_difference(*first_difference([1.0], [1.0, 5.0]))
    step, a, b = first_difference([1.0, 2.0], [1.0, 2.5])
    assert (step, a, b) == (1, 2.0, 2.5)

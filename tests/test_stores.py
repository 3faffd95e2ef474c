"""Tracking stores: created safely by commands started at once; unusable ones refused before training.

  * eight commands started at once on a store that does not exist yet leave one healthy store and
    eight complete runs (creation is serialised by a file lock beside the database);
  * every kind of unusable store (unreachable database, file://, unknown scheme, SQLite folder
    that cannot be made or is not writable, a file that is not a database) is refused in one line naming the
    redacted URI and the reason, before anything trains, with nothing left in any store;
  * seeds outside numpy's range are refused in one line, with no run.
"""

from __future__ import annotations

import re

import pytest
from conftest import run_many

from tests.helpers import free_port

pytestmark = pytest.mark.slow

LOSS_LINE = re.compile(r"^\d+ \S+$")
RACERS = 8


def test_eight_commands_at_once_on_a_fresh_store(store):
    results = run_many([(store, ["experiment=numpy", "steps=50", f"seed={s}"])
                        for s in range(RACERS)], max_parallel=RACERS)
    for result in results:
        assert result.returncode == 0, result.describe()
        assert not result.stderr_lines, result.describe()
    runs = store.runs()
    assert sorted(int(r.data.params["seed"]) for r in runs) == list(range(RACERS))
    assert {r.info.status for r in runs} == {"FINISHED"}
    experiments = {r.info.experiment_id for r in runs}
    assert len(experiments) == 1, f"runs spread over experiments {experiments}"
    client = store.client()
    for run in runs:
        assert len(client.get_metric_history(run.info.run_id, "loss")) == 50
    # and the store stays healthy for the next command
    after = store.run_cli("experiment=numpy", "steps=5", "seed=99")
    assert after.returncode == 0, after.describe()


def unusable_stores(tmp):
    (tmp / "not-a-db").mkdir()
    (tmp / "not-a-db" / "mlflow.db").write_text("this is not a database\n" * 10)
    (tmp / "a-file").write_text("")
    return {
        "postgres-unreachable": (f"postgresql://harness:s3cret@127.0.0.1:{free_port()}/mlflow",
                                 ["unreachable", "127.0.0.1", "harness:***@"]),
        "file-store": (f"file://{tmp}/mlruns", ["deprecated", "MLFLOW_ALLOW_FILE_STORE"]),
        "unknown-scheme": ("foo://somewhere/x", ["unknown scheme 'foo'", "sqlite:///", "http://",
                                                 "postgresql://"]),
        "sqlite-folder-is-a-file": (f"sqlite:///{tmp}/a-file/mlflow.db",
                                    [f"folder {tmp}/a-file cannot be made"]),
        "sqlite-folder-not-writable": ("sqlite:////proc/mlflow.db",
                                       ["folder /proc is not writable"]),
        "sqlite-not-a-database": (f"sqlite:///{tmp}/not-a-db/mlflow.db",
                                  ["not a database"]),
    }


@pytest.fixture(scope="module")
def refused(make_store, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unusable")
    cases = unusable_stores(tmp)
    store = make_store("refused")  # only for running the CLI; the env var points nowhere useful
    jobs = []
    for name, (uri, _) in cases.items():
        jobs.append((store, ["experiment=numpy", f"tracking.uri={uri}"]))
    jobs.append((store, ["-m", "experiment=numpy,tensor", f"tracking.uri={cases['file-store'][0]}"]))
    results = run_many(jobs, max_parallel=3)
    return store, cases, dict(zip([*cases, "sweep"], results))


@pytest.mark.parametrize("case", ["postgres-unreachable", "file-store", "unknown-scheme",
                                  "sqlite-folder-is-a-file",
                                  "sqlite-folder-not-writable", "sqlite-not-a-database",
                                  "sweep"])
def test_unusable_store_is_refused_before_training(refused, case):
    store, cases, results = refused
    result = results[case]
    uri, expected = cases["file-store" if case == "sweep" else case]
    assert result.returncode == 1, result.describe()
    lines = result.stderr_lines
    assert len(lines) == 1, f"expected one line\n{result.describe()}"
    assert lines[0].startswith("error: tracking store "), lines[0]
    missing = [s for s in expected if s not in lines[0]]
    assert not missing, f"{missing} not in {lines[0]!r}"
    assert "s3cret" not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not [l for l in result.stdout.splitlines() if LOSS_LINE.match(l)], result.describe()
    assert "Result:" not in result.stdout
    assert store.runs() == [], "a refused command wrote to the default store"


@pytest.fixture(scope="module")
def seeds(make_store):
    cases = {"negative": "seed=-1", "too-big": f"seed={2**32}", "largest": f"seed={2**32 - 1}"}
    stores = {name: make_store(f"seed-{name}") for name in cases}
    results = run_many([(stores[name], ["experiment=numpy", "steps=3", arg])
                        for name, arg in cases.items()])
    return {name: (stores[name], result) for name, result in zip(cases, results)}


@pytest.mark.parametrize("case", ["negative", "too-big"])
def test_seed_out_of_range_is_refused(seeds, case):
    store, result = seeds[case]
    assert result.returncode == 2, result.describe()
    assert result.stderr_lines == [
        f"error: seed={-1 if case == 'negative' else 2**32}: must be an integer in 0..{2**32 - 1}"
    ], result.describe()
    assert store.runs() == []


def test_largest_seed_runs(seeds):
    store, result = seeds["largest"]
    assert result.returncode == 0, result.describe()
    assert [r.info.status for r in store.runs()] == ["FINISHED"]

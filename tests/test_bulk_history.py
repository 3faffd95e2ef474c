"""Reading sweeps back: loss histories in one query, and seeds written compactly."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import mlflow_client

from src.bulk_history import BulkReadError, loss_histories
from src.seed_ranges import compact_seeds


@pytest.mark.parametrize("seeds, text", [
    (range(256), "0\u2013255 (256)"),
    ([3, 1, 2, 0, 7, 9, 10, 11], "0\u20133,7,9\u201311 (8)"),
    ([0, 1], "0,1 (2)"),
    ([5, 5], "5 (1)"),
])
def test_compact_seeds(seeds, text):
    assert compact_seeds(seeds) == text


@pytest.fixture
def logged(tmp_path):
    """Runs with a whole curve, a curve with a gap, a step logged twice, a NaN and a step before
    0 (MLflow keeps the NaN apart from the value it stores), and no curve."""
    from mlflow.entities import Metric

    client = mlflow_client(f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("bulk", artifact_location=str(tmp_path / "art"))
    curves = {"whole": [(s, 100.0 / (s + 1)) for s in range(1500)],
              "gap": [(s, float(s)) for s in (0, 1, 2, 4, 5)],
              "twice": [(0, 3.0), (1, 2.0), (1, 5.0), (2, 1.0)],
              "nan": [(-1, 7.0), (0, 4.0), (1, float("nan")), (2, 0.5)],
              "none": []}
    ids = {}
    for name, points in curves.items():
        run_id = client.create_run(experiment, run_name=name).info.run_id
        rows = [Metric("loss", v, 0, s) for s, v in points] + [Metric("other", 1.0, 0, 0)]
        for start in range(0, len(rows), 1000):
            client.log_batch(run_id, metrics=rows[start:start + 1000])
        ids[name] = run_id
    return client, ids


def test_one_query_reads_what_each_run_holds(logged):
    client, ids = logged
    histories = loss_histories(client, ids.values())
    assert list(histories) == list(ids.values())
    np.testing.assert_array_equal(histories[ids["whole"]], [100.0 / (s + 1) for s in range(1500)])
    np.testing.assert_array_equal(histories[ids["gap"]], [0.0, 1.0, 2.0])  # stops at the gap
    np.testing.assert_array_equal(histories[ids["twice"]], [3.0, 5.0, 1.0])
    np.testing.assert_array_equal(histories[ids["nan"]], [4.0, np.nan, 0.5])
    assert len(histories[ids["none"]]) == 0
    for run_id, history in histories.items():  # the same as reading run by run
        by_step = dict(sorted((m.step, m.value) for m in client.get_metric_history(run_id, "loss")))
        np.testing.assert_array_equal(history, [by_step[s] for s in range(len(history))])


def test_changed_mlflow_internals_fail_loudly(logged, monkeypatch):
    client, ids = logged
    monkeypatch.delattr(client._tracking_client.store, "ManagedSessionMaker")
    with pytest.raises(BulkReadError, match="internals changed"):
        loss_histories(client, ids.values())

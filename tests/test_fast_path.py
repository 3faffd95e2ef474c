"""The recorder's fast path for loss histories (bulk INSERT into MLflow's metrics table) is taken
on SQL stores, and never turns silently slow: a layout it does not expect is one warning line and
MLflow's own log_batch instead. PostgreSQL: tests/test_postgres_server.py calls
assert_fast_path_taken on its throwaway cluster.
"""

from __future__ import annotations

from src.tracking import recorder
from src.tracking.recorder import StoreWriter

ROWS = 1000


def open_writer(uri: str):
    replies: list = []
    writer = StoreWriter(replies.append)
    writer.open(uri, "fast-path", None)
    return writer, replies


def write_losses(writer: StoreWriter) -> str:
    writer.start_run(0, "fast-path", {}, {})
    writer.losses_batch(0, 0, [float(i) for i in range(ROWS)], list(range(ROWS)))
    return writer.runs[0]


def assert_fast_path_taken(uri: str) -> None:
    writer, replies = open_writer(uri)
    assert [r[:2] for r in replies] == [("checked", None)], replies
    assert writer.metrics_table is not None, "the fast path was not chosen"
    inserted = []
    bulk = writer.insert_metric_history
    writer.insert_metric_history = lambda run_id, rows: (inserted.append(len(rows)),
                                                         bulk(run_id, rows))
    run_id = write_losses(writer)
    assert inserted == [ROWS - 1], f"bulk insert took {inserted} rows"  # the last: log_batch
    history = writer.client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(ROWS))
    assert writer.client.get_run(run_id).data.metrics["loss"] == ROWS - 1


def test_fast_path_is_taken_for_sqlite(tmp_path):
    assert_fast_path_taken(f"sqlite:///{tmp_path}/mlflow.db")


def test_unexpected_layout_falls_back_with_one_warning(tmp_path, monkeypatch):
    monkeypatch.setattr(recorder, "METRIC_COLUMNS", recorder.METRIC_COLUMNS | {"dataset_uuid"})
    writer, replies = open_writer(f"sqlite:///{tmp_path}/mlflow.db")
    warnings = [r for r in replies if r[0] == "warning"]
    assert len(warnings) == 1 and "\n" not in warnings[0][1], replies
    assert "log_batch" in warnings[0][1] and "dataset_uuid" in warnings[0][1], warnings
    assert writer.metrics_table is None
    run_id = write_losses(writer)  # still complete, the slow way
    history = writer.client.get_metric_history(run_id, "loss")
    assert sorted(m.step for m in history) == list(range(ROWS))

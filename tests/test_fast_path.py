"""The recorder's fast path for loss histories (bulk INSERT into MLflow's metrics table) is taken
on SQL stores, and never turns silently slow: a layout it does not expect is one warning line and
MLflow's own log_batch instead. PostgreSQL: tests/test_postgres_server.py calls
assert_fast_path_taken on its throwaway cluster.
"""

from __future__ import annotations

from src.tracking import recorder
from src.tracking.recorder import StoreWriter

ROWS = 1000


def open_writer(uri: str, artifacts=None):
    """A StoreWriter on this store; artifacts: the experiment's artifact folder (MLflow's default
    is ./mlruns, the user's store, for a SQLite store)."""
    replies: list = []
    writer = StoreWriter(replies.append)
    writer.open(uri, "fast-path", artifacts)
    return writer, replies


def write_losses(writer: StoreWriter, key: int = 0) -> str:
    writer.start_run(key, "fast-path", {}, {})
    writer.losses_batch(key, 0, [float(i) for i in range(ROWS)], list(range(ROWS)))
    writer.flush(key)  # what the recorder does before a message about the run (its results)
    return writer.runs[key]


def assert_fast_path_taken(uri: str) -> None:
    writer, replies = open_writer(uri)
    assert [r[:2] for r in replies] == [("checked", None)], replies
    assert writer.metrics_table is not None, "the fast path was not chosen"
    inserted = []
    bulk = writer.insert_metric_history
    writer.insert_metric_history = lambda rows: (inserted.append(len(rows)), bulk(rows))
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


def test_a_groups_histories_go_in_one_insert_and_one_log_batch_a_run(tmp_path):
    """Messages that arrive together (a vectorized group's flush, then its results) are written
    together: one INSERT for every history, one log_batch per run for its metrics and tags."""
    writer, _ = open_writer(f"sqlite:///{tmp_path}/mlflow.db")
    inserts, batches = [], []
    bulk, log_batch = writer.insert_metric_history, writer.client.log_batch
    writer.insert_metric_history = lambda rows: (inserts.append(len(rows)), bulk(rows))
    writer.client.log_batch = lambda run_id, **kw: (batches.append(run_id), log_batch(run_id, **kw))
    for key in range(3):
        writer.start_run(key, f"member-{key}", {}, {"seed": key})
    writer.flush()  # the params
    batches.clear()
    for key in range(3):
        writer.losses_batch(key, 0, [float(key + i) for i in range(ROWS)], list(range(ROWS)))
    for key in range(3):
        writer.metrics(key, [("final_loss", float(key), 0, 0)])
        writer.tags(key, {"diverged": "false"})
    for key in range(3):
        writer.end_run(key, "FINISHED")
    assert inserts == [3 * (ROWS - 1)]
    assert len(batches) == 3 and len(set(batches)) == 3, batches  # one log_batch a run
    for run in writer.client.search_runs([writer.experiment_id], ""):
        key = int(run.data.params["seed"])
        assert run.info.status == "FINISHED"
        assert run.data.metrics == {"loss": float(key + ROWS - 1), "final_loss": float(key)}
        assert run.data.tags["diverged"] == "false"
        history = writer.client.get_metric_history(run.info.run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == \
            [(i, float(key + i)) for i in range(ROWS)]


def test_a_streamed_history_is_written_as_it_comes_its_latest_row_with_the_results(
        tmp_path, monkeypatch):
    """A group's curves arrive in pieces while it trains: once HISTORY_ROWS wait they are
    written, with no message about the runs; each run's latest row is held back and reaches the
    store with its results, through MLflow (which keeps the latest-metric record right)."""
    monkeypatch.setattr(recorder, "HISTORY_ROWS", 2 * ROWS)
    writer, _ = open_writer(f"sqlite:///{tmp_path}/mlflow.db")
    inserts = []
    bulk = writer.insert_metric_history
    writer.insert_metric_history = lambda rows: (inserts.append(len(rows)), bulk(rows))
    for key in range(2):
        writer.start_run(key, f"member-{key}", {}, {})
    for piece in range(3):  # three pieces of ROWS steps for each member
        for key in range(2):
            writer.handle(("losses_batch", key, piece * ROWS,
                           [float(key + piece * ROWS + i) for i in range(ROWS)],
                           list(range(piece * ROWS, (piece + 1) * ROWS))))
    assert sum(inserts) >= 2 * ROWS, inserts  # written while the pieces came
    run_ids = [writer.runs[key] for key in range(2)]
    for run_id in run_ids:  # nothing through MLflow yet: the latest rows are held
        assert "loss" not in writer.client.get_run(run_id).data.metrics
    for key in range(2):
        writer.handle(("metrics", key, [("final_loss", 1.0, 0, 3 * ROWS - 1)]))
        writer.handle(("end_run", key, "FINISHED"))
    for key, run_id in enumerate(run_ids):
        run = writer.client.get_run(run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["loss"] == float(key + 3 * ROWS - 1)
        history = writer.client.get_metric_history(run_id, "loss")
        assert sorted((m.step, m.value) for m in history) == \
            [(i, float(key + i)) for i in range(3 * ROWS)]


def test_a_short_pause_writes_params_and_files_not_results(tmp_path):
    """What a run is given when it starts (params, config files, a PNG made elsewhere) is
    written in the first pause; its metrics and tags wait for its results."""
    writer, _ = open_writer(f"sqlite:///{tmp_path}/mlflow.db", str(tmp_path / "artifacts"))
    writer.start_run(0, "run", {}, {"seed": 7})
    writer.text(0, "config.yaml", "seed: 7\n")
    writer.file(0, "groups/g/band.png", b"\x89PNG fake")
    writer.metrics(0, [("final_loss", 2.0, 0, 0)])
    writer.tags(0, {"diverged": "false"})
    writer.flush_setup()
    run_id = writer.runs[0]
    run = writer.client.get_run(run_id)
    assert run.data.params == {"seed": "7"}
    assert run.data.metrics == {} and "diverged" not in run.data.tags
    folder = writer.client.download_artifacts(run_id, "", str(tmp_path / "down"))
    assert (tmp_path / "down" / "config.yaml").read_text() == "seed: 7\n", folder
    assert (tmp_path / "down" / "groups" / "g" / "band.png").read_bytes() == b"\x89PNG fake"
    writer.end_run(0, "FINISHED")
    run = writer.client.get_run(run_id)
    assert run.data.metrics == {"final_loss": 2.0} and run.data.tags["diverged"] == "false"


def test_no_warm_up_where_the_training_process_draws(tmp_path):
    for figures_here in (True, False):
        replies: list = []
        writer = StoreWriter(replies.append)
        writer.open(f"sqlite:///{tmp_path}/mlflow.db", "warm-up", None, None, figures_here)
        writer.warm_up()
        assert writer.warmed is figures_here

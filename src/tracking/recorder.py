"""The recorder: a sidecar process that owns every MLflow call of one training process.

Why a process: MLflow's SQLAlchemy store spends about 75 us of Python per metric row (2.3 s for
the 30000-step dynamic run) and `import mlflow` plus creating a fresh store take about 2.7 s.
Done in the training process, that is 30-45 % of the training loop; here it runs on the other
core while training goes on. The training process sends pickled messages on our stdin
(see src/tracking/client.py) and reads replies from our stdout; nothing else writes to it.

If the training process dies, its end of the pipe closes: everything already sent is still
written, and a run left open is marked KILLED, never left RUNNING.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection

SWEEP_SETTLE_TIMEOUT_S = 300.0
MAX_METRICS_PER_CALL = 1000  # MLflow's limit for one log_batch request


class Recorder:
    def __init__(self, reply):
        self.reply = reply
        self.client = None
        self.sql_engine = None
        self.experiment_id = None
        self.open_error = None
        self.runs = {}  # client-side key -> run_id
        self.failed = {}  # key -> error message
        self.losses = {}  # key -> list of losses, for the loss-curve plot

    # --- operations -------------------------------------------------------------------------
    def open(self, uri, experiment, artifact_location):
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        for name in ("mlflow", "alembic"):  # mlflow sets its loggers up on import
            logging.getLogger(name).setLevel(logging.WARNING)
        self.client = MlflowClient(tracking_uri=uri)
        try:
            store = self.client._tracking_client.store
            self.sql_engine = getattr(store, "engine", None)  # SQL stores only, not a server
            exp = with_retries(self.client.get_experiment_by_name, experiment)
            if exp is None:
                try:
                    self.experiment_id = with_retries(
                        self.client.create_experiment, experiment,
                        artifact_location=artifact_location)
                except MlflowException:  # created meanwhile by another process
                    exp = with_retries(self.client.get_experiment_by_name, experiment)
                    if exp is None:
                        raise
            if exp is not None:
                if exp.lifecycle_stage == "deleted":
                    with_retries(self.client.restore_experiment, exp.experiment_id)
                self.experiment_id = exp.experiment_id
        except Exception as exc:  # unreachable server, bad URI, broken database
            self.open_error = f"tracking store {redact(uri)} is not usable: {one_line(exc)}"
            self.reply(("error", None, self.open_error))

    def start_run(self, key, run_name, tags, params, parent=None):
        from mlflow.entities import Param

        if parent is not None:  # a run id, or the key of a run started through us
            tags = {**tags, "mlflow.parentRunId": self.runs[parent] if isinstance(parent, int)
                    else parent}
        run = with_retries(self.client.create_run, self.experiment_id, run_name=run_name,
                           tags=tags)
        self.runs[key] = run.info.run_id
        self.losses[key] = []
        with_retries(self.client.log_batch, run.info.run_id,
                     params=[Param(k, str(v)) for k, v in params.items()])
        self.reply(("started", key, run.info.run_id))

    def losses_batch(self, key, first_step, values, stamps):
        self.losses[key].extend(values)
        rows = [("loss", v, ts, first_step + i) for i, (v, ts) in enumerate(zip(values, stamps))]
        if self.sql_engine is not None:
            # History rows straight into the metrics table (one INSERT ... executemany: about
            # 0.1 s per 30000 rows against 2.3 s through log_batch's ORM); the last row goes
            # through MLflow itself, which keeps the run's latest-metric record right.
            with_retries(self.insert_metric_history, self.runs[key], rows[:-1])
            rows = rows[-1:]
        self.metrics(key, rows)

    def insert_metric_history(self, run_id, rows):
        from mlflow.store.tracking.dbmodels.models import SqlMetric
        from sqlalchemy import insert

        if rows:
            with self.sql_engine.begin() as conn:
                conn.execute(insert(SqlMetric.__table__), [
                    dict(run_uuid=run_id, key=k, value=v, timestamp=ts, step=step, is_nan=False)
                    for k, v, ts, step in rows])

    def metrics(self, key, rows):
        from mlflow.entities import Metric

        for start in range(0, len(rows), MAX_METRICS_PER_CALL):
            with_retries(self.client.log_batch, self.runs[key],
                         metrics=[Metric(*row) for row in rows[start:start + MAX_METRICS_PER_CALL]])

    def tags(self, key, tags):
        from mlflow.entities import RunTag

        with_retries(self.client.log_batch, self.runs[key],
                     tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def text(self, key, artifact_file, text):
        with_retries(self.client.log_text, self.runs[key], text, artifact_file)

    def figures(self, key, x, y, y_fit, formula, title):
        from src import plots  # plain Figure objects: no pyplot state, no GUI backend

        run_id = self.runs[key]
        for name, fig in (("loss_curve.png", plots.loss_curve(self.losses[key], title)),
                          ("fit.png", plots.fit(x, y, y_fit, formula, title))):
            with_retries(self.client.log_figure, run_id, fig, name)

    def group_figures(self, key, folder, x, y, losses, fits, title):
        from src.vectorized.figures import group_figures

        for name, fig in group_figures(x, y, losses, fits, title).items():
            with_retries(self.client.log_figure, self.runs[key], fig, f"{folder}/{name}")

    def end_run(self, key, status):
        run_id = self.runs.pop(key)
        self.losses.pop(key, None)
        with_retries(self.client.set_terminated, run_id, status)
        self.reply(("ended", key, run_id))

    def find_finished(self, token, config_hash):
        found = with_retries(self.client.search_runs,
            [self.experiment_id],
            f"tags.config_hash = '{config_hash}' and attributes.status = 'FINISHED'",
            max_results=1, order_by=["attributes.start_time DESC"])
        match = (found[0].info.run_id, found[0].data.metrics.get("final_loss")) if found else None
        self.reply(("found", token, match))

    def record_skip(self, parent, name, text):
        run_id = self.runs[parent] if isinstance(parent, int) else parent
        with_retries(self.client.log_text, run_id, text, f"skipped/{name}.yaml")

    def finish_sweep(self, key, status, expected=None):
        """Count the parent's children by outcome, log the counts, end the parent.

        Jobs in launcher worker processes write through their own recorders, which may still be
        busy when the sweep returns: a finished sweep waits until all `expected` jobs are in
        the store and over (or until nothing has moved for SWEEP_SETTLE_TIMEOUT_S).
        """
        run_id = self.runs[key]
        seen, last_change = None, time.monotonic()
        while True:
            children = with_retries(self.client.search_runs, [self.experiment_id],
                                    f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=50000)
            skipped = len(with_retries(self.client.list_artifacts, run_id, "skipped"))
            over = sum(c.info.status in ("FINISHED", "FAILED", "KILLED") for c in children)
            if status != "FINISHED" or expected is None or over + skipped >= expected:
                break
            if (over, skipped) != seen:
                seen, last_change = (over, skipped), time.monotonic()
            elif time.monotonic() - last_change > SWEEP_SETTLE_TIMEOUT_S:
                break
            time.sleep(0.2)
        counts = dict.fromkeys(("finished", "diverged", "failed", "killed", "running"), 0)
        for child in children:
            state = child.info.status
            if state == "FAILED" and child.data.tags.get("diverged") == "true":
                counts["diverged"] += 1
            else:
                counts[{"FINISHED": "finished", "FAILED": "failed",
                        "KILLED": "killed"}.get(state, "running")] += 1
        counts["skipped"] = skipped
        now = int(time.time() * 1000)
        self.metrics(key, [("n_jobs", len(children) + skipped, now, 0)]
                     + [(f"n_{k}", v, now, 0) for k, v in counts.items()])
        self.end_run(key, status)

    def kill_open_runs(self):
        for key in list(self.runs):
            try:
                self.end_run(key, "KILLED")
            except Exception:
                pass

    # --- dispatch -----------------------------------------------------------------------------
    def handle(self, message):
        op, *args = message
        if op == "sync":
            self.reply(("synced", args[0], self.open_error))
            return
        if op == "open":
            self.open(*args)
            return
        if op in ("find_finished", "record_skip"):  # not about one of our runs
            if self.open_error is None:
                try:
                    getattr(self, op)(*args)
                except Exception as exc:
                    self.reply(("error", None, f"tracking failed ({op}): {one_line(exc)}"))
                    if op == "find_finished":
                        self.reply(("found", args[0], None))
            elif op == "find_finished":
                self.reply(("found", args[0], None))
            return
        key = args[0]
        if self.open_error is not None or key in self.failed:
            return  # already reported; the training process decides what to do
        try:
            getattr(self, op)(*args)
        except Exception as exc:
            self.failed[key] = f"tracking failed ({op}): {one_line(exc)}"
            traceback.print_exc(file=sys.stderr)
            self.reply(("error", key, self.failed[key]))
            if op != "start_run" and key in self.runs:
                try:
                    with_retries(self.client.set_terminated, self.runs.pop(key), "FAILED")
                except Exception:
                    pass


def with_retries(operation, *args, attempts: int = 8, **kwargs):
    """SQLite serialises writers; a busy database is waited for, not reported as a failure."""
    for attempt in range(attempts):
        try:
            return operation(*args, **kwargs)
        except Exception as exc:
            if "database is locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * 2 ** attempt)


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def redact(uri: str) -> str:
    from src.tracking.store import redact as _redact

    return _redact(uri)


def main() -> None:
    # Our stdout is the training process's console: no run URLs or progress bars from MLflow.
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # Ctrl-C and SIGTERM are for the training process; it tells us how to close its run.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # Length-framed messages (multiprocessing's Connection) over our stdin and stdout.
    inbox = Connection(os.dup(sys.stdin.fileno()), writable=False)
    outbox = Connection(os.dup(sys.stdout.fileno()), readable=False)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # stray prints must not corrupt replies

    def reply(message):
        try:
            outbox.send(message)
        except (BrokenPipeError, OSError):
            pass

    # A reader thread empties the pipe as fast as messages come, so that the training process
    # never blocks on a full pipe while we are busy writing to the store.
    inbox_queue: queue.SimpleQueue = queue.SimpleQueue()

    def read_all():
        while True:
            try:
                inbox_queue.put(inbox.recv())
            except (EOFError, pickle.UnpicklingError, OSError):
                inbox_queue.put(None)
                return

    threading.Thread(target=read_all, daemon=True).start()
    import mlflow  # noqa: F401  (now, while the training process starts up, not at the first run)

    recorder = Recorder(reply)
    while True:
        message = inbox_queue.get()
        if message is None:
            recorder.kill_open_runs()  # the training process is gone
            return
        if message[0] == "close":
            recorder.kill_open_runs()
            reply(("closed",))
            return
        recorder.handle(message)


if __name__ == "__main__":
    main()
    # Everything is committed; skip interpreter shutdown, which would wait on the reader thread.
    os._exit(0)

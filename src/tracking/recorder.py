"""The recorder process: a sidecar that owns every MLflow call of one training process.

Why a process: MLflow's SQLAlchemy store spends about 75 us of Python per metric row (2.3 s for
the 30000-step dynamic run) and `import mlflow` plus creating a fresh store take about 2.7 s.
Done in the training process, that is 30-45 % of the training loop; here it runs on the other
core while training goes on. The training process sends pickled messages on our stdin
(see src/tracking/client.py) and reads replies from our stdout; nothing else writes to it.

If the training process dies, its end of the pipe closes: everything already sent is still
written, and a run left open is marked KILLED, never left RUNNING.

Everything MLflow, SQLAlchemy and alembic print (warnings, tracebacks) goes to a log file in the
Hydra output folder (client.LOG_NAME), never to the console; errors reach the training process
as one-line replies that name that file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from itertools import repeat
from multiprocessing.connection import Connection
from operator import itemgetter
from pathlib import Path
from types import SimpleNamespace

SWEEP_SETTLE_TIMEOUT_S = 300.0
CHILDREN_SETTLE_TIMEOUT_S = 30.0  # a failed sweep waits this long for its children to end
STORE_LOCK_TIMEOUT_S = 300.0
# MLflow's limits for one log_batch request (mlflow.utils.validation)
MAX_ENTITIES_PER_CALL = 1000
MAX_PARAMS_TAGS_PER_CALL = 100
# The columns the bulk insert writes, in the order of a history row; MLflow's metrics table must
# have exactly these.
HISTORY_ROW = ("run_uuid", "key", "value", "timestamp", "step", "is_nan")
METRIC_COLUMNS = set(HISTORY_ROW)
# What a fresh recorder still does for runs it adopted from a dead one: close them, nothing else
# (more loss rows after the lost ones would leave a gap in the curve).
ADOPTED_OPS = ("end_run", "finish_sweep", "record_skip", "history_length")
# Messages that only add to what waits for StoreWriter.flush.
BUFFERED_OPS = ("losses_batch", "metrics", "tags", "text", "file")
# Messages about one run: only that run's buffered data is written before them (the other runs
# of a vectorized group keep theirs, to be written with their own results).
RUN_OPS = ("start_run", "end_run", "figures")
# How long the buffer waits for more messages before writing: a group's results come in a
# burst, with pauses shorter than this between them.
LINGER_S = 0.25
# A shorter pause is enough to write the params and config files of runs just started: nothing
# that comes later joins them (a vectorized group trains meanwhile, its recorder never idle long).
QUIET_S = 0.05
# History rows waiting for the direct insert are written once this many wait, lingering or not:
# a vectorized group streams its curves while it trains (about 0.05 s per 8192 rows on SQLite).
HISTORY_ROWS = 8192


@dataclass
class Child:
    """A sweep's child run as this recorder wrote it, read as a search_runs result would be
    (info.status, info.run_name; data.params, data.tags, data.metrics: the latest values)."""
    info: SimpleNamespace
    data: SimpleNamespace
    parent: str
    latest: dict = field(default_factory=dict)  # metric -> (step, timestamp)

    def add(self, params, metrics, tags):
        self.data.params.update((k, str(v)) for k, v in params.items())
        self.data.tags.update((k, str(v)) for k, v in tags.items())
        for k, v, ts, step in metrics:
            if (step, ts) >= self.latest.get(k, (step, ts)):
                self.latest[k] = (step, ts)
                self.data.metrics[k] = float(v)


@dataclass
class Pending:
    """What waits to be written for one run (see StoreWriter.flush)."""
    params: dict = field(default_factory=dict)
    metrics: list = field(default_factory=list)  # (key, value, timestamp, step)
    tags: dict = field(default_factory=dict)
    files: dict = field(default_factory=dict)  # artifact file -> text or bytes
    history: list = field(default_factory=list)  # HISTORY_ROW tuples for the direct insert


class StoreWriter:
    """Writes what the training process sends into the MLflow store, in the order it was sent;
    messages that only add data to runs are written together (flush)."""

    def __init__(self, reply):
        self.reply = reply
        self.client = None
        self.metrics_table = None  # the fast path: bulk inserts into MLflow's metrics table
        self.sql_engine = None
        self.experiment_id = None
        self.open_error = None
        self.log_path = None
        self.checked_uri = None
        self.runs = {}  # client-side key -> run_id
        self.adopted = set()  # keys of runs a dead recorder left open
        self.failed = {}  # key -> error message
        self.losses = {}  # key -> list of losses, for the loss-curve plot
        self.pending: dict[int, Pending] = {}  # key -> what waits for flush()
        self.history_rows = 0  # rows waiting in every Pending.history
        self.held = {}  # key -> a run's latest loss row (see losses_batch)
        self.artifact_uris = {}  # key -> the run's artifact URI
        self.children = {}  # key -> Child, for the runs started with a parent
        self.ended_children: dict[str, list] = {}  # parent run id -> its children we ended
        self.figures_here = True  # whether runs' figures will be drawn here (see warm_up)
        self.warmed = False

    # --- operations -------------------------------------------------------------------------
    def check(self, uri, experiment, artifact_location, log_path=None, figures_here=True):
        """Is the store usable? Answered as soon as the training process asks (see main)."""
        from src.tracking.client import TrackingError
        from src.tracking.store_check import check_store

        if log_path:
            self.log_path = log_path
            log_to(log_path)
        started = time.perf_counter()
        try:
            check_store(uri)
        except TrackingError as exc:  # one line already, naming the redacted URI
            self.open_error = str(exc)
        self.reply(("checked", self.open_error, time.perf_counter() - started))

    def open(self, uri, experiment, artifact_location, log_path=None, figures_here=True):
        self.figures_here = figures_here
        if self.checked_uri != uri:  # a store opened without the reader's early check
            self.check(uri, experiment, artifact_location, log_path)
        if self.open_error is not None:
            return
        try:
            self.open_store(uri, experiment, artifact_location)
        except Exception as exc:  # a broken database, a server that fails
            traceback.print_exc(file=sys.stderr)
            self.open_error = self.failure(f"tracking store {redact(uri)} is not usable", exc)
            self.reply(("error", None, self.open_error))
            return
        warning = self.choose_metric_path(uri)
        if warning:
            self.reply(("warning", warning))

    def open_store(self, uri, experiment, artifact_location):
        """The store (created or migrated by one process at a time), then the experiment."""
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        for name in ("mlflow", "alembic"):  # mlflow sets its loggers up on import
            logging.getLogger(name).setLevel(logging.WARNING)
        from src.tracking.uri_secrets import credentials_to_env

        with store_lock(uri):  # MLflow creates (or checks) the database in MlflowClient()
            create_whole(uri)
            # http(s) credentials move to MLflow's environment variables: its messages show the URI
            self.client = MlflowClient(tracking_uri=credentials_to_env(uri))
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
        from src.report.mlflow_ui import describe_experiment

        with_retries(describe_experiment, self.client, self.experiment_id)

    def choose_metric_path(self, uri):
        """The fast path for SQL stores, if MLflow's layout is what it expects; else a warning."""
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = self.client._tracking_client.store
        if not isinstance(store, SqlAlchemyStore):
            return None  # a tracking server: log_batch is the way
        reason = metrics_layout_problem(store)
        if reason is not None:
            return (f"warning: tracking store {redact(uri)}: {reason}; loss histories go "
                    f"through MLflow's log_batch instead (slower)")
        from mlflow.store.tracking.dbmodels.models import SqlMetric

        self.sql_engine, self.metrics_table = store.engine, SqlMetric.__table__
        print(f"loss histories: bulk insert into table {self.metrics_table.name} "
              f"({self.sql_engine.dialect.name})", file=sys.stderr)
        return None

    def failure(self, what, exc):
        where = f"; details in {self.log_path}" if self.log_path else ""
        return f"{what}: {one_line(exc)}{where}"

    def adopt(self, runs):
        """Runs a dead recorder left open, by key: this one only closes them."""
        self.runs.update(runs)
        self.adopted.update(runs)

    def history_length(self, token, key):
        self.flush(key)  # its held loss row too: the count is what the store keeps
        run_id = self.runs.get(key)
        n = None
        if run_id is not None:
            n = len(with_retries(self.client.get_metric_history, run_id, "loss"))
        self.reply(("answer", token, n))

    def terminate_runs(self, status):
        for key in list(self.runs):
            try:
                self.end_run(key, status)
            except Exception:
                traceback.print_exc(file=sys.stderr)

    def start_run(self, key, run_name, tags, params, parent=None):
        if parent is not None:  # a run id, or the key of a run started through us
            tags = {**tags, "mlflow.parentRunId": self.runs[parent] if isinstance(parent, int)
                    else parent}
        run = with_retries(self.client.create_run, self.experiment_id, run_name=run_name,
                           tags=tags)
        self.runs[key] = run.info.run_id
        self.artifact_uris[key] = run.info.artifact_uri
        self.losses[key] = []
        if "mlflow.parentRunId" in tags:
            self.children[key] = Child(SimpleNamespace(status="RUNNING", run_name=run_name),
                                       SimpleNamespace(params={}, tags={}, metrics={}),
                                       tags["mlflow.parentRunId"])
            self.children[key].add({}, [], tags)
        self.pending.setdefault(key, Pending()).params.update(params)
        self.reply(("started", key, run.info.run_id))

    # Metrics, tags, params, files and history rows wait in Pending until a message about their
    # run (RUN_OPS) or about anything else comes, or until none has come for LINGER_S: runs that
    # end together (a vectorized group) then cost one transaction for all their histories and
    # one log_batch each. History rows are also written whenever HISTORY_ROWS wait.
    def losses_batch(self, key, first_step, values, stamps):
        self.losses[key].extend(values)
        steps = range(first_step, first_step + len(values))
        if self.metrics_table is not None and values:
            # History rows straight into the metrics table (one INSERT ... executemany: about
            # 0.1 s per 30000 rows against 2.3 s through log_batch's ORM). The latest row is held
            # back and goes through MLflow itself when its run's results do (flush(key)), which
            # keeps the run's latest-metric record right at the cost of one log_batch a run.
            n = len(values)
            history = self.pending.setdefault(key, Pending()).history
            held = self.held.pop(key, None)
            if held is not None:
                history.append((self.runs[key], *held, False))
            history.extend(zip(repeat(self.runs[key], n - 1), repeat("loss"), values[:-1],
                               stamps[:-1], steps, repeat(False)))
            self.history_rows += n - 1 + (held is not None)
            self.held[key] = ("loss", values[-1], stamps[-1], steps[-1])
            if self.history_rows >= HISTORY_ROWS:
                self.flush_history()
            return
        self.metrics(key, list(zip(repeat("loss"), values, stamps, steps)))

    def metrics(self, key, rows):
        self.pending.setdefault(key, Pending()).metrics.extend(rows)

    def tags(self, key, tags):
        self.pending.setdefault(key, Pending()).tags.update(tags)

    def text(self, key, artifact_file, text):
        self.pending.setdefault(key, Pending()).files[artifact_file] = text

    def file(self, key, artifact_file, data: bytes):
        self.pending.setdefault(key, Pending()).files[artifact_file] = data

    def flush(self, *keys):
        """Write what waits in Pending for these runs (all, if none named): every waiting
        history row in one transaction, then per run one log_batch (params, metrics, tags and,
        for the runs named, their held loss row) and one upload of its files."""
        self.flush_history()
        for key in keys:  # messages about these runs: their latest loss row goes now
            if key in self.held:
                self.metrics(key, [self.held.pop(key)])
        keys = keys or list(self.pending)
        pending = {k: self.pending.pop(k) for k in keys if k in self.pending}
        for key, p in pending.items():
            if key not in self.runs or key in self.failed:
                continue
            try:
                self.write(key, p)
            except Exception as exc:
                self.fail(key, "log_batch", exc)

    def flush_setup(self):
        """The params and files of every run that has some waiting (what a run is given when it
        starts); its metrics, tags and history keep waiting."""
        for key, p in list(self.pending.items()):
            if not (p.params or p.files) or key not in self.runs or key in self.failed:
                continue
            setup, p.params, p.files = Pending(params=p.params, files=p.files), {}, {}
            try:
                self.write(key, setup)
            except Exception as exc:
                self.fail(key, "log_batch", exc)

    def flush_history(self):
        """Every run's waiting history rows, in one transaction."""
        keys, rows = [], []
        for key, p in self.pending.items():
            if p.history and key in self.runs and key not in self.failed:
                keys.append(key)
                rows.extend(p.history)
            p.history = []
        self.history_rows = 0
        if rows:
            try:
                with_retries(self.insert_metric_history, rows)
            except Exception as exc:
                for key in keys:
                    self.fail(key, "losses_batch", exc)

    def write(self, key, p: "Pending"):
        from mlflow.entities import Metric, Param, RunTag

        run_id = self.runs[key]
        if key in self.children:
            self.children[key].add(p.params, p.metrics, p.tags)
        params = [Param(k, str(v)) for k, v in p.params.items()]
        metrics = [Metric(*row) for row in p.metrics]
        tags = [RunTag(k, str(v)) for k, v in p.tags.items()]
        while params or metrics or tags:  # within MLflow's limits for one log_batch
            n_params = min(len(params), MAX_PARAMS_TAGS_PER_CALL)
            n_tags = min(len(tags), MAX_PARAMS_TAGS_PER_CALL - n_params)
            n_metrics = min(len(metrics), MAX_ENTITIES_PER_CALL - n_params - n_tags)
            with_retries(self.client.log_batch, run_id, metrics=metrics[:n_metrics],
                         params=params[:n_params], tags=tags[:n_tags])
            params, metrics, tags = params[n_params:], metrics[n_metrics:], tags[n_tags:]
        if p.files:
            with tempfile.TemporaryDirectory() as folder:
                for name, content in p.files.items():
                    path = Path(folder, name)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    if isinstance(content, bytes):
                        path.write_bytes(content)
                    else:
                        path.write_text(content, encoding="utf-8")
                with_retries(self.artifact_repository(key).log_artifacts, folder)

    def artifact_repository(self, key):
        """The run's artifact repository, from the URI create_run returned (MlflowClient's
        log_artifacts would fetch the run again to learn it: 3-4 ms a run)."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        return get_artifact_repository(self.artifact_uris[key],
                                       tracking_uri=self.client.tracking_uri)

    def insert_metric_history(self, rows):
        """HISTORY_ROW tuples into MLflow's metrics table, in one transaction."""
        from sqlalchemy import insert

        statement = insert(self.metrics_table)
        with self.sql_engine.begin() as conn:
            if self.sql_engine.dialect.name == "sqlite":  # tuples to sqlite3: 40 % less time
                compiled = statement.compile(dialect=self.sql_engine.dialect)
                in_order = itemgetter(*(HISTORY_ROW.index(name) for name in compiled.positiontup))
                conn.exec_driver_sql(str(compiled), list(map(in_order, rows)))
            else:  # SQLAlchemy's batched VALUES for the other drivers
                conn.execute(statement, [dict(zip(HISTORY_ROW, row)) for row in rows])

    def warm_up(self):
        """Once, while nothing waits after the store opened: load what the first figure needs
        (matplotlib, Agg and its fonts, about 0.5 s), so that no run waits for it later. Not if
        the training process draws its figures itself (a vectorized launch: its recorder is the
        busier process, and the trainer is idle once a group has trained)."""
        if self.warmed or self.client is None or not self.figures_here:
            return
        self.warmed = True
        import io

        from matplotlib.figure import Figure

        figure = Figure(figsize=(1, 1))
        figure.subplots().set_title("warm-up")
        figure.savefig(io.BytesIO(), format="png")

    def figures(self, key, x, y, y_fit, formula, title):
        from src import plots  # plain Figure objects: no pyplot state, no GUI backend

        run_id = self.runs[key]
        for name, fig in (("loss_curve.png", plots.loss_curve(self.losses[key], title)),
                          ("fit.png", plots.fit(x, y, y_fit, formula, title))):
            with_retries(self.client.log_figure, run_id, fig, name)

    def end_run(self, key, status):
        self.flush(key)
        if key in self.failed:  # flush failed it, and closed it FAILED
            return
        run_id = self.runs.pop(key)
        self.losses.pop(key, None)
        self.artifact_uris.pop(key, None)
        with_retries(self.client.set_terminated, run_id, status)
        self.child_ended(key, status)
        self.reply(("ended", key, run_id))

    def child_ended(self, key, status):
        child = self.children.pop(key, None)
        if child is not None:
            child.info.status = status
            self.ended_children.setdefault(child.parent, []).append(child)

    def find_finished(self, token, config_hash):
        found = with_retries(self.client.search_runs,
            [self.experiment_id],
            f"tags.config_hash = '{config_hash}' and attributes.status = 'FINISHED'",
            max_results=1, order_by=["attributes.start_time DESC"])
        match = (found[0].info.run_id, found[0].data.metrics.get("final_loss")) if found else None
        self.reply(("answer", token, match))

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
        ours = self.ended_children.pop(run_id, [])
        while True:
            skipped = len(with_retries(self.client.list_artifacts, run_id, "skipped"))
            if status == "FINISHED" and expected is not None and len(ours) + skipped >= expected:
                children = ours  # every job ran here and was ended by us: nothing to search
                break
            children = with_retries(self.client.search_runs, [self.experiment_id],
                                    f"tags.`mlflow.parentRunId` = '{run_id}'", max_results=50000)
            over = sum(c.info.status in ("FINISHED", "FAILED", "KILLED") for c in children)
            if status != "FINISHED":  # a failed sweep: only its running children are waited for
                if over == len(children) or \
                        time.monotonic() - last_change > CHILDREN_SETTLE_TIMEOUT_S:
                    break
                time.sleep(0.2)
                continue
            if expected is None or over + skipped >= expected:
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
        from src.report.mlflow_ui import NOTE_TAG, sweep_markdown
        with_retries(self.client.set_tag, run_id, NOTE_TAG, sweep_markdown(children))
        self.end_run(key, status)

    # --- dispatch -----------------------------------------------------------------------------
    def handle(self, message):
        op, *args = message
        if op in RUN_OPS:
            self.flush(args[0])  # everything sent before for this run is in the store first
        elif op not in BUFFERED_OPS:
            self.flush()  # everything sent before is in the store first
        if op == "sync":
            self.reply(("answer", args[0], None))
            return
        if op in ("open", "adopt"):
            getattr(self, op)(*args)
            return
        if self.open_error is not None:  # already reported; nothing reaches the store
            if op in ("find_finished", "history_length"):
                self.reply(("answer", args[0], None))
            return
        if op in ("find_finished", "record_skip", "history_length"):  # not about one run
            try:
                getattr(self, op)(*args)
            except Exception as exc:
                traceback.print_exc(file=sys.stderr)
                self.reply(("error", None, self.failure(f"tracking failed ({op})", exc)))
                if op != "record_skip":
                    self.reply(("answer", args[0], None))
            return
        key = args[0]
        if key in self.failed or (key in self.adopted and op not in ADOPTED_OPS):
            return  # already reported; the training process decides what to do
        try:
            getattr(self, op)(*args)
        except Exception as exc:
            self.fail(key, op, exc)

    def fail(self, key, op, exc):
        """The run's writing failed: say so (once) and close it FAILED."""
        traceback.print_exc(file=sys.stderr)
        self.pending.pop(key, None)
        self.held.pop(key, None)
        self.children.pop(key, None)  # what the store holds of it is unsure: its parent searches
        self.failed[key] = self.failure(f"tracking failed ({op})", exc)
        self.reply(("error", key, self.failed[key]))
        if op != "start_run" and key in self.runs:
            try:
                with_retries(self.client.set_terminated, self.runs.pop(key), "FAILED")
            except Exception:
                traceback.print_exc(file=sys.stderr)


def metrics_layout_problem(store):
    """None if MLflow's metrics table (model and database) is what the bulk insert writes."""
    try:
        from mlflow.store.tracking.dbmodels.models import SqlMetric
        from sqlalchemy import inspect

        table = SqlMetric.__table__
        model = set(table.columns.keys())
        in_database = {c["name"] for c in inspect(store.engine).get_columns(table.name)}
    except Exception as exc:  # moved, renamed: the fast path's assumptions no longer hold
        return f"MLflow's metrics table is not where the bulk insert expects ({one_line(exc)})"
    if model != METRIC_COLUMNS or in_database != METRIC_COLUMNS:
        return (f"MLflow's metrics table has columns {sorted(in_database)} "
                f"(model: {sorted(model)}), the bulk insert writes {sorted(METRIC_COLUMNS)}")
    return None


def store_lock(uri):
    """SQLite: a file lock beside the database while MLflow creates or migrates it.

    Several processes creating one fresh database at once corrupt it for good (two terminals,
    a SLURM job array); a server or a database server serialises that itself.
    """
    from filelock import FileLock

    from src.tracking.store import sqlite_path

    db = sqlite_path(uri)
    if db is None:
        return contextlib.nullcontext()
    return FileLock(f"{db}.lock", timeout=STORE_LOCK_TIMEOUT_S)


def create_whole(uri):
    """A fresh SQLite store is created beside its place and moved there once complete.

    MLflow creates it in some thirty migrations, not in one transaction: a process killed
    half-way would leave a database that fails every later command. Caller holds store_lock.
    """
    from mlflow import MlflowClient

    from src.tracking.store import sqlite_path

    db = sqlite_path(uri)
    if db is None or (db.exists() and db.stat().st_size > 0):
        return
    partial = db.with_name(f".{db.name}.creating")
    partial.unlink(missing_ok=True)  # what a killed creator left
    MlflowClient(tracking_uri=f"sqlite:///{partial}")._tracking_client.store.engine.dispose()
    os.replace(partial, db)


def log_to(path):
    """From now on our stdout and stderr (MLflow's warnings, tracebacks) go to this file."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    for target in (1, 2):
        os.dup2(fd, target)
    os.close(fd)


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
    from src.tracking.store_check import one_line as _one_line

    return _one_line(exc)


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

    sending = threading.Lock()  # the reader thread answers the store check itself

    def reply(message):
        with sending:
            try:
                outbox.send(message)
            except (BrokenPipeError, OSError):
                pass

    writer = StoreWriter(reply)

    # A reader thread empties the pipe as fast as messages come, so that the training process
    # never blocks on a full pipe while we are busy writing to the store.
    inbox_queue: queue.SimpleQueue = queue.SimpleQueue()

    def read_all():
        while True:
            try:
                message = inbox.recv()
            except (EOFError, pickle.UnpicklingError, OSError):
                inbox_queue.put(None)
                return
            if message[0] == "open":  # check the store now, not after MLflow's import
                writer.check(*message[1:])
                writer.checked_uri = message[1]
            inbox_queue.put(message)

    threading.Thread(target=read_all, daemon=True).start()
    import mlflow  # noqa: F401  (now, while the training process starts up, not at the first run)

    while True:
        try:
            message = inbox_queue.get(timeout=QUIET_S)
        except queue.Empty:
            writer.flush_setup()
            try:
                message = inbox_queue.get(timeout=LINGER_S)
            except queue.Empty:  # nothing came: write what is buffered before we idle
                writer.flush()
                writer.warm_up()
                message = inbox_queue.get()
        if message is None:  # the training process is gone
            writer.flush()
            writer.terminate_runs("KILLED")
            return
        if message[0] == "close":
            writer.terminate_runs("KILLED")
            reply(("closed",))
            return
        writer.handle(message)


if __name__ == "__main__":
    main()
    # Everything is committed; skip interpreter shutdown, which would wait on the reader thread.
    os._exit(0)

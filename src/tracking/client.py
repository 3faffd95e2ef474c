"""The training process's side of tracking: messages to its recorder process, never blocking.

One recorder process per training process (see recorder.py), shared by all jobs a launcher runs
in it; it is closed (and waited for) at exit, so when the command returns, every run is written.

A reader thread takes the recorder's replies as they come. If the recorder dies, or the store
fails under a run that is training, the training is interrupted at once (RecorderLost, raised in
the main thread by a signal), and a fresh recorder closes the run as FAILED: no run is ever left
RUNNING, and its loss curve keeps every step that reached the store.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import math
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Optional, Union

from src.tracking.store import artifact_location, redact, tracking_uri

CLOSE_TIMEOUT_S = 300.0  # a long backlog (e.g. a big SQLite sweep) may take a while to drain
MAX_RESTARTS = 3  # fresh recorders after deaths, per training process and store
STOP_SIGNAL = signal.SIGUSR1  # how the reader thread interrupts the training loop
LOG_NAME = "tracking.log"  # MLflow's, SQLAlchemy's and alembic's output, in the Hydra folder

_prestarted: Optional[subprocess.Popen] = None


def _spawn() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "src.tracking.recorder"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        start_new_session=True,  # Ctrl-C in the terminal reaches only the training process
    )


def prestart() -> None:
    """Start a recorder process now, so that it imports MLflow while this process starts up.

    It touches no store until a run needs it; unused, it ends when this process does.
    """
    global _prestarted
    if _prestarted is None:
        _prestarted = _spawn()


def _take_prestarted() -> Optional[subprocess.Popen]:
    global _prestarted
    proc, _prestarted = _prestarted, None
    return proc if proc is not None and proc.poll() is None else None


class TrackingError(RuntimeError):
    """The tracking store refused or failed; the message is one line."""


class RecorderLost(KeyboardInterrupt):
    """Raised in the training loop when its recorder died or its store failed under it.

    A KeyboardInterrupt, as the SIGTERM exception is: libraries on the way (tqdm's logging
    handler) re-raise those but swallow others.
    """


def describe_exit(code: Optional[int]) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class RecorderProcess:
    """Handle on the recorder process for one (tracking URI, experiment)."""

    def __init__(self, uri: str, experiment: str, log_path: Optional[Path] = None,
                 figures_here: bool = True):
        self.uri, self.experiment, self.log_path = uri, experiment, log_path
        self.figures_here = figures_here  # False: the training process draws its figures
        self._keys = itertools.count()
        self._tokens = itertools.count()
        self._lock = threading.RLock()  # sends and waits may come from a launcher's threads
        self.run_ids: dict[int, str] = {}  # run key -> MLflow run id, once started
        self.ended: set[int] = set()  # keys whose end the store acknowledged
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self._raised = 0
        self.restarts = 0
        self.check_s: Optional[float] = None  # how long the store check took (recorder side)
        self.ready_wait_s = 0.0  # how long training waited for it (what the check cost us)
        self._training_keys: frozenset = frozenset()  # the runs in the training loop now
        self._start(_take_prestarted() or _spawn())
        if threading.current_thread() is threading.main_thread():
            signal.signal(STOP_SIGNAL, _raise_recorder_lost)

    # --- the process and its replies ----------------------------------------------------------
    def _start(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lost: Optional[str] = None  # why the recorder is gone, once it is
        self.checked = threading.Event()  # the store check answered
        self._closed = False  # the recorder said it wrote everything and is ending
        self._replies: queue.SimpleQueue = queue.SimpleQueue()
        # Length-framed messages on the raw pipes: nothing is buffered behind our back.
        self._tx = Connection(os.dup(proc.stdin.fileno()), readable=False)
        rx = Connection(os.dup(proc.stdout.fileno()), writable=False)
        proc.stdin.close()
        proc.stdout.close()
        self._reader = threading.Thread(target=self._read_replies, args=(proc, rx), daemon=True)
        self._reader.start()
        self._send(("open", self.uri, self.experiment, artifact_location(self.uri),
                    str(self.log_path) if self.log_path else None, self.figures_here))

    def _read_replies(self, proc: subprocess.Popen, rx: Connection) -> None:
        while True:
            try:
                reply = rx.recv()
            except (EOFError, OSError, pickle.UnpicklingError):
                break
            self._take(reply)
            self._replies.put(reply)
        code = proc.wait()
        if not self._closed:
            self.lost = f"tracking recorder for {redact(self.uri)} died ({describe_exit(code)})"
            self._error(self.lost)
            self._stop_training(self.lost)
        self.checked.set()
        self._replies.put(None)

    def _take(self, reply) -> None:
        kind, *rest = reply
        if kind == "closed":
            self._closed = True
        elif kind == "started":
            self.run_ids[rest[0]] = rest[1]
        elif kind == "ended":
            self.ended.add(rest[0])
        elif kind == "checked":
            self.check_s = rest[1]
            if rest[0]:
                self._error(rest[0])
                self._stop_training(rest[0])
            self.checked.set()
        elif kind == "warning":
            if rest[0] not in self.warnings:
                self.warnings.append(rest[0])
                print(rest[0], file=sys.stderr)
        elif kind == "error":
            self._error(rest[1])
            if rest[0] is None or rest[0] in self._training_keys:
                self._stop_training(rest[1])

    def _error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)

    def _stop_training(self, reason: str) -> None:
        """Interrupt the training loop at once (a real signal: it also ends a blocked write)."""
        global _stop_reason
        if self._training_keys:
            _stop_reason = reason
            signal.pthread_kill(threading.main_thread().ident, STOP_SIGNAL)

    def _send(self, message) -> None:
        with self._lock:
            if self.lost is not None:
                self._restart()
            try:
                self._tx.send(message)
            except (BrokenPipeError, OSError):
                self._reader.join(timeout=10)  # its end of the pipe, then the exit code

    def _restart(self) -> None:
        """A fresh recorder takes over the runs the dead one had open (only to close them)."""
        self._reader.join(timeout=10)  # every reply the dead one sent is taken
        if self.restarts >= MAX_RESTARTS:
            return
        self.restarts += 1
        open_runs = {k: v for k, v in self.run_ids.items() if k not in self.ended}
        self._start(_spawn())
        self._tx.send(("adopt", open_runs))

    def _wait_for(self, done, timeout: float) -> bool:
        """Take replies until done(reply); False if the recorder ended or went silent first."""
        while True:
            try:
                reply = self._replies.get(timeout=timeout)
            except queue.Empty:
                self._error(f"tracking recorder for {redact(self.uri)} did not answer "
                            f"within {timeout:.0f} s")
                return False
            if reply is None:
                self._replies.put(None)  # for later waiters
                return False
            if done(reply):
                return True

    def raise_errors(self) -> None:
        if len(self.errors) > self._raised:
            self._raised = len(self.errors)
            raise TrackingError(self.errors[self._raised - 1])

    def poll(self) -> None:
        """Raise the first error not raised yet."""
        self.raise_errors()

    def ready(self) -> None:
        """Wait for the store check (started with the recorder, so mostly long done)."""
        if not self.checked.is_set():
            started = time.perf_counter()
            self.checked.wait(CLOSE_TIMEOUT_S)
            self.ready_wait_s += time.perf_counter() - started
        self.raise_errors()

    def _ask(self, message: tuple, timeout: float = CLOSE_TIMEOUT_S):
        """Send a question with a fresh token and wait for its answer (None if none came)."""
        with self._lock:
            token = next(self._tokens)
            self._send((message[0], token, *message[1:]))
            answer = []
            self._wait_for(lambda r: r[0] == "answer" and r[1] == token
                           and not answer.append(r[2]), timeout)
        return answer[0] if answer else None

    def sync(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Wait until the recorder has written everything sent so far."""
        self._ask(("sync",), timeout)
        self.raise_errors()

    def find_finished(self, config_hash: str, timeout: float = CLOSE_TIMEOUT_S):
        """(run id, final loss) of a FINISHED run with this config hash, or None (waits)."""
        found = self._ask(("find_finished", config_hash), timeout)
        self.raise_errors()
        return found

    def record_skip(self, parent: Union[int, str], name: str, text: str) -> None:
        """Note on a sweep's parent run that a job was skipped (resume)."""
        self._send(("record_skip", parent, name, text))

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Drain and stop; runs a dead recorder left open are closed FAILED by a fresh one."""
        with self._lock:
            while not self._closed:
                if self.lost is not None:
                    unended = [k for k in self.run_ids if k not in self.ended]
                    if not unended or self.restarts >= MAX_RESTARTS:
                        return
                    for key in unended:
                        self._send(("end_run", key, "FAILED"))  # to a fresh recorder
                self._send(("close",))
                self._wait_for(lambda r: r[0] == "closed", timeout)
                with contextlib.suppress(OSError):
                    self._tx.close()
                try:
                    self.proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                self._reader.join(timeout=10)
                if self.lost is None or self._closed:
                    return

    # --- runs ---------------------------------------------------------------------------------
    def start_run(self, run_name: str, tags: dict, params: dict,
                  parent: Union[None, int, str] = None) -> "Run":
        """parent: a run id, or the key of a run this recorder started (no waiting for its id)."""
        self.poll()
        key = next(self._keys)
        self._send(("start_run", key, run_name, tags, params, parent))
        return Run(self, key)

    @contextlib.contextmanager
    def training(self, *runs: "Run"):
        """While inside, a dead recorder or a store failing under any of these runs (one, or a
        vectorized group's members) interrupts us with RecorderLost."""
        self.ready()  # an unusable store is refused before the first step
        self._training_keys = frozenset(run.key for run in runs)
        try:
            if self.lost is not None:
                raise RecorderLost(self.lost)
            yield
        finally:
            self._training_keys = frozenset()

    def close_lost(self, run: "Run", reason: str) -> TrackingError:
        """After RecorderLost: the run closed FAILED (by a fresh recorder if the old one died),
        and the one line that says so, naming how much of its curve reached the store."""
        kept = self._ask(("history_length", run.key), timeout=60)
        run.end("FAILED")
        self._raised = len(self.errors)  # this line says it all
        return TrackingError(f"{reason}; run {run.run_id or '(never created)'} closed FAILED "
                             f"with its first {kept or 0} loss values")


_stop_reason: Optional[str] = None


def _raise_recorder_lost(signum, frame):
    global _stop_reason
    reason, _stop_reason = _stop_reason, None
    if reason is not None:
        raise RecorderLost(reason)


class Run:
    """One tracked run; every call only queues a message."""

    def __init__(self, recorder: RecorderProcess, key: int):
        self.recorder, self.key = recorder, key

    def log_losses(self, first_step: int, values: list, stamps: list) -> None:
        self.recorder._send(("losses_batch", self.key, first_step, list(values), list(stamps)))

    def log_series(self, key: str, first_step: int, values: list, stamps: list) -> None:
        """A metric at consecutive steps from first_step (e.g. `lr`), sent as one message."""
        self.recorder._send(("metrics", self.key, [(key, float(v), ts, first_step + i)
                                                   for i, (v, ts) in enumerate(zip(values, stamps))]))

    def log_metrics(self, metrics: dict, step: int, timestamp_ms: int) -> None:
        rows = [(k, float(v), timestamp_ms, step) for k, v in metrics.items()
                if v is not None and not math.isnan(float(v))]
        self.recorder._send(("metrics", self.key, rows))

    def set_tags(self, tags: dict) -> None:
        self.recorder._send(("tags", self.key, tags))

    def log_text(self, artifact_file: str, text: str) -> None:
        self.recorder._send(("text", self.key, artifact_file, text))

    def log_figures(self, x, y, y_fit, formula: str, title: str) -> None:
        self.recorder._send(("figures", self.key, x, y, y_fit, formula, title))

    def log_file(self, artifact_file: str, data: bytes) -> None:
        """An artifact made here (e.g. a PNG drawn by the training process)."""
        self.recorder._send(("file", self.key, artifact_file, data))

    def end(self, status: str) -> None:
        self.recorder._send(("end_run", self.key, status))

    def finish_sweep(self, status: str, expected: Optional[int] = None) -> None:
        """End a sweep's parent run, recording how its (expected number of) children ended."""
        self.recorder._send(("finish_sweep", self.key, status, expected))

    @property
    def run_id(self) -> Optional[str]:
        return self.recorder.run_ids.get(self.key)


_recorders: dict[tuple, RecorderProcess] = {}


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """A tracking server must answer before anything trains (MLflow would retry for minutes).

    Credentials (in the URI or MLflow's environment variables) are sent as MLflow sends them, so
    that a server behind authentication answers too.
    """
    from src.tracking.uri_secrets import http_auth

    if not uri.startswith(("http://", "https://")):
        return
    bare, headers = http_auth(uri)
    try:
        with urllib.request.urlopen(urllib.request.Request(bare.rstrip("/") + "/health",
                                                           headers=headers), timeout=timeout):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code in (401, 403):
            raise TrackingError(f"tracking server {redact(uri)} refused the credentials: "
                                f"HTTP {exc.code}") from None
        if exc.code >= 500:
            raise TrackingError(f"tracking server {redact(uri)} is not healthy: HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"tracking server {redact(uri)} is unreachable: {reason}") from None


def recorder_for(configured_uri: Optional[str], experiment: str,
                 log_dir: Optional[Union[str, Path]] = None,
                 figures_here: bool = True) -> RecorderProcess:
    """The process's recorder for this store and experiment, started on first use.

    log_dir: where MLflow's own output goes (the Hydra output folder), else the console.
    figures_here: whether the recorder will draw runs' figures (it then loads matplotlib while
    idle); whoever starts the recorder says.
    """
    uri = tracking_uri(configured_uri)
    key = (uri, experiment, os.getpid())
    if key not in _recorders:
        if not _recorders:
            atexit.register(close_all)
        log_path = Path(log_dir) / LOG_NAME if log_dir is not None else None
        _recorders[key] = RecorderProcess(uri, experiment, log_path, figures_here)
    return _recorders[key]


def close_all() -> list[str]:
    """Drain and stop every recorder; returns the errors nobody has seen yet."""
    unseen = []
    for recorder in list(_recorders.values()):
        recorder.close()
        unseen.extend(e for e in recorder.errors[recorder._raised:] if e not in unseen)
        recorder._raised = len(recorder.errors)
    _recorders.clear()
    return unseen

"""The training process's side of tracking: messages to the recorder process, never blocking.

One recorder per training process, shared by all jobs a launcher runs in it; it is closed (and
waited for) at exit, so when the command returns, every run is fully written.
"""

from __future__ import annotations

import atexit
import itertools
import math
import os
import pickle
import subprocess
import sys
import urllib.error
import urllib.request
from multiprocessing.connection import Connection
from typing import Optional, Union

from src.tracking.store import artifact_location, redact, tracking_uri

CLOSE_TIMEOUT_S = 300.0  # a long backlog (e.g. a big SQLite sweep) may take a while to drain


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


class Recorder:
    """Handle on the recorder process for one (tracking URI, experiment)."""

    def __init__(self, uri: str, experiment: str):
        self.uri, self.experiment = uri, experiment
        self._keys = itertools.count()
        self._tokens = itertools.count()
        self.run_ids: dict[int, str] = {}
        self.errors: list[str] = []
        self._raised = 0
        self.proc = _take_prestarted() or _spawn()
        # Length-framed messages on the raw pipes: nothing is buffered behind select()'s back.
        self._tx = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self._rx = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.proc.stdin.close()
        self.proc.stdout.close()
        self._send(("open", uri, experiment, artifact_location(uri)))

    # --- plumbing -----------------------------------------------------------------------------
    def _send(self, message) -> None:
        try:
            self._tx.send(message)
        except (BrokenPipeError, OSError):
            self.errors.append(f"tracking recorder for {redact(self.uri)} exited "
                               f"(code {self.proc.poll()})")

    def _take(self, reply) -> None:
        kind, *rest = reply
        if kind == "started":
            self.run_ids[rest[0]] = rest[1]
        elif kind == "error":
            self.errors.append(rest[1])
        elif kind == "synced" and rest[1]:
            if rest[1] not in self.errors:
                self.errors.append(rest[1])

    def _read(self):
        try:
            return self._rx.recv()
        except (EOFError, OSError, pickle.UnpicklingError):
            return None

    def poll(self) -> None:
        """Take replies already waiting; raise the first new error."""
        while self._readable(0):
            reply = self._read()
            if reply is None:
                break
            self._take(reply)
        self.raise_errors()

    def raise_errors(self) -> None:
        if len(self.errors) > self._raised:
            self._raised = len(self.errors)
            raise TrackingError(self.errors[self._raised - 1])

    def sync(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Wait until the recorder has written everything sent so far."""
        token = next(self._tokens)
        self._send(("sync", token))
        self._wait_for(lambda r: r[0] == "synced" and r[1] == token, timeout)
        self.raise_errors()

    def find_finished(self, config_hash: str, timeout: float = CLOSE_TIMEOUT_S):
        """(run id, final loss) of a FINISHED run with this config hash, or None (waits)."""
        token = next(self._tokens)
        self._send(("find_finished", token, config_hash))
        found = []
        self._wait_for(lambda r: r[0] == "found" and r[1] == token and not found.append(r),
                       timeout)
        self.raise_errors()
        return found[0][2] if found else None

    def record_skip(self, parent: Union[int, str], name: str, text: str) -> None:
        """Note on a sweep's parent run that a job was skipped (resume)."""
        self._send(("record_skip", parent, name, text))

    def _readable(self, timeout: float) -> bool:
        try:
            return self._rx.poll(timeout)
        except (EOFError, OSError):
            return False

    def _wait_for(self, done, timeout) -> None:
        while self.proc.poll() is None or self._readable(0):
            if not self._readable(timeout):
                self.errors.append(f"tracking recorder for {redact(self.uri)} did not answer "
                                   f"within {timeout:.0f} s")
                return
            reply = self._read()
            if reply is None:
                break
            self._take(reply)
            if done(reply):
                return
        self.errors.append(f"tracking recorder for {redact(self.uri)} exited "
                           f"(code {self.proc.poll()})")

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        if self.proc.poll() is None:
            self._send(("close",))
            self._wait_for(lambda r: r[0] == "closed", timeout)
            try:
                self._tx.close()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()

    # --- runs ---------------------------------------------------------------------------------
    def start_run(self, run_name: str, tags: dict, params: dict,
                  parent: Union[None, int, str] = None) -> "Run":
        """parent: a run id, or the key of a run this recorder started (no waiting for its id)."""
        self.poll()
        key = next(self._keys)
        self._send(("start_run", key, run_name, tags, params, parent))
        return Run(self, key)


class Run:
    """One tracked run; every call only queues a message."""

    def __init__(self, recorder: Recorder, key: int):
        self.recorder, self.key = recorder, key

    def log_losses(self, first_step: int, values: list, stamps: list) -> None:
        self.recorder._send(("losses_batch", self.key, first_step, list(values), list(stamps)))
        self.recorder.poll()  # a store that fails at start stops training at the first batch

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

    def log_group_figures(self, folder: str, x, y, losses, fits, title: str) -> None:
        """A seed group's loss and fit bands (src/vectorized/figures.py) under folder/."""
        self.recorder._send(("group_figures", self.key, folder, x, y, losses, fits, title))

    def end(self, status: str) -> None:
        self.recorder._send(("end_run", self.key, status))

    def finish_sweep(self, status: str, expected: Optional[int] = None) -> None:
        """End a sweep's parent run, recording how its (expected number of) children ended."""
        self.recorder._send(("finish_sweep", self.key, status, expected))

    @property
    def run_id(self) -> Optional[str]:
        return self.recorder.run_ids.get(self.key)


_recorders: dict[tuple, Recorder] = {}


def check_reachable(uri: str, timeout: float = 10.0) -> None:
    """A tracking server must answer before anything trains (MLflow would retry for minutes)."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=timeout):
            pass
    except urllib.error.HTTPError as exc:
        if exc.code >= 500:
            raise TrackingError(f"tracking server {redact(uri)} is not healthy: HTTP {exc.code}")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TrackingError(f"tracking server {redact(uri)} is unreachable: {reason}") from None


def recorder_for(configured_uri: Optional[str], experiment: str) -> Recorder:
    """The process's recorder for this store and experiment, started on first use."""
    uri = tracking_uri(configured_uri)
    key = (uri, experiment, os.getpid())
    if key not in _recorders:
        check_reachable(uri)
        if not _recorders:
            atexit.register(close_all)
        _recorders[key] = Recorder(uri, experiment)
    return _recorders[key]


def close_all() -> list[str]:
    """Drain and stop every recorder; returns the errors nobody has seen yet."""
    unseen = []
    for recorder in list(_recorders.values()):
        recorder.close()
        unseen.extend(recorder.errors[recorder._raised:])
        recorder._raised = len(recorder.errors)
    _recorders.clear()
    return unseen

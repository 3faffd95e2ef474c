"""Runs that go wrong: divergence (single run and in a sweep) and interrupts (SIGINT, SIGTERM).

A diverging run stops at the first non-finite loss, keeps its curve up to there, ends FAILED with
diverged=true and diverged_step, and the command still exits 0 (a sweep goes on to its next
job). An interrupted run exits 130 (SIGINT) or 143 (SIGTERM), is marked KILLED (never left
RUNNING), and its loss history so far is stored.
"""

from __future__ import annotations

import array
import fcntl
import math
import os
import re
import signal
import termios
import threading
import time

import pytest
from conftest import SWEEP_TAG, CliResult, loss_history, run_many

pytestmark = pytest.mark.slow

LOSS_LINE = re.compile(r"^(\d+) (\S+)$")
LINES_BEFORE_SIGNAL = 3


# --- divergence ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def divergence(make_store):
    single, sweep = make_store("diverge-single"), make_store("diverge-sweep")
    results = run_many([(single, ["experiment=numpy", "lr=1"]),
                        (sweep, ["-m", "experiment=numpy", "lr=1,1e-6"])])
    return {"single": (single, results[0]), "sweep": (sweep, results[1])}


def assert_diverged(client, run):
    tags = run.data.tags
    assert run.info.status == "FAILED", run.info.status
    assert tags.get("diverged") == "true"
    assert "diverged_step" in tags, tags
    step = int(tags["diverged_step"])
    assert 0 < step < int(run.data.params["steps"])
    history = loss_history(client, run.info.run_id)
    assert len(history) == step, f"history {len(history)} values, diverged at step {step}"
    assert [s for s, _ in history] == list(range(step))
    assert all(math.isfinite(v) for _, v in history)
    assert "final_loss" not in run.data.metrics or not math.isfinite(
        run.data.metrics["final_loss"])


def test_divergence_single_run(divergence):
    store, result = divergence["single"]
    assert result.returncode == 0, result.describe()
    runs = store.runs()
    assert len(runs) == 1
    assert_diverged(store.client(), runs[0])
    assert "diverged" in result.stdout + result.stderr


def test_divergence_in_a_sweep_does_not_stop_it(divergence):
    store, result = divergence["sweep"]
    assert result.returncode == 0, result.describe()
    jobs = {float(r.data.params["lr"]): r for r in store.job_runs()}
    assert sorted(jobs) == [1e-6, 1.0]
    client = store.client()
    assert_diverged(client, jobs[1.0])
    ok = jobs[1e-6]
    assert ok.info.status == "FINISHED"
    assert ok.data.tags["diverged"] == "false"
    assert len(loss_history(client, ok.info.run_id)) == 2000


# --- interrupts -----------------------------------------------------------------------------------

DYNAMIC = ["experiment=dynamic", "log_every=100", "steps=10000"]  # a loss line every 100 steps
# A loss line every step and a reader that stops reading: the 64 KiB stdout pipe fills up and the
# training process is blocked writing a log line when the signal comes (as with `| less`).
DYNAMIC_CHATTY = ["experiment=dynamic", "log_every=1", "steps=6000"]


def pipe_bytes(fd: int) -> int:
    buf = array.array("i", [0])
    fcntl.ioctl(fd, termios.FIONREAD, buf)
    return buf[0]


def wait_until_pipe_full(proc, timeout_s: float = 90.0) -> None:
    """Stop reading until the child's stdout pipe is full: it is then blocked writing a line."""
    fd = proc.stdout.fileno()
    capacity = fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    deadline = time.monotonic() + timeout_s
    while pipe_bytes(fd) < capacity - 256 and proc.poll() is None:
        assert time.monotonic() < deadline, "the stdout pipe never filled up"
        time.sleep(0.05)
    time.sleep(0.2)


def interrupt(store, args, signum, block_stdout: bool = False):
    """Start a long run, read a few printed losses line by line, then send the signal.

    The signal goes out as soon as the last of those lines is read or, with block_stdout, once
    nothing more has been read for so long that the child is blocked writing to its stdout.
    """
    proc = store.popen(args)
    printed, seen = {}, []
    try:
        for line in proc.stdout:  # PYTHONUNBUFFERED=1: lines arrive as they are printed
            seen.append(line)
            m = LOSS_LINE.match(line.strip())
            if m:
                printed[int(m.group(1))] = m.group(2)
                if len(printed) >= LINES_BEFORE_SIGNAL:
                    break
        if block_stdout:
            wait_until_pipe_full(proc)
        running = proc.poll() is None
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    result = CliResult(list(args), proc.returncode, "".join(seen) + out, err)
    assert len(printed) >= LINES_BEFORE_SIGNAL, f"too few loss lines\n{result.describe()}"
    assert running, "the run ended before it could be interrupted"
    return result, printed


@pytest.mark.parametrize("args, signum, code, block_stdout", [
    (DYNAMIC, signal.SIGINT, 130, False),  # lands right after a line is printed
    (DYNAMIC, signal.SIGTERM, 143, False),
    (DYNAMIC_CHATTY, signal.SIGINT, 130, True),  # lands while a log line is being written
    (DYNAMIC_CHATTY, signal.SIGTERM, 143, True),
], ids=["SIGINT", "SIGTERM", "SIGINT-stdout-blocked",
        "SIGTERM-stdout-blocked"])
def test_interrupt_keeps_history_and_kills_run(store, args, signum, code, block_stdout):
    result, printed = interrupt(store, args, signum, block_stdout)
    runs = store.runs()
    assert len(runs) == 1
    run = runs[0]
    client = store.client()
    history = loss_history(client, run.info.run_id)
    steps = int(run.data.params["steps"])
    assert result.returncode == code, (
        f"{signal.Signals(signum).name} should exit {code}, got {result.returncode}; the run "
        f"ended {run.info.status} after {len(history)} of {steps} steps (the signal was "
        f"swallowed and training went on)\n" + result.describe())
    assert run.info.status == "KILLED", run.info.status
    assert len(history) >= max(printed) + 1
    assert len(history) < steps, "the run was not stopped"
    assert [s for s, _ in history] == list(range(len(history)))
    for t, text in printed.items():
        assert history[t][1] == float(text)


# --- a process of the pair dies -------------------------------------------------------------------

LONG_DYNAMIC = ["experiment=dynamic", "log_every=100", "steps=400000"]
STORED_BEFORE_KILL = 5000  # one batch of losses (trainer.FLUSH_EVERY) in the store first


def stored_losses(store) -> list[int]:
    """How many loss values each run has in the store so far."""
    import sqlite3

    if not store.db.exists():
        return []
    try:
        with sqlite3.connect(store.db, timeout=5) as conn:
            return [n for (n,) in conn.execute(
                "SELECT count(*) FROM metrics WHERE key = 'loss' GROUP BY run_uuid")]
    except sqlite3.Error:  # the tables are being created
        return []


def recorder_of(pid: int) -> int:
    """The recorder process a training process started (a child running src.tracking.recorder)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if ppid == pid and b"src.tracking.recorder" in cmdline:
            return int(entry)
    raise AssertionError(f"no recorder process under pid {pid}")


class Printed:
    """Reads a child's stdout in a thread, keeping the highest loss step printed so far."""

    def __init__(self, proc):
        self.lines, self.last_step = [], -1
        self.thread = threading.Thread(target=self.read, args=(proc,), daemon=True)
        self.thread.start()

    def read(self, proc):
        for line in proc.stdout:
            self.lines.append(line)
            m = LOSS_LINE.match(line.strip())
            if m:
                self.last_step = int(m.group(1))


def start_and_wait_for_stored_losses(store, args, runs: int = 1):
    """Start the CLI; return once each of its `runs` training runs has a batch in the store (a
    vectorized group's members are flushed one after another, so one can lag the others)."""
    proc = store.popen(args)
    printed = Printed(proc)
    deadline = time.monotonic() + 300
    while sum(n >= STORED_BEFORE_KILL for n in stored_losses(store)) < runs:
        assert proc.poll() is None, f"the run ended early:\n{''.join(printed.lines)[-2000:]}"
        assert time.monotonic() < deadline, "no losses reached the store"
        time.sleep(0.2)
    return proc, printed


def assert_prefix_curve(store, run, at_least: int) -> list:
    history = loss_history(store.client(), run.info.run_id)
    assert len(history) >= at_least, f"{len(history)} loss values kept"
    assert [s for s, _ in history] == list(range(len(history))), "the curve has a gap"
    return history


def run_and_kill_recorder(store, args, runs: int = 1) -> tuple[CliResult, int, int]:
    """Start the CLI, kill -9 its recorder once losses of its `runs` runs are in the store, wait
    for the CLI: (its result, the last step it had printed when the recorder died, the last it
    printed)."""
    proc, printed = start_and_wait_for_stored_losses(store, args, runs)
    try:
        os.kill(recorder_of(proc.pid), signal.SIGKILL)
        step_at_kill = printed.last_step
        proc.wait(timeout=180)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    printed.thread.join(timeout=10)
    result = CliResult(list(args), proc.returncode, "".join(printed.lines), err)
    return result, step_at_kill, printed.last_step


def test_recorder_killed_stops_training_and_fails_the_run(store):
    result, step_at_kill, last_step = run_and_kill_recorder(store, LONG_DYNAMIC)
    assert result.returncode == 1, result.describe()
    lines = result.stderr_lines
    assert len(lines) == 1, f"expected one error line\n{result.describe()}"
    assert lines[0].startswith(f"error: tracking recorder for {store.uri} died (killed by "
                               f"SIGKILL)"), lines[0]
    assert "closed FAILED" in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    # training stopped at once: a few hundred steps at most went by after the kill
    assert last_step - step_at_kill < 2000, (step_at_kill, last_step)
    runs = store.runs()
    assert len(runs) == 1
    assert runs[0].info.status == "FAILED", runs[0].info.status
    history = assert_prefix_curve(store, runs[0], STORED_BEFORE_KILL)
    assert len(history) < 400000
    assert f"its first {len(history)} loss values" in lines[0], (len(history), lines[0])


def test_training_process_killed_leaves_run_killed(store):
    proc, printed = start_and_wait_for_stored_losses(store, LONG_DYNAMIC)
    recorder = recorder_of(proc.pid)
    proc.kill()
    proc.wait(timeout=60)
    deadline = time.monotonic() + 120
    while os.path.exists(f"/proc/{recorder}") and time.monotonic() < deadline:
        time.sleep(0.2)  # the orphaned recorder closes the run, then ends
    runs = store.runs()
    assert len(runs) == 1
    assert runs[0].info.status == "KILLED", runs[0].info.status
    assert_prefix_curve(store, runs[0], STORED_BEFORE_KILL)


# --- a launcher that cannot submit ----------------------------------------------------------------

FAKE_SBATCH = """#!/bin/sh
echo "sbatch: error: Memory specification can not be satisfied" >&2
echo "sbatch: error: Batch job submission failed: Requested node configuration is not available" >&2
exit 1
"""


def test_refused_submission_fails_the_sweep_at_once(store, tmp_path):
    """sbatch refuses the jobs (here a stand-in on PATH; tests/test_slurm.py does it for real)."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    env = store.env(PATH=f"{bindir}:{os.environ['PATH']}")
    args = ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=cpu", "experiment=numpy",
            "seed=0,1"]
    result = store.run_cli(*args, env=env, timeout=150)  # the parent once waited 300 s
    assert result.returncode == 1, result.describe()
    lines = result.stderr_lines
    assert len(lines) == 1, f"expected one error line\n{result.describe()}"
    assert lines[0].startswith("error: the launcher failed: "), lines[0]
    assert "Memory specification can not be satisfied" in lines[0], lines[0]
    assert "launcher.log" in lines[0], lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    runs = store.runs()
    assert len(runs) == 1 and runs[0].data.tags.get("harness.sweep") == "true", runs
    assert runs[0].info.status == "FAILED", runs[0].info.status
    assert runs[0].data.metrics.get("n_jobs") == 0


def test_recorder_killed_fails_every_member_of_a_vectorized_group(store):
    args = ["-m", "hydra/launcher=vectorized", *LONG_DYNAMIC, "seed=0,1"]
    result, _, _ = run_and_kill_recorder(store, args, runs=2)
    assert result.returncode == 1, result.describe()
    (line,) = result.stderr_lines
    assert line.startswith(f"error: tracking recorder for {store.uri} died (killed by SIGKILL)")
    assert "closed FAILED" in line and "the other 1 runs of its vectorized group" in line, line
    members = store.job_runs()
    assert len(members) == 2
    for run in members:  # no member left RUNNING
        assert run.info.status == "FAILED", run.info.status
        assert_prefix_curve(store, run, STORED_BEFORE_KILL)
    (parent,) = [r for r in store.runs() if r.data.tags.get(SWEEP_TAG) == "true"]
    assert parent.info.status == "FAILED"

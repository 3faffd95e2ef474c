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
import re
import signal
import termios
import time

import pytest
from conftest import CliResult, loss_history, run_many

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

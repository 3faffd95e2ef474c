"""Chaos: a 16-job joblib sweep (4 workers) while training processes and recorders are killed.

A seeded killer picks victims at random among the sweep's processes (joblib's worker processes,
which train, and every recorder process, the sweep's own included), a bounded number of times.
Afterwards no run is RUNNING, every FINISHED run has its full loss curve, and the parent's counts
match what the store holds. Re-running the same command with resume=true completes the rest
without duplicating anything.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import pytest
from conftest import SWEEP_TAG, loss_history

pytestmark = pytest.mark.slow

SEED = 20261130
KILLS = 3
JOBS = 16
STEPS = 12000
ARGS = ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "experiment=autograd",
        f"seed=range({JOBS})", f"steps={STEPS}", "resume=true"]
COUNTED = {"FINISHED": "n_finished", "KILLED": "n_killed"}


def descendants(pid: int) -> dict:
    """pid -> command line of every process under `pid` (recorders are in their own sessions,
    but still our children)."""
    parents, cmdlines = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    cmdlines[int(entry)] = f.read().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {}, [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current and child not in found:
                found[child] = cmdlines.get(child, "")
                frontier.append(child)
    return found


def victims(pid: int) -> list:
    return sorted(p for p, cmd in descendants(pid).items()
                  if "src.tracking.recorder" in cmd or "loky" in cmd)


class Killer(threading.Thread):
    def __init__(self, proc, rng: random.Random):
        super().__init__(daemon=True)
        self.proc, self.rng = proc, rng
        self.killed: list = []
        self.recorders: set = set()

    def run(self) -> None:
        while len(self.killed) < KILLS and self.proc.poll() is None:
            time.sleep(self.rng.uniform(2.0, 5.0))
            found = victims(self.proc.pid)
            self.recorders.update(p for p, cmd in descendants(self.proc.pid).items()
                                  if "src.tracking.recorder" in cmd)
            if found and self.proc.poll() is None:
                victim = self.rng.choice(found)
                try:
                    os.kill(victim, signal.SIGKILL)
                    self.killed.append(victim)
                except ProcessLookupError:
                    pass


def settle(pids, timeout_s: float = 120) -> None:
    """Orphaned recorders close their runs (KILLED) and then end: wait for them."""
    deadline = time.monotonic() + timeout_s
    while any(os.path.exists(f"/proc/{p}") for p in pids) and time.monotonic() < deadline:
        time.sleep(0.2)


def check_store(store) -> tuple[list, list]:
    runs = store.runs()
    parents = [r for r in runs if r.data.tags.get(SWEEP_TAG) == "true"]
    jobs = [r for r in runs if r.data.tags.get(SWEEP_TAG) != "true"]
    assert "RUNNING" not in {r.info.status for r in runs}, \
        [(r.info.run_name, r.info.status) for r in runs]
    client = store.client()
    for run in jobs:
        if run.info.status == "FINISHED":
            steps = [s for s, _ in loss_history(client, run.info.run_id)]
            assert steps == list(range(STEPS)), f"{run.info.run_name}: {len(steps)} losses"
    for parent in parents:
        children = [r for r in jobs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        for status, metric in COUNTED.items():
            held = sum(c.info.status == status for c in children)
            assert parent.data.metrics.get(metric) == held, (
                f"parent {parent.info.run_name}: {metric}={parent.data.metrics.get(metric)}, "
                f"the store holds {held} {status} children")
        assert parent.data.metrics.get("n_running") == 0
    return parents, jobs


def test_chaos_sweep_then_resume(store):
    rng = random.Random(SEED)
    proc = store.popen(ARGS)
    killer = Killer(proc, rng)
    killer.start()
    try:
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    killer.join(timeout=10)
    settle(killer.recorders)
    assert killer.killed, f"nothing was killed (exit {proc.returncode})\n{err[-2000:]}"
    assert "Traceback" not in err, err[-4000:]
    check_store(store)

    again = store.run_cli(*ARGS, timeout=900)
    assert again.returncode == 0, again.describe()
    parents, jobs = check_store(store)
    finished = sorted(int(r.data.params["seed"]) for r in jobs if r.info.status == "FINISHED")
    assert finished == list(range(JOBS)), f"FINISHED seeds {finished}: duplicated or missing"
    last = max(parents, key=lambda p: p.info.start_time)
    assert last.info.status == "FINISHED"
    assert last.data.metrics["n_finished"] + last.data.metrics["n_skipped"] == JOBS

"""Scale-out: the same harness under other Hydra launchers, the Optuna sweeper, and under stress.

Every CLI command runs as a subprocess against its own fresh SQLite store inside this module's
temporary folder (Hydra's output folders too), and the stores are read back with MlflowClient:
  * joblib workers and submitit processes record the same runs, parent and children, with the same
    params and bit-identical loss curves as the basic launcher;
  * 16 jobs x 2000 steps, 4 writers at once, lose no row and never report "database is locked";
  * resume=true after a Ctrl-C skips what FINISHED and re-runs only the rest;
  * Optuna on a tiny budget: its "Best value" is the best child's final loss;
  * an unreachable tracking server is refused before anything trains;
  * the ready SLURM launcher config composes.

The long sweeps are independent, so they are started together (a few at a time) as soon as the
first test that needs one asks for it, and each test waits only for its own.
"""

from __future__ import annotations

import math
import queue
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pytest
import yaml

from tests.helpers import environment_without_mlflow, free_port

REPO_ROOT = Path(__file__).resolve().parents[1]
CLI_TIMEOUT_S = 600
MAX_PARALLEL = 3  # sweeps running at once in the background (the machine may have 2 cores)
SWEEP_TAG = "harness.sweep"
PARENT_TAG = "mlflow.parentRunId"
ARTIFACTS = {"config.yaml", "overrides.yaml", "loss_curve.png", "fit.png"}
COUNTS = ("n_jobs", "n_finished", "n_diverged", "n_failed", "n_killed", "n_running", "n_skipped")
LOSS_LINE = re.compile(r"^\d+ \S+$")
LAUNCH_LINE = re.compile(r"#(\d+) : ")

# The background sweeps: name -> command-line arguments (Hydra's folders are added per call).
SCENARIOS = {
    "stress_sweep": ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=4", "experiment=autograd",
               "seed=range(16)"],
    "joblib_sweep": ["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "experiment=autograd",
               "seed=range(4)", "steps=300"],
    # the basic launcher's reference runs for both launcher comparisons (one sweep, two jobs)
    "basic_sweep": ["-m", "experiment=autograd,numpy", "seed=0", "steps=300"],
    "submitit_sweep": ["-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5",
                 "experiment=numpy", "seed=0,1", "steps=300"],
    "optuna_sweep": ["-m", "hydra/sweeper=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=1",
               "experiment=autograd", "steps=200", "lr=tag(log, interval(1e-7, 1e-5))"],
}
LR_LOW, LR_HIGH = 1e-7, 1e-5

pytestmark = pytest.mark.slow


# --- running the CLI ------------------------------------------------------------------------------

@dataclass
class Result:
    args: list
    returncode: Optional[int]
    stdout: str
    stderr: str
    elapsed_s: float
    uri: Optional[str] = None

    def describe(self) -> str:
        return (f"`python -m src.train {' '.join(self.args)}` exited {self.returncode} "
                f"after {self.elapsed_s:.1f} s\n--- stdout (tail) ---\n{self.stdout[-2000:]}\n"
                f"--- stderr (tail) ---\n{self.stderr[-4000:]}")

    @property
    def stderr_lines(self) -> list:
        return [line for line in self.stderr.splitlines() if line.strip()]


@dataclass
class Job:
    name: str
    args: list
    uri: str
    proc: Optional[subprocess.Popen] = None
    out: Optional[Path] = None
    err: Optional[Path] = None
    started: float = 0.0
    elapsed_s: Optional[float] = None
    killed: bool = False
    error: Optional[str] = None  # the background runner itself failed
    done: threading.Event = field(default_factory=threading.Event)



def child_env(uri: Optional[str]) -> dict:
    env = environment_without_mlflow()
    if uri is not None:
        env["MLFLOW_TRACKING_URI"] = uri
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Runner:
    """Runs the CLI in fresh stores under `root`; background sweeps at most MAX_PARALLEL at once."""

    def __init__(self, root: Path):
        self.root = root
        self.cwd = root / "elsewhere"  # not the repository: nothing may depend on the cwd
        self.cwd.mkdir(parents=True, exist_ok=True)
        self._calls = 0
        self._lock = threading.RLock()
        self.jobs: dict[str, Job] = {}
        self._queue: list[str] = []
        self._pump: Optional[threading.Thread] = None

    # stores and command lines
    def store(self, name: str) -> str:
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{folder / 'mlflow.db'}"

    def argv(self, args: list) -> list:
        with self._lock:
            n = self._calls
            self._calls += 1
        dirs = [f"hydra.run.dir={self.root}/hydra/{n}",
                f"hydra.sweep.dir={self.root}/hydra/{n}-multirun"]
        # the overrides before any flag: argparse takes positionals only in one stretch
        head, rest = (["-m"], args[1:]) if args[:1] == ["-m"] else ([], args)
        return [sys.executable, "-m", "src.train", *head, *dirs, *rest]

    def popen(self, args: list, uri: Optional[str], **kw) -> subprocess.Popen:
        return subprocess.Popen(self.argv(args), cwd=self.cwd, env=child_env(uri), **kw)

    def run(self, args: list, uri: Optional[str], timeout: float = CLI_TIMEOUT_S) -> Result:
        start = time.monotonic()
        proc = self.popen(args, uri, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"`{' '.join(args)}` did not end within {timeout} s\n{out[-2000:]}\n"
                        f"{err[-2000:]}")
        return Result(args, proc.returncode, out, err, time.monotonic() - start, uri)

    # background sweeps
    def submit(self, names) -> None:
        with self._lock:
            for name in names:
                if name not in self.jobs:
                    self.jobs[name] = Job(name, SCENARIOS[name], self.store(name))
                    self._queue.append(name)
            if self._pump is None and self._queue:
                self._pump = threading.Thread(target=self._run_queue, daemon=True)
                self._pump.start()

    def _start(self, job: Job) -> None:
        folder = self.root / job.name
        job.out, job.err = folder / "stdout.txt", folder / "stderr.txt"
        with open(job.out, "w") as out, open(job.err, "w") as err:
            job.started = time.monotonic()
            job.proc = self.popen(job.args, job.uri, stdout=out, stderr=err)

    def _run_queue(self) -> None:
        try:
            self._pump_until_idle()
        except BaseException as exc:  # never leave a test waiting on a dead pump
            with self._lock:
                self._queue.clear()
                self._pump = None
                for job in self.jobs.values():
                    if not job.done.is_set():
                        job.error = f"{type(exc).__name__}: {exc}"
                        job.done.set()
            raise

    def _pump_until_idle(self) -> None:
        while True:
            with self._lock:
                running = [j for j in self.jobs.values() if j.proc and not j.done.is_set()]
                for job in running:
                    code = job.proc.poll()
                    overdue = time.monotonic() - job.started > CLI_TIMEOUT_S
                    if code is None and overdue:
                        job.proc.kill()
                        job.killed = True
                        job.proc.wait()
                    if job.proc.poll() is not None:
                        job.elapsed_s = time.monotonic() - job.started
                        job.done.set()
                running = [j for j in running if not j.done.is_set()]
                while self._queue and len(running) < MAX_PARALLEL:
                    job = self.jobs[self._queue.pop(0)]
                    self._start(job)
                    running.append(job)
                if not self._queue and not running:
                    self._pump = None
                    return
            time.sleep(0.2)

    def result(self, name: str) -> Result:
        self.submit([name])
        job = self.jobs[name]
        assert job.done.wait(CLI_TIMEOUT_S * 3), f"{name}: never finished"
        if job.error is not None:
            pytest.fail(f"{name}: could not be run: {job.error}")
        res = Result(job.args, job.proc.returncode, job.out.read_text(), job.err.read_text(),
                     job.elapsed_s, job.uri)
        if job.killed:
            pytest.fail(f"{name}: killed after {CLI_TIMEOUT_S} s\n{res.describe()}")
        return res

    def stop_all(self) -> None:
        with self._lock:
            self._queue.clear()
            for job in self.jobs.values():
                if job.proc is not None and job.proc.poll() is None:
                    job.proc.kill()
                    job.proc.wait()


# --- reading a store back -------------------------------------------------------------------------

def client_for(uri: str):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def all_runs(client) -> list:
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, max_results=5000)


def split_runs(runs: list) -> tuple[list, list]:
    """(sweep parents, everything else)."""
    parents = [r for r in runs if r.data.tags.get(SWEEP_TAG) == "true"]
    return parents, [r for r in runs if r.data.tags.get(SWEEP_TAG) != "true"]


def only_parent(runs: list):
    parents, _ = split_runs(runs)
    assert len(parents) == 1, f"expected one sweep parent run, found {len(parents)}"
    return parents[0]


def children_of(runs: list, parent) -> list:
    return [r for r in runs if r.data.tags.get(PARENT_TAG) == parent.info.run_id]


def seed(run) -> int:
    return int(run.data.params["seed"])


def counts(run) -> dict:
    return {k: run.data.metrics.get(k) for k in COUNTS}


def expected_counts(**nonzero) -> dict:
    return {k: float(nonzero.get(k[2:], 0)) for k in COUNTS}


def loss_history(client, run_id: str) -> list:
    return sorted(client.get_metric_history(run_id, "loss"), key=lambda m: m.step)


def assert_complete_run(client, run, steps: int) -> list:
    """FINISHED, a loss value at every step 0..steps-1 (once each), all artifacts; the history."""
    name = f"run {run.info.run_name} ({run.info.run_id})"
    assert run.info.status == "FINISHED", f"{name}: {run.info.status}"
    history = loss_history(client, run.info.run_id)
    got = [m.step for m in history]
    assert got == list(range(steps)), (
        f"{name}: {len(got)} loss values, steps {got[:3]}...{got[-3:]}; expected 0..{steps - 1}")
    assert run.data.metrics.get("final_loss") == history[-1].value, name
    for key in ("optimum_loss", "gap", "wall_time_s"):
        assert key in run.data.metrics, f"{name}: no metric {key}"
    assert any(k.startswith("coef/") for k in run.data.metrics), f"{name}: no coef/* metrics"
    tags = run.data.tags
    assert tags.get("diverged") == "false" and tags.get("config_hash") and tags.get("formula") \
        and tags.get("device") and tags.get("variant"), f"{name}: tags {tags}"
    artifacts = {a.path: a for a in client.list_artifacts(run.info.run_id)}
    missing = ARTIFACTS - set(artifacts)
    assert not missing, f"{name}: missing artifacts {sorted(missing)}; has {sorted(artifacts)}"
    assert all(artifacts[a].file_size for a in ARTIFACTS), f"{name}: an empty artifact"
    return history


def bits(history: list) -> list:
    return [float(m.value).hex() for m in history]


def assert_sweep(result: Result, n_jobs: int, steps: int, seeds: set):
    """A finished sweep: one parent, n_jobs children linked to it, each complete."""
    assert result.returncode == 0, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    client = client_for(result.uri)
    runs = all_runs(client)
    parent = only_parent(runs)
    assert parent.info.status == "FINISHED", parent.info.status
    assert counts(parent) == expected_counts(jobs=n_jobs, finished=n_jobs), counts(parent)
    children = children_of(runs, parent)
    assert len(children) == n_jobs and len(runs) == n_jobs + 1, (
        f"{len(children)} children of the parent, {len(runs)} runs in all")
    assert {seed(c) for c in children} == seeds
    histories = {seed(c): assert_complete_run(client, c, steps) for c in children}
    return client, parent, children, histories


# --- fixtures -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def runner(tmp_path_factory):
    r = Runner(tmp_path_factory.mktemp("scale_out"))
    yield r
    r.stop_all()


@pytest.fixture(scope="module")
def sweeps(request, runner):
    """Starts every background sweep that a selected test of this module will need."""
    wanted = {name for item in request.session.items if item.module is request.module
              for name in getattr(item, "fixturenames", ()) if name in SCENARIOS}
    runner.submit([name for name in SCENARIOS if name in wanted])
    return runner


@pytest.fixture(scope="module")
def stress_sweep(sweeps):
    return sweeps.result("stress_sweep")


@pytest.fixture(scope="module")
def joblib_sweep(sweeps):
    return sweeps.result("joblib_sweep")


@pytest.fixture(scope="module")
def basic_sweep(sweeps):
    return sweeps.result("basic_sweep")


@pytest.fixture(scope="module")
def basic(basic_sweep):
    result = basic_sweep
    assert result.returncode == 0, result.describe()
    client = client_for(result.uri)
    runs = all_runs(client)
    parent = only_parent(runs)
    children = children_of(runs, parent)
    by_variant = {c.data.tags.get("variant"): c for c in children}
    assert set(by_variant) == {"autograd", "numpy"} and len(children) == 2, by_variant
    return {variant: (run, assert_complete_run(client, run, 300))
            for variant, run in by_variant.items()}


@pytest.fixture(scope="module")
def submitit_sweep(sweeps):
    return sweeps.result("submitit_sweep")


@pytest.fixture(scope="module")
def optuna_sweep(sweeps):
    return sweeps.result("optuna_sweep")


# --- fast checks first (nothing in the background yet) ----------------------------------------

def test_slurm_launcher_config_composes(runner):
    result = runner.run(["hydra/launcher=slurm", "experiment=numpy", "--cfg", "hydra",
                         "-p", "hydra.launcher"], uri=None, timeout=120)
    assert result.returncode == 0, result.describe()
    launcher = yaml.safe_load(result.stdout)
    assert isinstance(launcher, dict), result.stdout
    assert launcher.get("_target_") == \
        "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher", launcher
    assert "timeout_min" in launcher and isinstance(launcher["timeout_min"], int), launcher
    assert "partition" in launcher, launcher


@pytest.mark.parametrize("args", [["experiment=numpy"], ["-m", "experiment=numpy,tensor"]],
                         ids=["single", "sweep"])
def test_unreachable_server_is_refused_before_training(runner, args):
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    result = runner.run([*args, f"tracking.uri={server}"], uri=None, timeout=120)
    assert result.returncode == 1, result.describe()
    prefix = f"error: tracking server {server}"
    errors = [line for line in result.stderr_lines if line.startswith(prefix)]
    assert len(errors) == 1 and "unreachable" in errors[0], result.describe()
    assert result.stderr_lines == errors, f"more than the one error line:\n{result.stderr}"
    assert "Result:" not in result.stdout, result.describe()
    assert not [l for l in result.stdout.splitlines() if LOSS_LINE.match(l)], result.describe()
    # No wall-clock assertion (noisy machines): MLflow's own retries take minutes, which the
    # 120 s timeout above already refuses.


# --- other launchers ------------------------------------------------------------------------------

def test_joblib_sweep_matches_basic_launcher(joblib_sweep, basic):
    client, parent, children, histories = assert_sweep(joblib_sweep, 4, 300, {0, 1, 2, 3})
    job0 = next(c for c in children if seed(c) == 0)
    ref_run, ref_history = basic["autograd"]
    assert job0.data.params == ref_run.data.params, (
        f"params differ between launchers:\n joblib: {job0.data.params}\n"
        f" basic:  {ref_run.data.params}")
    assert bits(histories[0]) == bits(ref_history), "seed 0 loss curves differ between launchers"
    assert job0.data.tags["config_hash"] == ref_run.data.tags["config_hash"]
    # different seeds did different things
    assert len({tuple(bits(h)) for h in histories.values()}) == 4


def test_submitit_local_sweep_matches_basic_launcher(submitit_sweep, basic):
    client, parent, children, histories = assert_sweep(submitit_sweep, 2, 300, {0, 1})
    job0 = next(c for c in children if seed(c) == 0)
    ref_run, ref_history = basic["numpy"]
    assert job0.data.params == ref_run.data.params, (
        f"params differ between launchers:\n submitit: {job0.data.params}\n"
        f" basic:    {ref_run.data.params}")
    assert bits(histories[0]) == bits(ref_history), "seed 0 loss curves differ between launchers"
    assert histories[0] != histories[1]


# --- SQLite under concurrent writers --------------------------------------------------------------

def test_sqlite_stress_16_jobs_4_writers(stress_sweep):
    stress = stress_sweep
    for text in (stress.stdout, stress.stderr):
        assert "database is locked" not in text.lower(), stress.describe()
    client, parent, children, histories = assert_sweep(stress, 16, 2000, set(range(16)))
    assert sum(len(h) for h in histories.values()) == 32_000
    db = stress.uri[len("sqlite:///"):]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT run_uuid, count(*), count(DISTINCT step), min(step), max(step)"
                            " FROM metrics WHERE key = 'loss' GROUP BY run_uuid").fetchall()
    assert sorted(rows) == sorted((c.info.run_id, 2000, 2000, 0, 1999) for c in children), rows


# --- resume after Ctrl-C --------------------------------------------------------------------------

RESUME_ARGS = ["-m", "experiment=autograd", "seed=range(6)", "steps=1500", "resume=true"]


def interrupt_during_third_job(runner: Runner, uri: str, loss_lines: int = 2,
                               timeout: float = CLI_TIMEOUT_S) -> Result:
    """Start the resume sweep, SIGINT it once job #2 has printed `loss_lines` loss lines."""
    err_path = Path(uri[len("sqlite:///"):]).parent / "interrupted.stderr"
    start = time.monotonic()
    with open(err_path, "w") as err:
        proc = runner.popen(RESUME_ARGS, uri, stdout=subprocess.PIPE, stderr=err, text=True,
                            bufsize=1)
    lines: queue.SimpleQueue = queue.SimpleQueue()
    seen: list[str] = []

    def read():
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    in_third, printed, sent = False, 0, False
    try:
        while not sent:
            left = timeout - (time.monotonic() - start)
            try:
                line = lines.get(timeout=max(left, 0.1))
            except queue.Empty:
                pytest.fail("no progress from the sweep:\n" + "\n".join(seen[-30:]))
            if line is None:
                pytest.fail("the sweep ended before job #2 ran:\n" + "\n".join(seen[-30:])
                            + "\n" + err_path.read_text()[-3000:])
            seen.append(line)
            launch = LAUNCH_LINE.search(line)
            if launch:
                in_third = int(launch.group(1)) == 2
            elif in_third and LOSS_LINE.match(line):
                printed += 1
                if printed >= loss_lines:
                    proc.send_signal(signal.SIGINT)
                    sent = True
        proc.wait(timeout=max(timeout - (time.monotonic() - start), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(timeout=10)
    while True:
        try:
            line = lines.get_nowait()
        except queue.Empty:
            break
        if line is not None:
            seen.append(line)
    return Result(RESUME_ARGS, proc.returncode, "\n".join(seen), err_path.read_text(),
                  time.monotonic() - start, uri)


def test_resume_after_interrupt_skips_finished_jobs(runner):
    uri = runner.store("resume")
    first = interrupt_during_third_job(runner, uri)
    assert first.returncode == 130, first.describe()
    client = client_for(uri)
    runs = all_runs(client)
    parent1 = only_parent(runs)
    assert parent1.info.status == "KILLED", parent1.info.status
    children1 = children_of(runs, parent1)
    by_seed = {seed(c): c for c in children1}
    assert sorted(by_seed) == [0, 1, 2] and len(children1) == 3, sorted(by_seed)
    for s in (0, 1):
        assert_complete_run(client, by_seed[s], 1500)
    killed = by_seed[2]
    assert killed.info.status == "KILLED", killed.info.status
    partial = [m.step for m in loss_history(client, killed.info.run_id)]
    assert 200 <= len(partial) < 1500 and partial == list(range(len(partial))), (
        f"the interrupted run kept {len(partial)} loss values")
    assert counts(parent1) == expected_counts(jobs=3, finished=2, killed=1), counts(parent1)

    second = runner.run(RESUME_ARGS, uri)
    assert second.returncode == 0, second.describe()
    runs = all_runs(client)
    parents, jobs = split_runs(runs)
    assert len(parents) == 2, f"{len(parents)} sweep parents"
    parent2 = next(p for p in parents if p.info.run_id != parent1.info.run_id)
    assert parent2.info.status == "FINISHED", parent2.info.status
    children2 = children_of(runs, parent2)
    assert sorted(seed(c) for c in children2) == [2, 3, 4, 5], "second sweep re-ran " + \
        str(sorted(seed(c) for c in children2))
    for c in children2:
        assert_complete_run(client, c, 1500)
    # nothing duplicated: one FINISHED run per seed; the interrupted one is still there
    finished = {}
    for r in jobs:
        if r.info.status == "FINISHED":
            finished.setdefault(seed(r), []).append(r.info.run_id)
    assert {s: len(ids) for s, ids in finished.items()} == {s: 1 for s in range(6)}, finished
    assert len(jobs) == 7, f"{len(jobs)} job runs; expected 6 FINISHED + 1 KILLED"
    assert client.get_run(killed.info.run_id).info.status == "KILLED"
    # the skips are on the second parent
    assert counts(parent2) == expected_counts(jobs=6, finished=4, skipped=2), counts(parent2)
    skipped = sorted(a.path for a in client.list_artifacts(parent2.info.run_id, "skipped"))
    hashes = {by_seed[s].data.tags["config_hash"]: by_seed[s].info.run_id for s in (0, 1)}
    assert skipped == sorted(f"skipped/{h}.yaml" for h in hashes), skipped
    for h, run_id in hashes.items():
        local = client.download_artifacts(parent2.info.run_id, f"skipped/{h}.yaml",
                                          str(runner.root / "resume"))
        note = yaml.safe_load(Path(local).read_text())
        assert note["finished_run"] == run_id, note
    assert client.list_artifacts(parent1.info.run_id, "skipped") == []


# --- Optuna ---------------------------------------------------------------------------------------

def test_optuna_best_value_is_best_child(optuna_sweep):
    optuna = optuna_sweep
    assert optuna.returncode == 0, optuna.describe()
    client = client_for(optuna.uri)
    runs = all_runs(client)
    parent = only_parent(runs)
    assert parent.info.status == "FINISHED"
    children = children_of(runs, parent)
    assert len(children) == 4 and len(runs) == 5, f"{len(children)} children, {len(runs)} runs"
    n = counts(parent)
    assert n["n_jobs"] == 4 and n["n_finished"] + n["n_diverged"] == 4, n
    lrs = [float(c.data.params["lr"]) for c in children]
    assert len(set(lrs)) == 4, lrs
    assert all(LR_LOW <= lr <= LR_HIGH for lr in lrs), lrs
    assert all(float(c.data.params["optimizer.lr"]) == float(c.data.params["lr"])
               for c in children)

    def final(run) -> float:
        if run.data.tags.get("diverged") == "true" or "final_loss" not in run.data.metrics:
            return math.inf
        return run.data.metrics["final_loss"]

    best = re.findall(r"Best value: (\S+)", optuna.stdout)
    assert len(best) == 1, optuna.describe()
    assert float(best[0]) == min(final(c) for c in children), (
        best[0], sorted((final(c), c.data.params["lr"]) for c in children))
    for c in children:
        if final(c) != math.inf:
            assert len(loss_history(client, c.info.run_id)) == 200

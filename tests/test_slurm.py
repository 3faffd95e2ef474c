"""`hydra/launcher=slurm` sweeps on a real one-node SLURM cluster, started by the module fixture.

The fixture brings up munge and SLURM (slurmctld, slurmd) with a private key, socket, ports and
slurm.conf in a temporary folder (SLURM_CONF points the client tools at it), and stops them by
their pids at the end. It needs root and Debian's slurm-wlm and munge (.ci/run installs them);
where SLURM cannot be started the module is skipped, except on CI, where that fails.

  * a sweep: the parent and every child, with full loss curves;
  * a job cancelled with scancel, then the sweep finished with resume=true;
  * a submission sbatch refuses: the parent FAILED at once, one line;
  * submitit's "Bypassing sacct error" warnings (no accounting here) never reach the console.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import SWEEP_TAG, loss_history

from tests.helpers import free_port, skip_or_fail

pytestmark = pytest.mark.slow

TOOLS = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scancel", "sinfo")
STEPS = 500
SLURM = ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=cpu",
         "hydra.launcher.mem_gb=1", "hydra.launcher.cpus_per_task=1",
         "hydra.launcher.timeout_min=10"]


def find_tool(name: str):
    return shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.access(p, os.X_OK)), None)


class Cluster:
    """munged + slurmctld + slurmd, everything private to one temporary folder."""

    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="slurm-"))
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.root / "slurm.conf"
        self.socket = self.root / "munge" / "munge.socket"
        self.procs: list[subprocess.Popen] = []
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}

    def tool(self, name: str) -> str:
        return find_tool(name)

    def write_config(self) -> None:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir()
        (self.root / "munge").chmod(0o700)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        r = self.root
        self.conf.write_text(f"""\
ClusterName=harness
SlurmctldHost={self.host}
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.socket}
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
KillWait=15
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/log/slurmctld.log
SlurmdLogFile={r}/log/slurmd.log
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=8000 State=UNKNOWN
PartitionName=cpu Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")

    def daemon(self, *argv) -> None:
        log = open(self.root / "log" / f"{Path(argv[0]).name}.out", "w")
        self.procs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                           env=self.env, start_new_session=True))

    def start(self) -> None:
        self.write_config()
        m = self.root / "munge"
        self.daemon(self.tool("munged"), "--foreground", "--force", f"--key-file={m}/munge.key",
                    f"--socket={self.socket}", f"--pid-file={m}/munged.pid",
                    f"--log-file={m}/munged.log", f"--seed-file={m}/munged.seed")
        self.wait(lambda: self.socket.exists(), "munged")
        self.daemon(self.tool("slurmctld"), "-D", "-i", "-f", str(self.conf))
        self.daemon(self.tool("slurmd"), "-D", "-f", str(self.conf), "-N", self.host)
        self.wait(lambda: self.query("sinfo", "-h", "-o", "%t").strip() == "idle", "the node")

    def query(self, *argv) -> str:
        result = subprocess.run([self.tool(argv[0]), *argv[1:]], capture_output=True, text=True,
                                env=self.env, timeout=30)
        return result.stdout

    def wait(self, ready, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [p for p in self.procs if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not come up:\n{self.logs()}")
            time.sleep(0.3)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-1500:]}"
                         for p in sorted((self.root / "log").glob("*")) if p.is_file())

    def stop(self) -> None:
        # Jobs first: a job step (slurmstepd, detached from slurmd) would outlive the daemons.
        if (self.root / "slurm.conf").exists():
            subprocess.run([self.tool("scancel"), "--user", "root"], env=self.env,
                           capture_output=True, timeout=30)
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        kill_processes_of(self.conf)
        shutil.rmtree(self.root, ignore_errors=True)


def kill_processes_of(conf: Path) -> None:
    """Whatever this cluster started that is still alive (job steps and their tasks): every
    process whose environment names our slurm.conf."""
    marker = f"SLURM_CONF={conf}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), 9)
        except (OSError, ValueError):
            continue


@pytest.fixture(scope="module")
def cluster():
    missing = [t for t in TOOLS if find_tool(t) is None]
    if missing:
        skip_or_fail(f"SLURM is not installed (missing {', '.join(missing)}; "
                     f"apt-get install slurm-wlm munge)")
    if os.geteuid() != 0:
        skip_or_fail("a private SLURM cluster needs root (SlurmdUser=root)")
    c = Cluster()
    try:
        c.start()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        c.stop()
        skip_or_fail(f"SLURM could not be started: {exc}")
    yield c
    c.stop()


@pytest.fixture
def slurm_store(store, cluster):
    """The test's store, and the CLI's environment pointing at the private cluster."""
    return store, store.env(SLURM_CONF=str(cluster.conf))


def sweep_runs(store):
    runs = store.runs()
    parents = [r for r in runs if r.data.tags.get(SWEEP_TAG) == "true"]
    return parents, [r for r in runs if r.data.tags.get(SWEEP_TAG) != "true"]


def assert_quiet(result):
    text = result.stdout + result.stderr
    assert "sacct" not in text, f"submitit's sacct warnings reached the console\n{text[-3000:]}"
    assert "Traceback" not in text, result.describe()


def test_slurm_sweep_parent_and_children(slurm_store):
    store, env = slurm_store
    result = store.run_cli(*SLURM, "experiment=numpy", "seed=0,1,2", f"steps={STEPS}", env=env)
    assert result.returncode == 0, result.describe()
    assert_quiet(result)
    assert not result.stderr_lines, result.describe()
    (parent,), children = sweep_runs(store)
    assert parent.info.status == "FINISHED"
    assert parent.data.metrics["n_jobs"] == 3 and parent.data.metrics["n_finished"] == 3
    assert sorted(int(c.data.params["seed"]) for c in children) == [0, 1, 2]
    client = store.client()
    for child in children:
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.info.status == "FINISHED"
        assert [s for s, _ in loss_history(client, child.info.run_id)] == list(range(STEPS))


def stored_counts(store) -> dict:
    try:
        with sqlite3.connect(store.db, timeout=5) as conn:
            return dict(conn.execute("SELECT r.name, count(*) FROM metrics m JOIN runs r "
                                     "ON m.run_uuid = r.run_uuid WHERE m.key = 'loss' "
                                     "GROUP BY r.name").fetchall())
    except sqlite3.Error:
        return {}


def test_scancel_then_resume(slurm_store, cluster):
    store, env = slurm_store
    args = [*SLURM, "experiment=dynamic", "seed=0,1", "steps=60000", "resume=true"]
    proc = store.popen(args, env=env)
    try:
        deadline = time.monotonic() + 300
        while not any(n >= 5000 and name.endswith("seed1") for name, n in
                      stored_counts(store).items()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "seed 1 never got going"
            time.sleep(0.5)
        jobs = cluster.query("squeue", "-h", "-o", "%i %K").split("\n")
        task = next(line.split()[0] for line in jobs if line.strip().endswith(" 1"))
        subprocess.run([cluster.tool("scancel"), task], env=cluster.env, check=True)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err[-3000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == ["error: job dynamic seed=1 was terminated (SIGTERM); its run is KILLED"], \
        err[-3000:]
    (first_parent,), children = sweep_runs(store)
    assert first_parent.info.status == "FAILED"
    by_seed = {int(c.data.params["seed"]): c for c in children}
    assert by_seed[1].info.status == "KILLED", by_seed[1].info.status
    assert by_seed[0].info.status == "FINISHED", by_seed[0].info.status
    assert "RUNNING" not in {c.info.status for c in children}

    again = store.run_cli(*args, env=env)
    assert again.returncode == 0, again.describe()
    assert_quiet(again)
    parents, children = sweep_runs(store)
    finished = sorted(int(c.data.params["seed"]) for c in children if c.info.status == "FINISHED")
    assert finished == [0, 1], finished  # each seed FINISHED once: nothing duplicated
    client = store.client()
    for child in children:
        if child.info.status == "FINISHED":
            assert len(loss_history(client, child.info.run_id)) == 60000


def test_refused_submission(slurm_store):
    store, env = slurm_store
    result = store.run_cli(*SLURM[:3], "hydra.launcher.mem_gb=1000", "experiment=numpy",
                           "seed=0,1", env=env, timeout=150)
    assert result.returncode == 1, result.describe()
    assert_quiet(result)
    lines = result.stderr_lines
    assert len(lines) == 1 and lines[0].startswith("error: the launcher failed: "), \
        result.describe()
    assert "Memory specification can not be satisfied" in lines[0], lines[0]
    (parent,), children = sweep_runs(store)
    assert parent.info.status == "FAILED" and children == []

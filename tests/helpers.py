"""Small helpers shared by tests that start servers or need system packages."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest


def environment_without_mlflow() -> dict:
    """This process's environment minus MLflow's settings: a child CLI tracks where it is told."""
    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (bound once by us, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def skip_or_fail(reason: str):
    """Skip where a system package is missing; on CI, whose .ci/run installs it, fail instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI is set: .ci/run is expected to install it)")
    pytest.skip(reason)


def stop_process_group(proc: subprocess.Popen) -> None:
    """`mlflow server` forks workers: signal its whole process group, then make sure."""
    if proc.poll() is not None:
        return
    for sig, grace in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    try:  # workers that outlived the leader
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def healthy(base_url: str) -> bool:
    """Whether an MLflow server answers 200 on /health."""
    try:
        with urllib.request.urlopen(f"{base_url}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def wait_until_healthy(proc: subprocess.Popen, base_url: str, log_path: Path,
                       timeout_s: float) -> None:
    """Wait for a just-started `mlflow server`; fail with its log's end if it dies or stalls."""
    deadline = time.monotonic() + timeout_s
    while not healthy(base_url):
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited {proc.returncode} before /health answered:\n"
                        f"{log_path.read_text(errors='replace')[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"mlflow server: no 200 from /health within {timeout_s} s:\n"
                        f"{log_path.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)


SERVER_START_TIMEOUT_S = 120


@contextmanager
def running_mlflow_server(backend_store_uri: str, folder: Path, *options: str,
                          env: dict | None = None, timeout_s: float = SERVER_START_TIMEOUT_S):
    """`mlflow server` on a free loopback port, its working directory and log (server.log) in
    `folder`; yields its base URL once /health answers, stops its whole process group after."""
    mlflow_exe = Path(sys.executable).parent / "mlflow"
    assert mlflow_exe.exists(), f"no mlflow executable beside {sys.executable}"
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = Path(folder) / "server.log"
    server_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # No background job runner (it serves GenAI features, and its huey consumers double the
    # start-up time and the number of processes to clean up).
    server_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    server_env.update(env or {})
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(mlflow_exe), "server", "--backend-store-uri", backend_store_uri, *options,
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=folder, env=server_env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_healthy(proc, base_url, log_path, timeout_s)
        yield base_url
    finally:
        stop_process_group(proc)

# --- a throwaway PostgreSQL server --------------------------------------------------------

# PostgreSQL drivers (module, SQLAlchemy scheme), named explicitly: with SQLAlchemy >= 2.1 a bare
# postgresql:// means psycopg 3, which the `postgres` extra installs (see
# test_documented_postgresql_uri_has_its_driver). The first one installed is used.
DRIVERS = (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2"))


def installed_driver():
    """(DB-API module, SQLAlchemy scheme) of the first PostgreSQL driver installed, or None."""
    import importlib

    for module, scheme in DRIVERS:
        try:
            return importlib.import_module(module), scheme
        except ImportError:
            continue
    return None


PG_TOOLS = ("initdb", "pg_ctl", "pg_isready", "createdb")


def pg_bin_dir() -> Path | None:
    """A folder holding every PostgreSQL tool we need: $PG_BIN, the PATH's, or Debian's newest."""
    candidates = []
    if os.environ.get("PG_BIN"):
        candidates.append(Path(os.environ["PG_BIN"]))
    for tool in PG_TOOLS:
        found = shutil.which(tool)
        if found:
            candidates.append(Path(found).resolve().parent)
    versions = glob.glob("/usr/lib/postgresql/*/bin")
    candidates += [Path(p) for p in sorted(versions, key=lambda p: int(p.split("/")[-2])
                                           if p.split("/")[-2].isdigit() else 0, reverse=True)]
    for folder in candidates:
        if all(os.access(folder / tool, os.X_OK) for tool in PG_TOOLS):
            return folder
    return None


def run_checked(cmd: list, what: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}): {' '.join(map(str, cmd))}\n"
                    f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return result


class Postgres:
    """A throwaway cluster listening on 127.0.0.1:<port> and a private socket, with a database
    `mlflow`. Without a password: trust auth. With one: TCP connections must give it
    (scram-sha-256; the socket stays trusted for our own tools)."""

    def __init__(self, bindir: Path, dbapi, password: str | None = None):
        self.bindir, self.dbapi, self.password = bindir, dbapi, password
        self.as_postgres: list = []
        owner = None
        if os.geteuid() == 0:  # initdb refuses to run as root
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                skip_or_fail("running as root and there is no `postgres` user to run initdb as")
            if not shutil.which("runuser"):
                skip_or_fail("running as root and `runuser` is missing")
            self.as_postgres = ["runuser", "-u", "postgres", "--"]
        # Not under pytest's tmp folder: that one is private to root (mode 0700).
        self.root = Path(tempfile.mkdtemp(prefix="pg-"))
        if owner is not None:
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = free_port()
        self.started = False

    def tool(self, name: str, *args) -> list:
        return [*self.as_postgres, str(self.bindir / name), *map(str, args)]

    def start(self) -> None:
        auth = ["--auth=trust"]
        if self.password is not None:
            pwfile = self.root / "pwfile"
            pwfile.write_text(self.password + "\n")
            pwfile.chmod(0o644)  # read by initdb as `postgres`; removed right after
            auth = ["--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"]
        try:
            run_checked(self.tool("initdb", "-D", self.data, *auth, "-U", "postgres",
                                  "-E", "UTF8", "--locale=C", "--no-sync"), "initdb")
        finally:
            (self.root / "pwfile").unlink(missing_ok=True)
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                   f"-c fsync=off")
        with open(self.root / "pg_ctl.out", "w") as out:  # the postmaster must not hold a pipe
            code = subprocess.call(self.tool("pg_ctl", "-D", self.data, "-l", self.log, "-w",
                                             "-t", "60", "-o", options, "start"),
                                   stdout=out, stderr=subprocess.STDOUT, timeout=90)
        self.started = True
        if code != 0:
            pytest.fail(f"pg_ctl start failed ({code}):\n{self.tail()}")
        deadline = time.monotonic() + 60
        while subprocess.call(self.tool("pg_isready", "-h", "127.0.0.1", "-p", self.port),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) != 0:
            if time.monotonic() > deadline:
                pytest.fail(f"PostgreSQL not ready within 60 s:\n{self.tail()}")
            time.sleep(0.3)
        run_checked(self.tool("createdb", "-h", self.root, "-p", self.port, "-U", "postgres",
                              "mlflow"), "createdb")

    def tail(self) -> str:
        return "\n".join(p.read_text()[-3000:] for p in (self.root / "pg_ctl.out", self.log)
                         if p.exists())

    def stop(self) -> None:
        if self.started:
            subprocess.call(self.tool("pg_ctl", "-D", self.data, "-m", "immediate", "stop"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def connect(self):
        return self.dbapi.connect(host="127.0.0.1", port=self.port, user="postgres",
                                  dbname="mlflow", password=self.password)

    def uri(self, scheme: str) -> str:
        """The database's SQLAlchemy URI, with the password if there is one."""
        userinfo = "postgres" if self.password is None else f"postgres:{self.password}"
        return f"{scheme}://{userinfo}@127.0.0.1:{self.port}/mlflow"


@contextmanager
def running_postgres(password: str | None = None):
    """(Postgres, SQLAlchemy scheme of its driver) of a started throwaway cluster; stopped and
    removed afterwards. Skips (fails on CI) without the server binaries or a driver."""
    bindir = pg_bin_dir()
    if bindir is None:
        skip_or_fail(f"the PostgreSQL server binaries ({', '.join(PG_TOOLS)}) are not installed")
    driver = installed_driver()
    if driver is None:
        skip_or_fail("no PostgreSQL driver (psycopg2 or psycopg) is installed "
                     "(pip install -e '.[postgres]')")
    pg = Postgres(bindir, driver[0], password)
    try:
        pg.start()
        yield pg, driver[1]
    finally:
        pg.stop()

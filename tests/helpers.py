"""Small helpers shared by tests that start servers or need system packages."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


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

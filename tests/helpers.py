"""Small helpers shared by tests that start servers or need system packages."""

from __future__ import annotations

import os
import signal
import socket
import subprocess

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

"""Sweeps as one group in MLflow: a parent run per multirun, every job a child of it.

A Hydra callback opens the parent when the multirun starts and closes it when it ends, with the
sweep's overrides and how many jobs finished, diverged, failed or were killed. The parent's
identity reaches the jobs explicitly, in the environment variable HARNESS_PARENT_RUN (inherited
by launcher worker processes): jobs in the launching process refer to it through their shared
recorder without waiting for the store; for launchers that run jobs in other processes the
parent is created first and its run id is passed.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Optional, Union

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.tracking.client import Recorder, Run, TrackingError, recorder_for
from src.tracking.provenance import git_tags

PARENT_ENV = "HARNESS_PARENT_RUN"
IN_PROCESS_LAUNCHERS = ("hydra._internal.core_plugins.basic_launcher.BasicLauncher",
                        "hydra_plugins.harness_vectorized_launcher.vectorized_launcher."
                        "VectorizedLauncher")
# Sweepers that compose and validate every job before launching (see src/preflight.py): their
# parent run waits for that, so that a refused sweep leaves no run behind.
VALIDATING_SWEEPERS = ("hydra._internal.core_plugins.basic_sweeper.BasicSweeper",)

_pending: Optional[DictConfig] = None  # a sweep about to start, its jobs not yet validated
_expected: Optional[int] = None  # how many jobs the open sweep launched, when the sweeper says
_parent: Optional[Run] = None  # the sweep this process launched and has not closed yet


class SweepTracker(Callback):
    """Registered in conf/train.yaml under hydra.callbacks."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        global _pending
        _pending = config
        if config.hydra.sweeper.get("_target_") not in VALIDATING_SWEEPERS:
            start_pending()

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        finish("FINISHED")


def expect(jobs: int) -> None:
    """Count jobs about to be launched, so that the parent waits for all of them at the end."""
    global _expected
    _expected = (_expected or 0) + jobs


def start_pending() -> None:
    """Open the parent run of the sweep about to launch, once its jobs passed validation."""
    global _pending
    if _pending is None:
        return
    config, _pending = _pending, None
    try:
        begin(config)
    except TrackingError as exc:  # one line, before any job runs
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def sweep_name(overrides: list[str]) -> str:
    text = " ".join(overrides) if overrides else "defaults"
    return f"sweep {text}"[:240]


def begin(config: DictConfig) -> Run:
    global _parent
    overrides = [str(o) for o in config.hydra.overrides.task]
    recorder = recorder_for(config.tracking.uri, config.tracking.experiment)

    _parent = recorder.start_run(
        run_name=sweep_name(overrides),
        tags={"harness.sweep": "true", "sweep.overrides": " ".join(overrides),
              "mlflow.source.name": "src.train -m", **git_tags()},
        params={"sweep.overrides": " ".join(overrides)[:6000]},
    )
    _parent.log_text("overrides.yaml", OmegaConf.to_yaml(OmegaConf.create(overrides)))
    reference = {"pid": os.getpid(), "key": _parent.key, "uri": recorder.uri,
                 "experiment": recorder.experiment, "run_id": None}
    if config.hydra.launcher.get("_target_") not in IN_PROCESS_LAUNCHERS:
        recorder.sync()  # jobs in other processes need the real run id (and a ready store)
        reference["run_id"] = _parent.run_id
    os.environ[PARENT_ENV] = json.dumps(reference)
    return _parent


def finish(status: str) -> None:
    """Close the open sweep, if any: counts of its children, then its status."""
    global _parent, _pending, _expected
    _pending = None
    if _parent is not None:
        _parent.finish_sweep(status, _expected)
        _parent = None
    _expected = None
    os.environ.pop(PARENT_ENV, None)


def parent_for(recorder: Recorder) -> Union[None, int, str]:
    """How a job's run names its parent: a recorder key here, a run id elsewhere, or None."""
    raw = os.environ.get(PARENT_ENV)
    if not raw:
        return None
    ref = json.loads(raw)
    if (ref["uri"], ref["experiment"]) != (recorder.uri, recorder.experiment):
        return None  # the job tracks elsewhere than its sweep
    return ref["key"] if ref["pid"] == os.getpid() else ref["run_id"]

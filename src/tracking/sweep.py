"""Sweeps as one group in MLflow: a parent run per multirun, every job a child of it.

One object, `Sweep`, holds what the tracking knows of a multirun: its config, its parent run, how
many jobs were launched. The Hydra callback `SweepTracker` (conf/train.yaml) creates it when the
multirun starts and closes it when the multirun ends; `ValidatingSweeper` (conf/hydra/sweeper/)
opens the parent once every job of a batch passed config.validate, so a refused sweep leaves no
run behind.

The parent's identity reaches the jobs with the callback itself, which Hydra hands to every job
(pickled along with the launcher for joblib, submitit and SLURM): in the launching process a job
names its parent by the recorder's key (no waiting for the store); pickled for another process,
the sweep carries the parent's run id instead (see Sweep.__getstate__).
"""

from __future__ import annotations

import contextlib
import logging
import os
import traceback
from pathlib import Path
from typing import Optional, Union

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from src.tracking.client import RecorderProcess, Run, recorder_for
from src.tracking.store_check import one_line
from src.tracking.provenance import git_tags
from src.tracking.uri_secrets import redact_text

_current: Optional["Sweep"] = None  # the sweep this process launches or runs jobs of


def current() -> Optional["Sweep"]:
    return _current


class Sweep:
    """A multirun's parent run, opened when first needed and closed with its children's counts."""

    def __init__(self, config: DictConfig):
        self.config = config
        self.uri, self.experiment = config.tracking.uri, config.tracking.experiment
        self.launcher_pid = os.getpid()
        self.parent: Optional[Run] = None
        self.parent_run_id: Optional[str] = None
        self.expected: Optional[int] = None  # jobs launched, when the sweeper says
        self.closed = False
        # False when the launcher's training process draws the figures (the vectorized one's
        # class says so); the sweeper sets it before the store opens
        self.figures_in_recorder = True

    def open_store(self) -> RecorderProcess:
        """The sweep's recorder, asked to check and open the store (no run yet)."""
        return recorder_for(self.uri, self.experiment, self.config.hydra.sweep.dir,
                            figures_here=self.figures_in_recorder)

    def begin(self) -> Run:
        """Open the parent run (once); a store that cannot be used is one line, before any job."""
        if self.parent is None and not self.closed:
            recorder = self.open_store()
            name, tags, params, overrides_yaml = parent_run_record(self.config)
            self.parent = recorder.start_run(run_name=name, tags=tags, params=params)
            self.parent.log_text("overrides.yaml", overrides_yaml)
        return self.parent

    def expect(self, jobs: int) -> None:
        """Count jobs about to be launched, so that the parent waits for all of them at the end."""
        self.expected = (self.expected or 0) + jobs

    def parent_for(self, recorder: RecorderProcess) -> Union[None, int, str]:
        """How a job's run names its parent: a recorder key here, a run id elsewhere, or None."""
        if (recorder.uri, recorder.experiment) != (recorder_uri(self.uri), self.experiment):
            return None  # the job tracks elsewhere than its sweep
        if os.getpid() == self.launcher_pid:
            return self.begin().key
        return self.parent_run_id

    def finish(self, status: str) -> None:
        """Close the parent, if it was opened: counts of its children, then its status."""
        if self.parent is not None and not self.closed:
            self.parent.finish_sweep(status, self.expected)
        self.closed = True

    def resolve_parent(self) -> Optional[str]:
        """The parent's run id, for jobs in other processes (waits for the store: one line if it
        cannot be used, before any job)."""
        if os.getpid() == self.launcher_pid and self.parent_run_id is None and not self.closed:
            parent = self.begin()
            parent.recorder.sync()
            self.parent_run_id = parent.run_id
        return self.parent_run_id

    def __getstate__(self) -> dict:
        """Pickled for a job in another process: it names its parent by run id."""
        self.resolve_parent()
        return {"uri": self.uri, "experiment": self.experiment, "launcher_pid": self.launcher_pid,
                "parent_run_id": self.parent_run_id, "expected": self.expected,
                "config": None, "parent": None, "closed": True}


def parent_run_record(config: DictConfig) -> tuple[str, dict, dict, str]:
    """The parent run's name, tags, params and overrides.yaml, from the sweep's overrides."""
    overrides = [redact_text(str(o)) for o in config.hydra.overrides.task]  # no secrets
    text = " ".join(overrides)
    name = f"sweep {text if overrides else 'defaults'}"[:240]
    tags = {"harness.sweep": "true", "sweep.overrides": text,
            "mlflow.source.name": "src.train -m", **git_tags()}
    params = {"sweep.overrides": text[:6000]}
    return name, tags, params, OmegaConf.to_yaml(OmegaConf.create(overrides))


def recorder_uri(configured: Optional[str]) -> str:
    from src.tracking.store import tracking_uri

    return tracking_uri(configured)


class SweepTracker(Callback):
    """Registered in conf/train.yaml under hydra.callbacks; travels with every job."""

    def __init__(self) -> None:
        self.sweep: Optional[Sweep] = None

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        global _current
        self.sweep = _current = Sweep(config)

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        global _current
        if self.sweep is not None:
            _current = self.sweep

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        finish("FINISHED")


def finish(status: str) -> None:
    """Close this process's sweep, if it launched one."""
    global _current
    sweep, _current = _current, None
    if sweep is not None and sweep.launcher_pid == os.getpid():
        sweep.finish(status)


def in_job_process() -> bool:
    """Whether this process runs a sweep's jobs for a launcher elsewhere (joblib, submitit)."""
    return _current is not None and _current.launcher_pid != os.getpid()


def parent_for(recorder: RecorderProcess) -> Union[None, int, str]:
    """The parent reference for a job's run, or None outside a sweep."""
    return _current.parent_for(recorder) if _current is not None else None


class LaunchError(RuntimeError):
    """The launcher could not start the jobs (e.g. sbatch refused them); one line."""


class JobFailed(RuntimeError):
    """A job in a launcher's process (joblib, submitit) failed in one line, which the launching
    process prints: an Exception, which every launcher hands back (a SystemExit or a
    KeyboardInterrupt would leave submitit waiting for a result forever)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message, code)
        self.code = code

    def __str__(self) -> str:
        return self.args[0]


class ReportingLauncher:
    """The sweep's launcher, whose failure is one line; its detail goes to launcher.log.

    While jobs that run elsewhere are launched and waited for, our stderr goes to that file:
    submitit's logger ("Bypassing sacct error", three times a poll on a cluster without
    accounting), the tools it runs (sacct, sbatch's refusal) and the stderr it echoes. The basic
    launcher runs jobs here, and their console stays theirs; so does any launcher whose class says
    `runs_jobs_here = True` (the vectorized one); so do joblib's workers, which inherit our stderr
    (only Python's sys.stderr is redirected there).
    """

    def __init__(self, launcher, folder: Path) -> None:
        self.launcher, self.log = launcher, folder / "launcher.log"

    def __getattr__(self, name):
        return getattr(self.launcher, name)

    def launch(self, job_overrides, initial_job_idx):
        from hydra._internal.core_plugins.basic_launcher import BasicLauncher

        if isinstance(self.launcher, BasicLauncher) or getattr(self.launcher, "runs_jobs_here",
                                                                  False):
            return self.launcher.launch(job_overrides, initial_job_idx)
        if current() is not None:
            current().resolve_parent()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "a") as log:
            try:
                with self.quiet(log):
                    results = self.launcher.launch(job_overrides, initial_job_idx)
            except Exception as exc:
                traceback.print_exc(file=log)
                raise LaunchError(f"the launcher failed: {one_line(exc)}; "
                                  f"details in {self.log}") from None
        for result in results:  # ours before Hydra's "Error executing job" line and traceback
            failure = getattr(result, "_return_value", None)  # JobReturn's field, hydra-core 1.3
            if isinstance(failure, JobFailed):
                raise failure
        return results

    @contextlib.contextmanager
    def quiet(self, log):
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import BaseSubmititLauncher

        with contextlib.redirect_stderr(log):
            if not isinstance(self.launcher, BaseSubmititLauncher):
                yield
                return
            import submitit  # noqa: F401  (configures its logger on import: before we replace it)

            logger = logging.getLogger("submitit")
            handlers, logger.handlers = logger.handlers, [logging.StreamHandler(log)]
            propagate, logger.propagate = logger.propagate, False
            log.flush()
            saved = os.dup(2)
            os.dup2(log.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                logger.handlers, logger.propagate = handlers, propagate

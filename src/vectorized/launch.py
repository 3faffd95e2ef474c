"""What `hydra/launcher=vectorized` does with a batch of sweep jobs.

Jobs whose resolved configs differ only in `seed` form a group (any other job is a group of
one); each group, in chunks of at most `max_batch`, trains as one batched computation
(src/vectorized/loop.py), and each member is tracked as its own run, exactly as src.train
tracks a solo run (src/vectorized/tracking.py). Jobs are composed and validated by the sweeper
before they reach us (hydra_plugins/harness_sweeper), so bad input never gets here.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, configure_log, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

from src.compose_once import ComposeOnceLoader, task_config
from src.config import ConfigError

log = logging.getLogger(__name__)


def check_max_batch(value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"hydra.launcher.max_batch={value}: must be an integer >= 1")


@dataclass
class Job:
    idx: int
    overrides: list
    cfg: DictConfig  # what the task sees: the hydra node removed
    whole: Callable[[], DictConfig]  # makes the job's whole config, hydra node included

    @functools.cached_property
    def hydra_config(self) -> DictConfig:
        """The job's whole config, made when first asked for (resume's skip notes, a JobReturn's
        hydra_cfg): a seed variant's task config is derived without it (src/compose_once.py)."""
        return self.whole()


def compose_job(launcher, overrides, idx, output_dir: str) -> Job:
    loader = launcher.hydra_context.config_loader

    def whole() -> DictConfig:
        config = loader.load_sweep_config(launcher.config, list(overrides))
        with read_write(config), open_dict(config):
            config.hydra.job.id = idx
            config.hydra.job.num = idx
            config.hydra.runtime.output_dir = output_dir  # every job's: the sweep folder
        return config

    task = (loader.variant_task_config(overrides) if isinstance(loader, ComposeOnceLoader)
            else None)
    if task is not None:
        return Job(idx, list(overrides), task, whole)
    config = whole()
    return Job(idx, list(overrides), task_config(config), lambda: config)


class LazyJobReturn(JobReturn):
    """A JobReturn whose hydra_cfg (the job's whole config) is made when first read."""

    def __init__(self, job: Job) -> None:
        self._job, self._hydra_cfg = job, None
        super().__init__()

    @property
    def hydra_cfg(self) -> Optional[DictConfig]:
        if self._hydra_cfg is None:
            self._hydra_cfg = self._job.hydra_config
        return self._hydra_cfg

    @hydra_cfg.setter
    def hydra_cfg(self, value: Optional[DictConfig]) -> None:
        self._hydra_cfg = value


def group_key(cfg: DictConfig) -> str:
    """The resolved config minus seed: jobs with the same key differ only in seed."""
    content = OmegaConf.to_container(cfg, resolve=True)
    content.pop("seed", None)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def groups_of(jobs: list, max_batch: int) -> list[tuple[str, list]]:
    """(group id, member jobs) in the order the jobs came, chunks of at most max_batch."""
    by_key: dict[str, list] = {}
    for job in jobs:
        by_key.setdefault(group_key(job.cfg), []).append(job)
    out = []
    for key, members in by_key.items():
        for n, start in enumerate(range(0, len(members), max_batch)):
            out.append((f"{key}.{n}", members[start:start + max_batch]))
    return out


def job_return(job: Job, status: JobStatus, value) -> JobReturn:
    ret = LazyJobReturn(job)
    ret.overrides, ret.cfg = job.overrides, job.cfg
    ret.working_dir, ret.task_name = os.getcwd(), JobRuntime.instance().get("name")
    ret.status, ret.return_value = status, value
    return ret


def launch(launcher, job_overrides, initial_job_idx) -> list[JobReturn]:
    from src.train import skip_if_finished
    from src.vectorized.tracking import train_group

    setup_globals()
    config = launcher.config
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log_config = copy.deepcopy(config)  # one job log for the whole launch, in the sweep folder
    with read_write(log_config.hydra.runtime), open_dict(log_config.hydra.runtime):
        log_config.hydra.runtime.output_dir = str(sweep_dir.resolve())
    HydraConfig.instance().set_config(log_config)
    configure_log(log_config.hydra.job_logging, config.hydra.verbose)
    jobs = [compose_job(launcher, overrides, initial_job_idx + i, str(sweep_dir.resolve()))
            for i, overrides in enumerate(job_overrides)]
    log.info("Launching %d jobs, vectorized over seeds", len(jobs))
    returns: dict[int, JobReturn] = {}
    pending = []
    for job in jobs:
        if job.cfg.resume:
            HydraConfig.instance().set_config(job.hydra_config)  # skips note the job's overrides
            done = skip_if_finished(job.cfg)
            if done is not None:
                returns[job.idx] = job_return(job, JobStatus.COMPLETED, done)
                continue
        pending.append(job)
    for group_id, members in groups_of(pending, launcher.max_batch):
        log.info("group %s: %d members, seeds %s", group_id, len(members),
                 ",".join(str(m.cfg.seed) for m in members))
        try:
            outcomes = train_group([m.cfg for m in members], [m.overrides for m in members],
                                   group_id)
        except Exception as exc:  # the sweep goes on; Hydra re-raises the first error at the end
            outcomes = [exc] * len(members)
        for job, outcome in zip(members, outcomes):
            failed = isinstance(outcome, BaseException)
            returns[job.idx] = job_return(job, JobStatus.FAILED if failed else JobStatus.COMPLETED,
                                          outcome)
    return [returns[job.idx] for job in jobs]

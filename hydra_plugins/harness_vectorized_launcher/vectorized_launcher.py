"""`hydra/launcher=vectorized`: a sweep's jobs that differ only in seed train as one batch.

The Hydra side only (config node, Launcher subclass); what a launch does is in
src/vectorized/launch.py, imported when a sweep starts. src.train.main registers the class with
Hydra's Plugins (as it does the validating sweeper): Hydra's own scan misses an editable install.
"""

from dataclasses import dataclass
from typing import Any, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


@dataclass
class VectorizedLauncherConf:
    _target_: str = (
        "hydra_plugins.harness_vectorized_launcher.vectorized_launcher.VectorizedLauncher")
    max_batch: int = 256  # most members in one batched computation; larger groups run in chunks


ConfigStore.instance().store(group="hydra/launcher", name="vectorized",
                             node=VectorizedLauncherConf, provider="harness")


class VectorizedLauncher(Launcher):
    runs_jobs_here = True  # in the launching process, like the basic launcher (src.tracking.sweep)
    draws_figures = True  # a group's figures are drawn here, not by the recorder (src/vectorized)

    def __init__(self, max_batch: Any = 256) -> None:
        self.max_batch = max_batch
        self.config: Optional[DictConfig] = None
        self.task_function: Optional[TaskFunction] = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        from src.vectorized.launch import check_max_batch

        check_max_batch(self.max_batch)  # bad input: refused before the sweep starts
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]],
               initial_job_idx: int) -> Sequence[JobReturn]:
        from src.vectorized.launch import launch

        return launch(self, job_overrides, initial_job_idx)

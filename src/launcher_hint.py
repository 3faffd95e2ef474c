"""A one-line hint when a sweep of short jobs is sent to the joblib launcher.

Each joblib worker imports torch and MLflow and opens the store before its first job (seconds on
2 cores), so for jobs of a few thousand steps joblib is slower than the basic launcher (measured:
16 x autograd, see benchmarks/vectorized.py); a seed study is fastest with
hydra/launcher=vectorized. Long jobs (the dynamic preset's 30000 steps) do pay off on joblib.
"""

from __future__ import annotations

import sys

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

JOBLIB = "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher"
SHORT_STEPS = 10_000  # below this, a job's compute is shorter than a worker's start-up


class JoblibHint(Callback):
    """Registered in conf/train.yaml under hydra.callbacks."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        if config.hydra.launcher.get("_target_") == JOBLIB and config.steps < SHORT_STEPS:
            print(f"hint: steps={config.steps} jobs are short for hydra/launcher=joblib (each "
                  "worker first imports torch and MLflow); the basic launcher is faster, and a "
                  "seed study is fastest with hydra/launcher=vectorized", file=sys.stderr)

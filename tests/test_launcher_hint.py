"""A sweep of short jobs sent to joblib gets one hint line; long jobs and other launchers none."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from src.launcher_hint import JOBLIB, JoblibHint


@pytest.mark.slow
def test_short_joblib_sweep_prints_one_hint(store):
    done = store.run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=1",
                         "experiment=tensor", "seed=0", "steps=5")
    assert done.returncode == 0, done.describe()
    hints = [line for line in done.stderr_lines if line.startswith("hint:")]
    assert len(hints) == 1 and "hydra/launcher=vectorized" in hints[0]
    assert [r.info.status for r in store.job_runs()] == ["FINISHED"]


@pytest.mark.parametrize("target, steps, hinted", [
    (JOBLIB, 2000, True),
    (JOBLIB, 30000, False),
    ("hydra._internal.core_plugins.basic_launcher.BasicLauncher", 2000, False),
])
def test_hint_only_for_short_jobs_on_joblib(capsys, target, steps, hinted):
    JoblibHint().on_multirun_start(OmegaConf.create(
        {"steps": steps, "hydra": {"launcher": {"_target_": target}}}))
    assert capsys.readouterr().err.startswith("hint:") == hinted

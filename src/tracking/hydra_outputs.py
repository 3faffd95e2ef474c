"""Hydra's own output files without secrets: a sweep's multirun.yaml and a job's .hydra/ folder.

Hydra writes both with the config and the overrides as typed, a password in tracking.uri
included: multirun.yaml when the sweeper starts (hydra-core 1.3: BasicSweeper.sweep, after
on_multirun_start), a job's .hydra/*.yaml just before on_job_start. Each file is rewritten with
its secrets masked at the first callback after Hydra wrote it, and again when the sweep ends.
(Hydra's log lines are masked by the logging configs in conf/hydra/*_logging/harness.yaml.)
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from src.tracking.uri_secrets import redact_text


class RedactHydraOutputs(Callback):
    """Registered in conf/train.yaml under hydra.callbacks."""

    def on_job_start(self, config: DictConfig, **kwargs) -> None:
        hydra = config.hydra
        if hydra.mode == RunMode.MULTIRUN:
            redact_file(Path(hydra.sweep.dir) / "multirun.yaml")
        if hydra.output_subdir is not None:
            for path in (Path(hydra.runtime.output_dir) / hydra.output_subdir).glob("*.yaml"):
                redact_file(path)

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        redact_file(Path(config.hydra.sweep.dir) / "multirun.yaml")


def redact_file(path: Path) -> None:
    """Mask the URI secrets in a text file, replacing it atomically (launcher workers may race)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return
    redacted = redact_text(text)
    if redacted == text:
        return
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.",
                                     delete=False) as tmp:
        tmp.write(redacted)
    shutil.copymode(path, tmp.name)
    os.replace(tmp.name, path)

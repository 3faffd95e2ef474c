"""Hydra plugin: the sweeper conf/train.yaml selects (hydra/sweeper=validating).

Hydra loads sweepers only from the `hydra_plugins` package, hence this small module; what it
does with the sweep lives in src/tracking/sweep.py.
"""

from __future__ import annotations

from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.types import HydraContext
from omegaconf import DictConfig


class ValidatingSweeper(BasicSweeper):
    """Hydra's basic sweeper, plus our checks on every job before a batch is launched.

    The basic sweeper composes every job of a batch before launching it (composition errors);
    we also run config.validate on each, so a sweep with any bad job is refused, in one line,
    before its first job or its parent run exists; then the parent opens. The launcher is handed
    those compositions instead of composing each job again, and jobs that differ only in their
    seed are derived from one composition (compose_once, src/compose_once.py; the README says
    what it saves).
    """

    def __init__(self, max_batch_size=None, params=None, compose_once: bool = True) -> None:
        super().__init__(max_batch_size=max_batch_size, params=params)
        self.compose_once = compose_once

    def setup(self, *, hydra_context: HydraContext, task_function, config: DictConfig) -> None:
        from src.compose_once import ComposeOnceLoader
        from src.tracking.sweep import ReportingLauncher

        if self.compose_once:
            hydra_context = HydraContext(
                config_loader=ComposeOnceLoader(hydra_context.config_loader),
                callbacks=hydra_context.callbacks)
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        self.launcher = ReportingLauncher(self.launcher, Path(config.hydra.sweep.dir))

    def validate_batch_is_legal(self, batch) -> None:
        from src.compose_once import ComposeOnceLoader
        from src.config import check_seed, validate_components, validate_settings
        from src.tracking import sweep

        loader = self.hydra_context.config_loader
        current = sweep.current()
        if current is not None:  # the store opens (no run yet) while torch is imported below
            current.figures_in_recorder = not getattr(self.launcher, "draws_figures", False)
            current.open_store()
        configs = []
        for overrides in batch:
            variant = loader.variant(overrides) if isinstance(loader, ComposeOnceLoader) else None
            if variant is not None:  # its family's config but for the seed: validated with it
                check_seed(variant[1])  # (derived when a launcher asks for the job)
                continue
            cfg = loader.load_sweep_config(self.config, list(overrides))
            validate_settings(cfg)
            configs.append(cfg)
            if isinstance(loader, ComposeOnceLoader):
                loader.remember(overrides, cfg)
        for cfg in configs:
            validate_components(cfg)
        if current is not None:
            current.begin()  # all good: the sweep's parent run may now exist
            current.expect(len(batch))

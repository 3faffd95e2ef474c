"""The one adapter between a batched group and the solo code: a member's start, as fit() makes it.

For each member this calls what src.trainer.fit calls, in the same order (seed_everything, the
family and style components, the style's strategy, the optimizer component), so every draw comes
from the same generators in the same order as the member's solo run; the batched loop then stacks
what it finds here. The batched optimizer and scheduler are built by the same component API
(src/optimizers.py) from the same config nodes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from src import families, implementations, optimizers
from src.trainer import resolve_device, seed_everything


@dataclass
class SoloStart:
    strategy: object  # the solo strategy (src.implementations), its parameters at their start
    optimizer: object  # the torch.optim optimizer the solo run would step
    random_state: object  # `random` as the solo loop finds it (the dynamic model's depth draws)


def family_of(cfg) -> families.Family:
    return families.of(cfg.model)


def style_of(cfg) -> implementations.Style:
    return implementations.of(cfg.implementation)


def device_of(cfg):
    return resolve_device(cfg.device.name, style_of(cfg))


def solo_start(cfg, seed: int) -> SoloStart:
    seed_everything(seed)
    family, style = family_of(cfg), style_of(cfg)
    strategy = style.build(family, cfg.model.init, resolve_device(cfg.device.name, style))
    optimizer = optimizers.build(cfg.optimizer, strategy.params)
    return SoloStart(strategy, optimizer, random.getstate())


def batched_optimizer(cfg, params):
    """The solo run's optimizer component (the same node, the same constructor), over the stacked
    parameters."""
    return optimizers.build(cfg.optimizer, list(params))


def batched_scheduler(cfg, optimizer):
    """The solo run's scheduler component on the batched optimizer, or None (scheduler=none).
    Its lr depends on the step count only, so every member sees the solo run's sequence."""
    return optimizers.build(cfg.scheduler, optimizer) if cfg.get("scheduler") else None

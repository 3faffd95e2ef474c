"""The one adapter between a batched group and the solo code: a member's start, as fit() makes it.

For each member this calls what src.trainer.fit calls, in the same order (seed_everything, the
implementation's strategy, the optimizer), so every draw comes from the same generators in the
same order as the member's solo run; the batched loop then stacks what it finds here. After the
optimizer component model changes (conf/optimizer with _target_), `solo_start` is the only
place to re-point.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from src import implementations, optimizers
from src.models import FAMILIES
from src.trainer import resolve_device, seed_everything


@dataclass
class SoloStart:
    strategy: object  # the solo strategy (src.implementations), its parameters at their start
    optimizer: object  # the torch.optim optimizer the solo run would step
    random_state: object  # `random` as the solo loop finds it (the dynamic model's depth draws)


def family_of(cfg):
    return FAMILIES[cfg.model.name]


def device_of(cfg):
    return resolve_device(cfg.device.name, cfg.implementation.name)


def solo_start(cfg, seed: int) -> SoloStart:
    seed_everything(seed)
    strategy = implementations.build(cfg.implementation.name, family_of(cfg), cfg.model.init,
                                     device_of(cfg))
    optimizer = optimizers.build(cfg.optimizer, strategy.params)
    return SoloStart(strategy, optimizer, random.getstate())


def batched_optimizer(template, params):
    """The same optimizer class and settings as the solo run's, over stacked parameters."""
    return type(template)(list(params), **template.defaults)

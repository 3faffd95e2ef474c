"""Each sweep job composed once, and seed variants of a job derived instead of composed.

Hydra composes every job of a sweep from scratch (defaults tree, every yaml, every merge): about
0.15 s a job here, which dominates a seed study of short jobs (64 seeds: ~10 s of composing for
~2 s of batched training). Jobs whose overrides differ only in `seed=<int>` compose to the same
config but for `seed` and the two places Hydra records the overrides (hydra.overrides.task,
hydra.job.override_dirname), so the second and later ones are copies with those three set.

Guarded: the first derived job of each family is also composed by Hydra and the two compared
in full; any difference (a Hydra that records overrides elsewhere, a `seed` that is a config
group, a config that reads the seed at composition) turns derivation off for that family, with
one log line, and every job is composed as before.
"""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from typing import Optional

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import OverrideType
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)

SEED_KEY = "seed"


@dataclass
class Family:
    """Jobs whose overrides differ only in the seed: one composed config they are derived from."""
    template: DictConfig
    seed_line: str  # the template's own `seed=...` override
    verified: bool = False
    derive: bool = True


def seed_override(overrides: list) -> Optional[tuple[int, int]]:
    """(position, seed) of a plain `seed=<int>` override, if it is the only seed override."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    found = [(i, o) for i, o in enumerate(parsed) if o.key_or_group == SEED_KEY]
    if len(found) != 1:
        return None
    i, override = found[0]
    value = override.value() if override.type == OverrideType.CHANGE else None
    if override.package is not None or isinstance(value, bool) or not isinstance(value, int):
        return None
    return i, value


def family_key(overrides, position: int) -> tuple:
    """A job's overrides with its seed override (at position) left out: its family's key."""
    return tuple(overrides[:position]) + (None,) + tuple(overrides[position + 1:])


def overrides_dirname(cfg: DictConfig) -> str:
    """hydra.job.override_dirname for cfg's task overrides, as Hydra computes it."""
    from hydra._internal.config_loader_impl import get_overrides_dirname  # guarded: see above

    settings = cfg.hydra.job.config.override_dirname
    parsed = OverridesParser.create().parse_overrides(list(cfg.hydra.overrides.task))
    return get_overrides_dirname(overrides=parsed, kv_sep=settings.kv_sep,
                                 item_sep=settings.item_sep, exclude_keys=settings.exclude_keys)


def with_seed(family: Family, seed: int, seed_line: str) -> DictConfig:
    """The family's template, as Hydra would have composed it with `seed_line` instead."""
    cfg = copy.deepcopy(family.template)
    with read_write(cfg), open_dict(cfg):
        cfg[SEED_KEY] = seed
        task = list(cfg.hydra.overrides.task)
        task[task.index(family.seed_line)] = seed_line
        cfg.hydra.overrides.task = task
        cfg.hydra.job.override_dirname = overrides_dirname(cfg)
    return cfg


def task_config(config: DictConfig) -> DictConfig:
    """What the task sees, as Hydra's run_job makes it (a copy without the hydra node), without
    copying the hydra node first: the copy shares it (deepcopy's memo) and drops it (0.65 ms
    against 4.7 ms a job for a copy of everything)."""
    hydra_node = config._get_node("hydra")
    cfg = copy.deepcopy(config, memo={id(hydra_node): hydra_node})
    with read_write(cfg), open_dict(cfg):
        del cfg["hydra"]
    return cfg


def same_config(a: DictConfig, b: DictConfig) -> bool:
    return OmegaConf.to_container(a, resolve=False) == OmegaConf.to_container(b, resolve=False)


class ComposeOnceLoader:
    """A config loader that composes each sweep job once, deriving seed variants.

    The validating sweeper composes every job of a batch (to check it) and remembers it; the
    launcher, asking for the same job, is handed that config instead of a second composition.
    """

    def __init__(self, loader) -> None:
        self.loader = loader
        self.composed: dict = {}
        self.families: dict = {}

    def remember(self, overrides, cfg: DictConfig) -> None:
        self.composed[tuple(overrides)] = cfg

    def variant(self, overrides) -> Optional[tuple[Family, int]]:
        """(family, seed) if this job is a seed variant of a family whose derivation was verified
        against Hydra's composition (nothing is composed or copied here)."""
        seed = seed_override(list(overrides))
        if seed is None:
            return None
        position, value = seed
        family = self.families.get(family_key(overrides, position))
        return (family, value) if family is not None and family.verified else None

    def variant_task_config(self, overrides) -> Optional[DictConfig]:
        """For a verified seed variant, what its task sees (the family's config without the hydra
        node, with the seed set), without deriving the whole job; else None."""
        variant = self.variant(overrides)
        if variant is None:
            return None
        family, seed = variant
        cfg = task_config(family.template)
        with read_write(cfg), open_dict(cfg):
            cfg[SEED_KEY] = seed
        return cfg

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list) -> DictConfig:
        cfg = self.composed.pop(tuple(sweep_overrides), None)
        return cfg if cfg is not None else self.compose(master_config, list(sweep_overrides))

    def compose(self, master_config: DictConfig, overrides: list) -> DictConfig:
        seed = seed_override(overrides)
        if seed is None:
            return self.loader.load_sweep_config(master_config, overrides)
        position, value = seed
        key = family_key(overrides, position)
        family = self.families.get(key)
        if family is None or not family.derive:
            cfg = self.loader.load_sweep_config(master_config, overrides)
            if family is None:
                # a private copy: the job's own config is run (Hydra marks its hydra node
                # read-only), while the family's other jobs may be derived later
                self.families[key] = Family(copy.deepcopy(cfg), overrides[position])
            return cfg
        derived = self.derive(family, value, overrides[position])
        if derived is None or not family.verified:
            composed = self.loader.load_sweep_config(master_config, overrides)
            family.verified = derived is not None and same_config(derived, composed)
            if not family.verified:
                family.derive = False
                log.warning("seed variants of %s are composed one by one: a derived config "
                            "differs from Hydra's composition", " ".join(overrides))
            return composed
        return derived

    @staticmethod
    def derive(family: Family, seed: int, seed_line: str) -> Optional[DictConfig]:
        try:
            return with_seed(family, seed, seed_line)
        except Exception as exc:  # e.g. Hydra moved get_overrides_dirname: compose instead
            log.warning("seed variants are composed one by one: %s", exc)
            return None

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __getstate__(self) -> dict:  # to launcher workers: no composed configs
        return {"loader": self.loader, "composed": {}, "families": {}}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

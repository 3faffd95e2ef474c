"""Typed config schema, Hydra registration, and the checks that refuse bad input before any run.

The YAML groups live in conf/ (model, implementation, optimizer, scheduler, device; components
named by `_target_`) and the named tutorial presets in experiments/; this module registers the
schema they are checked against and the presets as the Hydra group `experiment`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any, List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, OmegaConf

from src.paths import REPO_ROOT

CONF_DIR = REPO_ROOT / "conf"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
CONFIG_NAME = "train"


@dataclass
class ModelConfig:
    _target_: str = MISSING  # a src.families.Family subclass
    init: Optional[List[float]] = None  # None: standard-normal draws, as in the tutorial


@dataclass
class DeviceConfig:
    name: str = MISSING


@dataclass
class TrackingConfig:
    uri: Optional[str] = None  # None: $MLFLOW_TRACKING_URI, else sqlite under <repo>/mlruns/
    experiment: str = "pytorch-examples"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    implementation: Any = MISSING  # _target_: a src.implementations.Style subclass
    optimizer: Any = MISSING  # _target_ + _partial_ + name + the constructor's keywords
    scheduler: Any = None  # the same for a torch.optim.lr_scheduler class, or none
    device: DeviceConfig = field(default_factory=DeviceConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    lr: float = MISSING
    seed: int = 0
    steps: int = 2000
    log_every: int = 100
    variant: Optional[str] = None  # set by a preset; otherwise a name is composed from the choices
    resume: bool = False  # skip a job whose config already has a FINISHED run in the experiment


class ConfigError(ValueError):
    """Bad input: the message is one line naming the key and what is allowed."""


def register() -> None:
    """Register the schema, the presets and the ${repo_root:} resolver (idempotent)."""
    if not OmegaConf.has_resolver("repo_root"):
        OmegaConf.register_new_resolver("repo_root", lambda: str(REPO_ROOT))
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    for preset in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        # Hydra groups are folders named like the group; the presets live in experiments/ as the
        # layout asks, so they are stored as the group `experiment` from here.
        cs.store(group="experiment", name=preset.stem, node=OmegaConf.load(preset),
                 package="_global_")


def preset_names() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def composed_variant(cfg: DictConfig) -> str:
    """The name a run is grouped under: its preset, or its choices."""
    if cfg.variant:
        return str(cfg.variant)
    name = f"{model_name(cfg)}-{implementation_name(cfg)}-{cfg.optimizer.name}"
    return name + (f"-{cfg.scheduler.name}" if cfg.get("scheduler") else "")


def model_name(cfg: DictConfig) -> str:
    from src import families

    return families.of(cfg.model).name


def implementation_name(cfg: DictConfig) -> str:
    from hydra.utils import get_class

    return get_class(str(cfg.implementation._target_)).name


def _hash(cfg: DictConfig, leave_out: tuple) -> str:
    content = OmegaConf.to_container(cfg, resolve=True)
    for key in leave_out:
        content.pop(key, None)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def config_hash(cfg: DictConfig) -> str:
    """Identity of what a run computes: the resolved config minus where it is tracked."""
    return _hash(cfg, ("tracking", "resume"))


def seed_group_hash(cfg: DictConfig) -> str:
    """Identity of a configuration across seeds: runs that differ only in `seed` share it."""
    return _hash(cfg, ("tracking", "resume", "seed"))


def validate(cfg: DictConfig) -> None:
    """Refuse what cannot run, with one line naming the key and the allowed values.

    Unknown options of a group (model=foo, optimizer=foo, ...) Hydra refuses itself, listing
    the options it found on its search path.
    """
    validate_settings(cfg)
    validate_components(cfg)


def check_seed(seed: int) -> None:
    if not 0 <= seed <= 2**32 - 1:  # numpy's seed range
        raise ConfigError(f"seed={seed}: must be an integer in 0..{2**32 - 1}")


def validate_settings(cfg: DictConfig) -> None:
    """Every check but building the optimizer and scheduler (see validate_components)."""
    from src import families

    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ConfigError(f"lr={cfg.lr}: must be a finite number > 0")
    if cfg.steps <= 0:
        raise ConfigError(f"steps={cfg.steps}: must be an integer > 0")
    if cfg.log_every <= 0:
        raise ConfigError(f"log_every={cfg.log_every}: must be an integer > 0")
    check_seed(cfg.seed)
    try:
        family = families.of(cfg.model)
    except (ImportError, AttributeError, TypeError) as exc:
        raise ConfigError(f"model._target_={cfg.model._target_}: {exc}") from None
    from src import implementations  # torch: the run needs it next anyway

    style = implementations.of(cfg.implementation)
    if not style.supports(family):
        raise ConfigError(
            f"model={family.name} with implementation={style.name} is not supported; "
            f"implementation={style.name} supports model: {', '.join(style.families)}"
        )
    n_coefs = len(family.coefficient_names)
    if cfg.model.init is not None and len(cfg.model.init) != n_coefs:
        raise ConfigError(
            f"model.init={list(cfg.model.init)}: model={family.name} needs {n_coefs} values or null"
        )
    if style.cpu_only and cfg.device.name == "cuda":
        raise ConfigError(f"device=cuda with implementation={style.name}: {style.name} runs on "
                          "the CPU; allowed device: cpu, auto")
    if cfg.device.name == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device=cuda: CUDA is not available on this machine; "
                              "allowed here: cpu, auto")


def validate_components(cfg: DictConfig) -> None:
    """The optimizer and scheduler nodes build (each once, on a dummy parameter).

    Separate because the first torch.optim optimizer of a process imports torch._dynamo (about
    1.5 s): a single run opens its store first, so that the store opens meanwhile.
    """
    from src import optimizers

    try:
        optimizers.check_optimizer(cfg.optimizer)
        if cfg.get("scheduler"):
            optimizers.check_scheduler(cfg.scheduler)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def compose(overrides=()) -> DictConfig:
    """The config a run with these command-line overrides gets (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"):
        return hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))

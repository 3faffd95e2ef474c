"""Typed config schema, Hydra registration, and the checks that refuse bad input before any run.

The YAML groups live in conf/ (model, implementation, optimizer, device) and the named tutorial
presets in experiments/; this module registers the schema they are checked against and the
presets as the Hydra group `experiment`.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import II, MISSING, DictConfig, OmegaConf

REPO_ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = REPO_ROOT / "conf"
EXPERIMENTS_DIR = REPO_ROOT / "experiments"
CONFIG_NAME = "train"

MODELS = ("cubic", "legendre", "dynamic")
IMPLEMENTATIONS = ("numpy", "tensor", "autograd", "nn", "module")
OPTIMIZERS = ("sgd", "momentum", "rmsprop", "adam")
DEVICES = ("cpu", "cuda", "auto")
# Which models each implementation can express; every optimizer works with every implementation.
SUPPORTED_MODELS = {
    "numpy": MODELS,
    "tensor": MODELS,
    "autograd": MODELS,
    "nn": ("cubic",),  # Linear(3, 1) on (x, x^2, x^3) is exactly the cubic
    "module": MODELS,
}


@dataclass
class ModelConfig:
    name: str = MISSING
    init: Optional[List[float]] = None  # None: standard-normal draws, as in the tutorial


@dataclass
class ImplementationConfig:
    name: str = MISSING


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = II("lr")  # the top-level `lr` is the knob; logged here too as optimizer.lr
    momentum: float = 0.0


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
    implementation: ImplementationConfig = field(default_factory=ImplementationConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
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
    return f"{cfg.model.name}-{cfg.implementation.name}-{cfg.optimizer.name}"


def config_hash(cfg: DictConfig) -> str:
    """Identity of what a run computes: the resolved config minus where it is tracked."""
    content = OmegaConf.to_container(cfg, resolve=True)
    for key in ("tracking", "resume"):
        content.pop(key, None)
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:20]


def _one_of(key: str, value: str, allowed) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}={value}: unknown; allowed: {', '.join(allowed)}")


def validate(cfg: DictConfig) -> None:
    """Refuse what cannot run, with one line naming the key and the allowed values."""
    _one_of("model", cfg.model.name, MODELS)
    _one_of("implementation", cfg.implementation.name, IMPLEMENTATIONS)
    _one_of("optimizer", cfg.optimizer.name, OPTIMIZERS)
    _one_of("device", cfg.device.name, DEVICES)
    if not (cfg.lr > 0 and math.isfinite(cfg.lr)):
        raise ConfigError(f"lr={cfg.lr}: must be a finite number > 0")
    if cfg.steps <= 0:
        raise ConfigError(f"steps={cfg.steps}: must be an integer > 0")
    if cfg.log_every <= 0:
        raise ConfigError(f"log_every={cfg.log_every}: must be an integer > 0")
    if not 0 <= cfg.seed <= 2**32 - 1:  # numpy's seed range
        raise ConfigError(f"seed={cfg.seed}: must be an integer in 0..{2**32 - 1}")
    if not 0 <= cfg.optimizer.momentum < 1:
        raise ConfigError(f"optimizer.momentum={cfg.optimizer.momentum}: must be in [0, 1)")
    if cfg.optimizer.name == "adam" and cfg.optimizer.momentum != 0:
        raise ConfigError("optimizer.momentum: adam takes none; "
                          "momentum applies to optimizer: sgd, momentum, rmsprop")
    impl, model = cfg.implementation.name, cfg.model.name
    if model not in SUPPORTED_MODELS[impl]:
        supported = ", ".join(SUPPORTED_MODELS[impl])
        raise ConfigError(
            f"model={model} with implementation={impl} is not supported; "
            f"implementation={impl} supports model: {supported}"
        )
    n_coefs = 5 if model == "dynamic" else 4
    if cfg.model.init is not None and len(cfg.model.init) != n_coefs:
        raise ConfigError(
            f"model.init={list(cfg.model.init)}: model={model} needs {n_coefs} values or null"
        )
    if impl == "numpy" and cfg.device.name == "cuda":
        raise ConfigError("device=cuda with implementation=numpy: numpy runs on the CPU; "
                          "allowed device: cpu, auto")
    if cfg.device.name == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("device=cuda: CUDA is not available on this machine; "
                              "allowed here: cpu, auto")


def compose(overrides=()) -> DictConfig:
    """The config a run with these command-line overrides gets (Hydra's compose API)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    register()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"):
        return hydra_compose(config_name=CONFIG_NAME, overrides=list(overrides))

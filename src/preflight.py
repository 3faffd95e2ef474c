"""Bad input is refused before anything runs, in one line naming the key and the allowed values.

Hydra composes the config of a run, and of every job of a sweep, before launching anything;
`validate_every_job` adds our semantic checks (config.validate) to that pass, and `describe`
turns Hydra's several-line composition errors into one line.
"""

from __future__ import annotations

import re

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from src.config import TrainConfig, validate


def validate_every_job() -> None:
    """Make Hydra's own pre-launch pass run our checks too, and compose each job only once.

    Before launching a batch, a Hydra sweeper composes every job in it
    (Sweeper.validate_batch_is_legal) to catch composition errors early, and the launcher then
    composes each job again (ConfigLoaderImpl.load_sweep_config). We run config.validate on the
    first composition, so a sweep with any bad job is refused before its first job starts, and
    hand that same composition to the launcher instead of composing it a second time (about
    60 ms a job). Both hooks are Hydra 1.3's (hydra-core is pinned).
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.plugins.sweeper import Sweeper

    from src.tracking import sweep

    compose = ConfigLoaderImpl.load_sweep_config
    validated: dict = {}  # (loader, master config, overrides) -> composed job config, used once

    def load_sweep_config(self, master_config, sweep_overrides):
        key = (id(self), id(master_config), tuple(sweep_overrides))
        cfg = validated.pop(key, None)
        return cfg if cfg is not None else compose(self, master_config, sweep_overrides)

    def validate_batch_is_legal(self, batch) -> None:
        context = getattr(self, "hydra_context", None)
        loader = context.config_loader if context is not None else self.config_loader
        for overrides in batch:
            cfg = compose(loader, self.config, list(overrides))
            validate(cfg)
            validated[(id(loader), id(self.config), tuple(overrides))] = cfg
        sweep.start_pending()  # all good: the sweep's parent run may now exist
        sweep.expect(len(batch))

    ConfigLoaderImpl.load_sweep_config = load_sweep_config
    Sweeper.validate_batch_is_legal = validate_batch_is_legal


def describe(exc: Exception) -> str:
    """One line for a Hydra composition error."""
    message, cause = str(exc), exc.__cause__
    missing = re.search(r"Could not find '([^']+)/([^']+)'", message)
    if missing and getattr(exc, "options", None):
        group, option = missing.groups()
        return f"{group}={option}: unknown option; allowed: {', '.join(exc.options)}"
    if isinstance(cause, ConfigAttributeError) and getattr(cause, "full_key", None):
        key = cause.full_key
        parent = key.rpartition(".")[0]
        schema = OmegaConf.structured(TrainConfig)
        node = OmegaConf.select(schema, parent) if parent else schema
        allowed = sorted(node.keys()) if node is not None else []
        if not parent:
            allowed = sorted(allowed + ["experiment"])
        return f"{key}: unknown key; allowed{' in ' + parent if parent else ''}: {', '.join(allowed)}"
    if isinstance(cause, ValidationError):
        override = re.search(r"override (\S+)", message)
        where = override.group(1) if override else getattr(cause, "full_key", "config")
        return f"{where}: {first_line(str(cause))}"
    return first_line(message)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text

"""Check a whole command line before anything runs: every job of a sweep is composed and validated.

Hydra would report composition errors over several lines, and only when a job starts; here every
job is composed up front and any problem becomes one line naming the key and the allowed values,
so a sweep with one bad job creates no run at all.
"""

from __future__ import annotations

import re

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from src.config import CONF_DIR, CONFIG_NAME, ConfigError, TrainConfig, register, validate

SKIP_FLAGS = ("help", "hydra_help", "info", "cfg", "shell_completion", "version",
              "experimental_rerun")


def check_command_line(argv: list[str]) -> int:
    """Raise ConfigError for the first bad job; return how many jobs the command line makes."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(argv)
    if any(getattr(args, flag, None) for flag in SKIP_FLAGS):
        return 0
    return check_overrides(list(args.overrides), multirun=bool(args.multirun))


def check_overrides(overrides: list[str], multirun: bool = False) -> int:
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    register()
    # Launcher and sweeper settings are Hydra's business, not the job's.
    own = [o for o in overrides if not o.lstrip("+~").startswith("hydra")]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="train"):
        jobs = [own]
        if multirun:
            parser = OverridesParser.create(config_loader=GlobalHydra.instance().config_loader())
            try:
                parsed = parser.parse_overrides(own)
            except HydraException as exc:
                raise ConfigError(first_line(str(exc))) from None
            # Interval sweeps (Optuna) are checked per job when they are drawn.
            discrete = [o for o in parsed if not o.is_sweep_override() or o.is_discrete_sweep()]
            jobs = BasicSweeper.split_arguments(discrete, None)[0]
        for job in jobs:
            try:
                cfg = compose(config_name=CONFIG_NAME, overrides=job)
            except HydraException as exc:
                raise ConfigError(describe(exc)) from None
            validate(cfg)
    return len(jobs)


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

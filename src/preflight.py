"""Bad input is refused before anything runs, in one line naming the key and the allowed values.

Hydra composes the config of a run, and of every job of a sweep, before launching anything;
our sweeper adds config.validate to that pass (hydra_plugins/harness_sweeper), and `describe`
turns Hydra's several-line composition errors into one line.
"""

from __future__ import annotations

import re

from omegaconf import OmegaConf
from omegaconf.errors import ConfigAttributeError, ValidationError

from src.config import TrainConfig


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
        if not allowed:  # a component node (optimizer, scheduler): its keys are its constructor's
            return (f"{key}: not in the {parent} config; a keyword its constructor takes is "
                    f"added with +{key}=VALUE")
        return f"{key}: unknown key; allowed{' in ' + parent if parent else ''}: {', '.join(allowed)}"
    if isinstance(cause, ValidationError):
        override = re.search(r"override (\S+)", message)
        where = override.group(1) if override else getattr(cause, "full_key", "config")
        return f"{where}: {first_line(str(cause))}"
    return first_line(message)


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else text

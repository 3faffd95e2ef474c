"""Optimizers and learning-rate schedulers: Hydra components, plus the tutorial's own update.

conf/optimizer/<name>.yaml and conf/scheduler/<name>.yaml name a class with `_target_` and
`_partial_: true`; `build` instantiates it with hydra.utils.instantiate and hands it the
parameters (or the optimizer). Each node also carries a `name`, the component's identity in
variant names, tags and the comparison report; it is not a constructor argument.

`check` refuses a node that cannot be built, in one line, before anything runs: a keyword the
constructor does not take (read from its signature), a value the constructor rejects (it is
built once on a dummy parameter), an optimizer whose step needs a closure (LBFGS).
"""

from __future__ import annotations

import inspect
import json

import torch
from hydra.utils import get_class, instantiate
from omegaconf import OmegaConf

IDENTITY_KEY = "name"


class ManualSGD(torch.optim.Optimizer):
    """The tutorial's hand-written update, `p -= lr * grad`, operation for operation.

    torch.optim.SGD computes `p.add_(grad, alpha=-lr)` (one fused multiply-add), which rounds
    differently in float32; this keeps the presets of the hand-written sections bit-identical to
    the tutorial's programs.
    """

    def __init__(self, params, lr: float):
        if not lr > 0:
            raise ValueError(f"Invalid learning rate: {lr}")
        super().__init__(params, dict(lr=lr))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p -= group["lr"] * p.grad


def arguments(node) -> dict:
    """The node as instantiate takes it: resolved, without the identity key."""
    content = OmegaConf.to_container(node, resolve=True)
    content.pop(IDENTITY_KEY, None)
    return content


def build(node, first_argument):
    """Instantiate a component node and call the partial with its first argument."""
    return instantiate(arguments(node))(first_argument)


def keywords(cls, first: str) -> list[str]:
    """What a component's constructor takes besides its first argument (params / optimizer)."""
    return [name for name, p in inspect.signature(cls.__init__).parameters.items()
            if name not in ("self", first)
            and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


_built: set = set()  # nodes (resolved) already checked: a seed study checks one node many times


def check(group: str, node, base: type, first: str, dummy_first) -> None:
    """Raise ValueError (one line, naming the key and what is allowed) if `node` cannot build."""
    target = node.get("_target_")
    try:
        cls = get_class(str(target))
    except Exception:
        raise ValueError(f"{group}._target_={target}: not an importable class") from None
    if not issubclass(cls, base):
        raise ValueError(f"{group}._target_={target}: not a {base.__module__}.{base.__name__}")
    allowed = keywords(cls, first)
    content = arguments(node)
    kwargs = {k: v for k, v in content.items() if not k.startswith("_")}
    for key in kwargs:
        if key not in allowed:
            raise ValueError(f"{group}.{key}: {cls.__name__} does not take it; "
                             f"allowed: {', '.join(allowed)}")
    if group == "optimizer":
        closure = inspect.signature(cls.step).parameters.get("closure")
        if closure is not None and closure.default is inspect.Parameter.empty:
            raise ValueError(f"{group}={node.get(IDENTITY_KEY, target)}: {cls.__name__} needs a "
                             "closure that recomputes the loss; this loop steps once per loss, "
                             "use another optimizer")
    identity = (group, json.dumps(content, sort_keys=True, default=repr))
    if identity in _built:
        return
    try:
        build(node, dummy_first())
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{group}: {cls.__name__}({', '.join(f'{k}={v}' for k, v in kwargs.items())})"
                         f" refused: {exc}") from None
    _built.add(identity)


def dummy_optimizer() -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)


def check_optimizer(node) -> None:
    check("optimizer", node, torch.optim.Optimizer, "params",
          lambda: [torch.zeros(1, requires_grad=True)])


def check_scheduler(node) -> None:
    check("scheduler", node, torch.optim.lr_scheduler.LRScheduler, "optimizer", dummy_optimizer)

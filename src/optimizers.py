"""The optimizer group: names in conf/optimizer/ mapped to torch.optim classes."""

from __future__ import annotations

import torch


def build(cfg, params):
    """cfg is the `optimizer` node: name, lr, momentum."""
    params = list(params)
    if cfg.name in ("sgd", "momentum"):  # `momentum` is SGD with momentum 0.9 by default
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.name == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr)
    raise ValueError(f"optimizer={cfg.name}")  # config.validate refuses this earlier

"""The one training loop every variant runs (no tracking here: losses go to a callback)."""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from src import families, implementations, optimizers

log = logging.getLogger(__name__)

# Steps handed to the loss callback at a time: each batch costs the recorder one MLflow call
# besides the bulk insert, and the progress bar moves by it.
FLUSH_EVERY = 5000
PROGRESS_DELAY_S = 3.0  # the bar appears only for runs longer than this

# (first step, values, timestamps in ms): the loss of each step, or (with a scheduler) its lr
SeriesCallback = Callable[[int, list, list], None]


@dataclass
class FitResult:
    losses: list  # loss at step 0, 1, ... (up to, not including, a non-finite one)
    lrs: Optional[list]  # with a scheduler: the learning rate each step's update used
    coefficients: dict
    formula: str
    wall_time_s: float
    diverged_step: Optional[int]
    device: str
    x: np.ndarray
    y: np.ndarray
    y_fit: np.ndarray

    @property
    def final_loss(self) -> float:
        """The loss at the last step (the number the tutorial prints last); inf if diverged."""
        return math.inf if self.diverged_step is not None else self.losses[-1]


def seed_everything(seed: int) -> None:
    """What the tutorial's scripts would begin with to be reproducible."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device_name: str, style) -> Optional[torch.device]:
    """None for a CPU-only style (numpy, float64); otherwise the torch device, `auto` = cuda if
    present."""
    if style.cpu_only:
        return None
    if device_name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device_name)


def fit(cfg, on_losses: Optional[SeriesCallback] = None,
        on_lrs: Optional[SeriesCallback] = None) -> FitResult:
    """Train one configured variant; `cfg` must have passed config.validate."""
    seed_everything(cfg.seed)
    family = families.of(cfg.model)
    style = implementations.of(cfg.implementation)
    device = resolve_device(cfg.device.name, style)
    strategy = style.build(family, cfg.model.init, device)
    optimizer = optimizers.build(cfg.optimizer, strategy.params)
    scheduler = optimizers.build(cfg.scheduler, optimizer) if cfg.get("scheduler") else None

    steps, log_every = int(cfg.steps), int(cfg.log_every)  # plain ints: DictConfig access is slow
    losses, stamps, flushed = [], [], 0
    lrs = [] if scheduler is not None else None
    diverged_step = None

    def flush():
        nonlocal flushed
        if on_losses is not None and flushed < len(losses):
            on_losses(flushed, losses[flushed:], stamps[flushed:])
        if on_lrs is not None and lrs and flushed < len(lrs):
            on_lrs(flushed, lrs[flushed:], stamps[flushed:])
        progress.update(len(losses) - flushed)
        flushed = len(losses)

    progress = tqdm(total=steps, delay=PROGRESS_DELAY_S, unit="step", leave=False, disable=None,
                    desc=cfg.variant or family.name)
    with logging_redirect_tqdm():
        start = time.perf_counter()
        try:
            for t in range(steps):
                loss = strategy.loss_and_gradients()
                if not math.isfinite(loss):
                    diverged_step = t
                    log.warning("diverged: loss %s at step %d; run stops here", loss, t)
                    break
                losses.append(loss)
                stamps.append(time.time_ns() // 1_000_000)
                if scheduler is not None:
                    lrs.append(optimizer.param_groups[0]["lr"])
                optimizer.step()
                optimizer.zero_grad()
                if scheduler is not None:
                    scheduler.step()
                if t % log_every == log_every - 1:
                    log.info("%d %s", t, loss)
                if len(losses) - flushed >= FLUSH_EVERY:
                    flush()
        finally:
            wall_time_s = time.perf_counter() - start
            flush()  # also on Ctrl-C / SIGTERM: the curve so far reaches the callback
            progress.close()

    coefficients = strategy.coefficients()
    formula = family.formula(coefficients)
    log.info("Result: %s", formula)
    x = strategy.x if device is None else strategy.x.cpu().numpy()
    y = strategy.y if device is None else strategy.y.cpu().numpy()
    return FitResult(losses, lrs, coefficients, formula, wall_time_s, diverged_step,
                     str(device or "cpu"), x, y, strategy.predict())

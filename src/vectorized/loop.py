"""The training loop of src/trainer.py for a group of members that differ only in seed.

`fit_group` trains every member in one batched computation and returns, per member, the
FitResult its solo `src.trainer.fit` would return (same losses, coefficients, diverged step).
A member whose loss goes non-finite stops alone: its curve ends there and its parameters and
optimizer state stay as they were. Groups that cannot be batched exactly (see `why_not_batched`)
run member by member through src.trainer.fit, and the log says why.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from src.optimizers import ManualSGD
from src.trainer import FLUSH_EVERY, FitResult, fit
from src.vectorized import styles
from src.vectorized.families import DRAWS_DEPTH, SKIPPABLE, forward_of
from src.vectorized.solo import (
    batched_optimizer,
    batched_scheduler,
    device_of,
    family_of,
    solo_start,
    style_of,
)

log = logging.getLogger(__name__)

# A group's curves go to the recorder in pieces of about this many values (and at least every
# FLUSH_EVERY steps, as a solo run's do), so that it writes them while the group trains.
SEND_ROWS = 8192
MemberSeriesCallback = Callable[[int, int, list, list], None]  # (member, first step, values, ms)

# Optimizers whose update of a parameter reads only that parameter's own elementwise state, so a
# member's skipped step can be undone row by row. Adam is not one: its bias correction counts
# the steps a parameter was updated (one counter for all members), so groups in which a
# member's solo run would skip a parameter (dynamic model, autograd styles) run member by member.
ROW_MASKABLE_OPTIMIZERS = (ManualSGD, torch.optim.SGD, torch.optim.RMSprop)
# Optimizers whose update is elementwise, one batched instance doing for each member's rows what
# the member's own instance does (the identity tests cover each): any other optimizer component
# (a user's, Adagrad, ...) runs member by member rather than be assumed elementwise.
BATCHED_OPTIMIZERS = (ManualSGD, torch.optim.SGD, torch.optim.RMSprop, torch.optim.Adam,
                      torch.optim.AdamW)
# Schedulers whose lr depends on the step count alone, so one on the batched optimizer gives
# every member its solo run's lr sequence; any other runs member by member.
BATCHED_SCHEDULERS = (torch.optim.lr_scheduler.StepLR, torch.optim.lr_scheduler.ExponentialLR,
                      torch.optim.lr_scheduler.CosineAnnealingLR)


@dataclass
class GroupResult:
    members: list  # FitResult per member, in member order
    wall_time_s: float  # the group's own loop time (each member's wall_time_s is a share of it)
    batched: bool
    reason: Optional[str] = None  # why the group ran member by member


def skips_parameters(family, style) -> bool:
    """A coefficient left out of the autograd graph on some steps gets no grad (no update)."""
    return type(family) in SKIPPABLE and isinstance(style, styles.AUTOGRAD)


def why_not_batched(cfg, family, style, optimizer) -> Optional[str]:
    """Why this group cannot run batched bit-identically (None: it can)."""
    if forward_of(family) is None or not styles.batchable(style):
        return (f"model={family.name} implementation={style.name} has no batched forward in "
                "src/vectorized/ (families.FORWARDS, styles.BUILDERS)")
    if type(optimizer) not in BATCHED_OPTIMIZERS:  # a subclass may do anything
        return (f"optimizer {type(optimizer).__name__} is not one known to update elementwise "
                "(loop.BATCHED_OPTIMIZERS)")
    if cfg.get("scheduler"):
        scheduler = batched_scheduler(cfg, batched_optimizer(cfg, [torch.zeros(1)]))
        if type(scheduler) not in BATCHED_SCHEDULERS:
            return (f"scheduler {type(scheduler).__name__} is not one whose lr depends on the step "
                    "alone (loop.BATCHED_SCHEDULERS)")
    if skips_parameters(family, style) and type(optimizer) not in ROW_MASKABLE_OPTIMIZERS:
        return (f"optimizer {type(optimizer).__name__} counts each parameter's updates, and "
                f"model={family.name} skips `{SKIPPABLE[type(family)]}` per member")
    return None


def fit_group(cfgs: list, on_losses: Optional[MemberSeriesCallback] = None,
              on_lrs: Optional[MemberSeriesCallback] = None) -> GroupResult:
    """cfgs: validated member configs that differ only in seed. on_losses / on_lrs get each
    member's loss (and, with a scheduler, lr) series, as src.trainer.fit's callbacks do."""
    cfg = cfgs[0]
    family, style = family_of(cfg), style_of(cfg)
    starts = [solo_start(cfg, int(c.seed)) for c in cfgs]
    reason = why_not_batched(cfg, family, style, starts[0].optimizer)
    if reason is not None:
        log.info("group of %d runs member by member: %s", len(cfgs), reason)
        return fit_one_by_one(cfgs, on_losses, on_lrs, reason)
    # nn's matrix products go through BLAS, whose sums depend on the thread count: they must run
    # with the solo run's threads (measured: with one thread they differ from step 1)
    threads = (contextlib.nullcontext() if isinstance(style, styles.implementations.Sequential)
               else one_thread())
    with threads:
        return BatchedFit(cfg, family, style, [int(c.seed) for c in cfgs], starts, on_losses,
                          on_lrs).run()


@contextlib.contextmanager
def one_thread():
    """torch's intra-op threads for the batched loop: one.

    A group's tensors ([S, 2000]) are big enough for torch to split elementwise ops across
    threads, which only adds synchronisation on a machine whose other core runs the recorder
    (measured on 2 cores: 64 members, 200 steps, 2.05 s with 2 threads, 0.36 s with 1). The
    arithmetic of the elementwise ops and row sums is the same either way (not of BLAS matrix
    products: see fit_group).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def fit_one_by_one(cfgs, on_losses, on_lrs, reason) -> GroupResult:
    def member(callback, i):
        return None if callback is None else functools.partial(callback, i)

    results = [fit(c, on_losses=member(on_losses, i), on_lrs=member(on_lrs, i))
               for i, c in enumerate(cfgs)]
    return GroupResult(results, sum(r.wall_time_s for r in results), False, reason)


class MaskedStep:
    """optimizer.step() that leaves chosen members' rows (parameter and state) untouched."""

    def __init__(self, optimizer, n_members: int):
        self.optimizer, self.n = optimizer, n_members

    def rows(self, tensor):
        return tensor.dim() > 0 and tensor.shape[0] == self.n

    def __call__(self, keep: dict) -> None:
        """keep: parameter -> bool tensor [S], True for members to leave untouched."""
        keep = {p: m for p, m in keep.items() if bool(m.any())}
        saved = {}
        for p, mask in keep.items():
            state = self.optimizer.state.get(p)
            saved[p] = (p.detach().clone(),
                        None if not state else {k: v.clone() for k, v in state.items()
                                                if torch.is_tensor(v) and self.rows(v)})
        self.optimizer.step()
        for p, mask in keep.items():
            old_param, old_state = saved[p]
            shaped = mask.view(self.n, *[1] * (p.dim() - 1))
            with torch.no_grad():
                p.copy_(torch.where(shaped, old_param, p))
                for k, v in self.optimizer.state[p].items():
                    if torch.is_tensor(v) and self.rows(v):
                        # state the solo run has not created yet is zero where it is first made
                        before = torch.zeros_like(v) if old_state is None else old_state[k]
                        v.copy_(torch.where(shaped, before, v))


class BatchedFit:
    def __init__(self, cfg, family, style, seeds, starts, on_losses, on_lrs):
        self.cfg, self.seeds, self.on_losses, self.on_lrs = cfg, seeds, on_losses, on_lrs
        self.family = family
        self.n = len(starts)
        solos = [s.strategy for s in starts]
        self.strategy = styles.build(style, self.family, solos)
        self.optimizer = batched_optimizer(cfg, self.strategy.params)
        self.scheduler = batched_scheduler(cfg, self.optimizer)
        self.masked_step = MaskedStep(self.optimizer, self.n)
        self.numpy = isinstance(style, styles.implementations.Numpy)
        self.device = self.strategy.params[0].device
        self.draws_depth = type(self.family) in DRAWS_DEPTH
        self.rngs = []
        for s in starts:  # each member's own `random`, as its solo loop finds it
            rng = random.Random()
            rng.setstate(s.random_state)
            self.rngs.append(rng)
        skipped = SKIPPABLE.get(type(self.family))
        self.skippable = (self.strategy.params[self.family.coefficient_names.index(skipped)]
                          if skipped and skips_parameters(family, style) else None)

    def depth(self, active: list, rngs=None):
        """Each active member's draw of this step (inactive members draw nothing)."""
        if not self.draws_depth:
            return None
        rngs = rngs or self.rngs
        values = [rng.randint(4, 6) if on else 4 for rng, on in zip(rngs, active)]
        if self.numpy:
            return np.array(values).reshape(-1, 1)
        return torch.tensor(values, device=self.device).reshape(-1, 1)

    def run(self) -> GroupResult:
        steps, log_every = int(self.cfg.steps), int(self.cfg.log_every)
        # The members' losses, step by step, in one preallocated table: a small tensor kept per
        # step would pin the allocator's heap (measured: +0.5 MB a step with 64 members).
        table, stamps = None, []
        lrs = [] if self.scheduler is not None else None  # the lr each step's update used
        diverged = [None] * self.n
        active = [True] * self.n
        flushed = 0

        def flush():
            nonlocal flushed
            recorded = len(stamps)
            if self.on_losses is not None and flushed < recorded:
                block = table[flushed:recorded].tolist()
                for i in range(self.n):
                    end = recorded if diverged[i] is None else min(diverged[i], recorded)
                    if end > flushed:
                        self.on_losses(i, flushed, [r[i] for r in block[:end - flushed]],
                                       stamps[flushed:end])
            if self.on_lrs is not None and lrs and flushed < recorded:
                for i in range(self.n):
                    end = recorded if diverged[i] is None else min(diverged[i], recorded)
                    if end > flushed:
                        self.on_lrs(i, flushed, lrs[flushed:end], stamps[flushed:end])
            flushed = recorded

        start = time.perf_counter()
        try:
            for t in range(steps):
                depth = self.depth(active)
                loss = self.strategy.loss_and_gradients(depth)
                values = loss.tolist()
                for i, v in enumerate(values):
                    if active[i] and not math.isfinite(v):
                        diverged[i], active[i] = t, False
                        log.warning("diverged: member %d (seed %s) loss %s at step %d; it stops "
                                    "here", i, self.seeds[i], v, t)
                if not any(active):
                    break
                if table is None:
                    table = torch.empty((steps, self.n), dtype=loss.dtype)
                table[t].copy_(loss)
                stamps.append(time.time_ns() // 1_000_000)
                if lrs is not None:
                    lrs.append(self.optimizer.param_groups[0]["lr"])
                self.masked_step(self.untouched(active, depth))
                self.optimizer.zero_grad()
                if self.scheduler is not None:
                    self.scheduler.step()
                if t % log_every == log_every - 1:
                    live = [v for v, on in zip(values, active) if on]
                    log.info("%d %s .. %s (%d members)", t, min(live), max(live), len(live))
                unsent = len(stamps) - flushed
                if unsent >= FLUSH_EVERY or unsent * self.n >= SEND_ROWS:
                    flush()
        finally:
            wall_time_s = time.perf_counter() - start
            flush()  # also on Ctrl-C / SIGTERM: every member's curve so far reaches the callback
        recorded = table[:len(stamps)] if table is not None else torch.empty((0, self.n))
        return GroupResult(self.results(recorded, lrs, diverged, wall_time_s), wall_time_s, True)

    def untouched(self, active, depth) -> dict:
        if self.skippable is None and all(active):
            return {}
        frozen = torch.tensor([not on for on in active], device=self.device)
        keep = {p: frozen for p in self.strategy.params}
        if self.skippable is not None:  # the solo run's grad of `e` is None: no update at all
            unused = torch.as_tensor(depth, device=self.device).reshape(-1) == 4
            keep[self.skippable] = frozen | unused
        return keep

    def results(self, table, lrs, diverged, wall_time_s) -> list:
        curves = table.T.tolist()
        coefficients = self.strategy.coefficient_rows()
        # the fit plot's forward pass draws from a copy of each member's `random` (solo: the
        # draws are preserved around it)
        copies = []
        for rng in self.rngs:
            copy = random.Random()
            copy.setstate(rng.getstate())
            copies.append(copy)
        y_fit = self.strategy.predict(self.depth([True] * self.n, copies))
        names = self.family.coefficient_names
        x, y = self.strategy.x, self.strategy.y
        if not self.numpy:
            x, y = x.cpu().numpy(), y.cpu().numpy()
        device = str(device_of(self.cfg) or "cpu")
        out = []
        for i in range(self.n):
            end = len(curves[i]) if diverged[i] is None else diverged[i]
            coefs = dict(zip(names, coefficients[i]))
            out.append(FitResult(curves[i][:end], None if lrs is None else lrs[:end], coefs,
                                 self.family.formula(coefs),
                                 wall_time_s / self.n, diverged[i], device, x, y, y_fit[i]))
        return out

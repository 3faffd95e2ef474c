"""The training loop of src/trainer.py for a group of members that differ only in seed.

`fit_group` trains every member in one batched computation and returns, per member, the
FitResult its solo `src.trainer.fit` would return (same losses, coefficients, diverged step).
A member whose loss goes non-finite stops alone: its curve ends there and its parameters and
optimizer state stay as they were. Groups that cannot be batched exactly (see `why_not_batched`)
run member by member through src.trainer.fit.
"""

from __future__ import annotations

import contextlib
import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from src.trainer import FLUSH_EVERY, FitResult, fit
from src.vectorized import styles
from src.vectorized.families import DRAWS_DEPTH, SKIPPABLE
from src.vectorized.solo import batched_optimizer, device_of, family_of, solo_start

log = logging.getLogger(__name__)

MemberLossCallback = Callable[[int, int, list, list], None]  # (member, first step, losses, ms)

# Optimizers whose update of a parameter reads only that parameter's own elementwise state, so a
# member's skipped step can be undone row by row. Adam is not one: its bias correction counts
# the steps a parameter was updated (one counter for all members), so groups in which a
# member's solo run would skip a parameter (dynamic model, autograd styles) run member by member.
ROW_MASKABLE_OPTIMIZERS = (torch.optim.SGD, torch.optim.RMSprop)
AUTOGRAD_STYLES = ("autograd", "module", "nn")  # a coefficient left out of the graph gets no grad


@dataclass
class GroupResult:
    members: list  # FitResult per member, in member order
    wall_time_s: float  # the group's own loop time (each member's wall_time_s is a share of it)
    batched: bool
    reason: Optional[str] = None  # why the group ran member by member


def skips_parameters(cfg) -> bool:
    return cfg.model.name in SKIPPABLE and cfg.implementation.name in AUTOGRAD_STYLES


def why_not_batched(cfg, optimizer) -> Optional[str]:
    if skips_parameters(cfg) and not isinstance(optimizer, ROW_MASKABLE_OPTIMIZERS):
        return (f"optimizer {type(optimizer).__name__} counts each parameter's updates, and "
                f"model={cfg.model.name} skips `{SKIPPABLE[cfg.model.name]}` per member")
    return None


def fit_group(cfgs: list, on_losses: Optional[MemberLossCallback] = None) -> GroupResult:
    """cfgs: validated member configs that differ only in seed."""
    cfg = cfgs[0]
    starts = [solo_start(cfg, int(c.seed)) for c in cfgs]
    reason = why_not_batched(cfg, starts[0].optimizer)
    if reason is not None:
        log.info("group of %d runs member by member: %s", len(cfgs), reason)
        return fit_one_by_one(cfgs, on_losses, reason)
    # nn's matrix products go through BLAS, whose sums depend on the thread count: they must run
    # with the solo run's threads (measured: with one thread they differ from step 1)
    threads = contextlib.nullcontext() if cfg.implementation.name == "nn" else one_thread()
    with threads:
        return BatchedFit(cfg, [int(c.seed) for c in cfgs], starts, on_losses).run()


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


def fit_one_by_one(cfgs, on_losses, reason) -> GroupResult:
    results = []
    for i, c in enumerate(cfgs):
        callback = None if on_losses is None else (
            lambda first, values, stamps, i=i: on_losses(i, first, values, stamps))
        results.append(fit(c, on_losses=callback))
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
    def __init__(self, cfg, seeds, starts, on_losses):
        self.cfg, self.seeds, self.on_losses = cfg, seeds, on_losses
        self.family = family_of(cfg)
        self.n = len(starts)
        solos = [s.strategy for s in starts]
        self.strategy = styles.build(cfg.implementation.name, self.family, solos)
        self.optimizer = batched_optimizer(starts[0].optimizer, self.strategy.params)
        self.masked_step = MaskedStep(self.optimizer, self.n)
        self.numpy = cfg.implementation.name == "numpy"
        self.device = self.strategy.params[0].device
        self.draws_depth = self.family.name in DRAWS_DEPTH
        self.rngs = []
        for s in starts:  # each member's own `random`, as its solo loop finds it
            rng = random.Random()
            rng.setstate(s.random_state)
            self.rngs.append(rng)
        skipped = SKIPPABLE.get(self.family.name)
        self.skippable = (self.strategy.params[self.family.coefficient_names.index(skipped)]
                          if skipped and skips_parameters(cfg) else None)

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
                self.masked_step(self.untouched(active, depth))
                self.optimizer.zero_grad()
                if t % log_every == log_every - 1:
                    live = [v for v, on in zip(values, active) if on]
                    log.info("%d %s .. %s (%d members)", t, min(live), max(live), len(live))
                if len(stamps) - flushed >= FLUSH_EVERY:
                    flush()
        finally:
            wall_time_s = time.perf_counter() - start
            flush()  # also on Ctrl-C / SIGTERM: every member's curve so far reaches the callback
        recorded = table[:len(stamps)] if table is not None else torch.empty((0, self.n))
        return GroupResult(self.results(recorded, diverged, wall_time_s), wall_time_s, True)

    def untouched(self, active, depth) -> dict:
        if self.skippable is None and all(active):
            return {}
        frozen = torch.tensor([not on for on in active], device=self.device)
        keep = {p: frozen for p in self.strategy.params}
        if self.skippable is not None:  # the solo run's grad of `e` is None: no update at all
            unused = torch.as_tensor(depth, device=self.device).reshape(-1) == 4
            keep[self.skippable] = frozen | unused
        return keep

    def results(self, table, diverged, wall_time_s) -> list:
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
            out.append(FitResult(curves[i][:end], coefs, self.family.formula(coefs),
                                 wall_time_s / self.n, diverged[i], device, x, y, y_fit[i]))
        return out

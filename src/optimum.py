"""The lowest loss each model family can reach on the tutorial's data, solved directly.

The tutorial fits y = sin(x) on x = linspace(-pi, pi, 2000) and reports the *sum* (not the mean)
of squared errors. Every family in src/families.py gives a linear least-squares design for its
coefficients (legendre up to a reparametrisation, see src.families.Legendre.from_linear), so its
best possible loss is a float64 least-squares problem (numpy.linalg.lstsq); no training
involved. Comparing a run's final loss with this optimum tells how far the optimiser got from
what the model can do at all:

- ``optimum_loss(name)`` / ``optimum_coefficients(name)``: the optimum of a registered family
  (cached);
- ``gap(final_loss, optimum)``: relative excess, ``final_loss / optimum - 1``;
- ``steps_to_within(losses, optimum, tolerance)``: first step within ``1 + tolerance`` of it.

A family whose forward pass draws at random (dynamic: no extra term, e x^4, or e x^4 + e x^5,
probability 1/3 each) gives one design per draw. Training minimises (in expectation) the loss
averaged over the draw, so the optimum is min over w of mean_k |A_k w - y|^2: one least-squares
problem over the designs stacked, against y stacked as often, its residual sum divided by their
number. That bounds the *expected* loss only: a single step's loss under one draw can be lower,
so per-step dynamic losses may dip below it and ``steps_to_within`` reads a noisy signal there.

No torch import here, so this module loads fast.
"""

from __future__ import annotations

import functools

import numpy as np

from src import families
from src.families import data  # noqa: F401  (the tutorial's points, re-exported)


def _lstsq(A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    residual = A @ coef - y
    return coef, float(residual @ residual)  # explicit: lstsq omits residuals when rank-deficient


@functools.lru_cache(maxsize=None)
def _solve(model_name: str) -> tuple[float, tuple[tuple[str, float], ...]]:
    family = families.get(model_name)
    x, y = families.data()
    designs = family.designs(x)
    w, stacked = _lstsq(np.vstack(designs), np.tile(y, len(designs)))
    return stacked / len(designs), tuple(family.from_linear(w).items())


def optimum_loss(model_name: str) -> float:
    """Lowest sum of squared errors the family can reach (averaged over random draws)."""
    return _solve(model_name)[0]


def optimum_coefficients(model_name: str) -> dict[str, float]:
    """Coefficients at the optimum (legendre: a..d plus the cubic's cubic_a..cubic_d)."""
    return dict(_solve(model_name)[1])


def gap(final_loss: float, optimum: float) -> float:
    """Relative excess over the optimum: final_loss / optimum - 1 (0.01 = 1 % above it)."""
    if not optimum > 0:
        raise ValueError(f"optimum must be positive, got {optimum!r}")
    return float(final_loss) / float(optimum) - 1.0


def steps_to_within(losses, optimum: float, tolerance: float = 0.01) -> int | None:
    """First step index t with losses[t] <= optimum * (1 + tolerance) (inclusive); None if never.

    NaN losses never count as within.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance!r}")
    threshold = optimum * (1 + tolerance)
    for t, loss in enumerate(losses):
        if loss <= threshold:
            return t
    return None

"""The lowest loss each model family can reach on the tutorial's data, solved directly.

The tutorial fits y = sin(x) on x = linspace(-pi, pi, 2000) and reports the *sum* (not the mean)
of squared errors. Every family in src/models.py is linear in its coefficients (legendre up to a
reparametrisation, see below), so its best possible loss is a float64 least-squares problem
(numpy.linalg.lstsq); no training involved. Comparing a run's final loss with this optimum tells
how far the optimiser got from what the model can do at all:

- ``optimum_loss(name)`` / ``optimum_coefficients(name)``: the optimum of "cubic", "legendre" or
  "dynamic" (cached);
- ``gap(final_loss, optimum)``: relative excess, ``final_loss / optimum - 1``;
- ``steps_to_within(losses, optimum, tolerance)``: first step within ``1 + tolerance`` of it.

Families:

cubic
    y = a + b x + c x^2 + d x^3: the least-squares cubic, residual sum of squares ~8.8172.
legendre
    y = a + b P3(c + d x), P3(z) = (5 z^3 - 3 z) / 2. Every such function is a cubic, so it cannot
    beat the cubic optimum. It does not cover *every* cubic, though: writing a cubic as
    k3 u^3 + p u + q with u = x + k2 / (3 k3) (its inflection point removed), the family reaches
    exactly the cubics with k3 * p < 0 (two distinct real critical points), plus limits (k3 * p = 0,
    and degree <= 2 as d -> 0 or c -> infinity); monotone cubics with k3 * p > 0 are out of reach.
    The least-squares cubic for sin(x) on [-pi, pi] has k2 = 0, k1 > 0 > k3, so it lies inside
    the family and the legendre optimum *is* the cubic optimum, attained at
    d = sqrt(-3 k3 / (5 p)), b = -2 p / (3 d), c = d * k2 / (3 k3), a = q (taking d > 0; the
    mirror image -b, -c, -d gives the same curve since P3 is odd).
    ``optimum_coefficients("legendre")`` returns those a, b, c, d and the cubic's own coefficients
    as cubic_a .. cubic_d (cubic_a + cubic_b x + cubic_c x^2 + cubic_d x^3).
dynamic
    y = a + b x + c x^2 + d x^3 + e * sum(x^k for k in range(4, D)), with D = random.randint(4, 6)
    drawn on every forward pass: with probability 1/3 each no extra term, e x^4, or e x^4 + e x^5.
    Training minimises (in expectation) the loss averaged over that draw, so the optimum here is
    min over (a..e) of (L_4 + L_5 + L_6) / 3, where L_D is the sum of squared errors under depth
    D: one least-squares problem over the three design matrices stacked (e-column 0, x^4,
    x^4 + x^5) against y stacked three times; its residual sum divided by 3. That is a bound on the
    *expected* loss only: a single step's loss under one draw can be lower (at the optimum, the
    x^4 + x^5 draw alone gives ~8.56, and that draw's own best is ~2.55), so per-step dynamic losses
    may dip below it, and ``steps_to_within`` on a dynamic curve reads a noisy signal.

No torch import here, so this module loads fast; the data is rebuilt exactly like
src.implementations.numpy_data (float64).
"""

from __future__ import annotations

import functools
import math

import numpy as np

N_POINTS = 2000  # src.implementations.N_POINTS (not imported: that module pulls in torch)
FAMILY_NAMES = ("cubic", "legendre", "dynamic")
DYNAMIC_DEPTHS = (4, 5, 6)  # random.randint(4, 6) is inclusive: range(4, D) adds 0, 1 or 2 terms


def data() -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's points, float64: x = linspace(-pi, pi, 2000), y = sin(x)."""
    x = np.linspace(-math.pi, math.pi, N_POINTS)
    return x, np.sin(x)


def _cubic_design(x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones_like(x), x, x ** 2, x ** 3])


def dynamic_design(x: np.ndarray, depth: int) -> np.ndarray:
    """Columns 1, x, x^2, x^3 and e's column sum(x^k for k in range(4, depth)) (zeros at depth 4)."""
    e_column = np.zeros_like(x)
    for k in range(4, depth):
        e_column = e_column + x ** k
    return np.column_stack([_cubic_design(x), e_column])


def _lstsq(A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    coef, *_ = np.linalg.lstsq(A, y, rcond=None)
    residual = A @ coef - y
    return coef, float(residual @ residual)  # explicit: lstsq omits residuals when rank-deficient


@functools.lru_cache(maxsize=None)
def _solve(model_name: str) -> tuple[float, tuple[tuple[str, float], ...]]:
    x, y = data()
    if model_name in ("cubic", "legendre"):
        coef, loss = _lstsq(_cubic_design(x), y)
        if model_name == "cubic":
            return loss, tuple(zip("abcd", map(float, coef)))
        return loss, tuple(_legendre_parameters(coef).items())
    if model_name == "dynamic":
        A = np.vstack([dynamic_design(x, depth) for depth in DYNAMIC_DEPTHS])
        coef, stacked = _lstsq(A, np.tile(y, len(DYNAMIC_DEPTHS)))
        return stacked / len(DYNAMIC_DEPTHS), tuple(zip("abcde", map(float, coef)))
    raise ValueError(f"unknown model family {model_name!r}; expected one of {FAMILY_NAMES}")


def _legendre_parameters(cubic: np.ndarray) -> dict[str, float]:
    """a, b, c, d with a + b P3(c + d x) equal to the given cubic (k0..k3), plus cubic_a..cubic_d."""
    k0, k1, k2, k3 = map(float, cubic)
    out = {f"cubic_{n}": v for n, v in zip("abcd", (k0, k1, k2, k3))}
    s = k2 / (3 * k3)                      # x = u - s removes the x^2 term
    p = k1 - k2 * k2 / (3 * k3)            # cubic = k3 u^3 + p u + q
    q = k0 - k1 * s + k2 * s * s - k3 * s ** 3
    if not k3 * p < 0:  # pragma: no cover - not the case for sin(x); see the module docstring
        raise ValueError("this cubic is not of the form a + b P3(c + d x)")
    d = math.sqrt(-3 * k3 / (5 * p))
    return {"a": q, "b": -2 * p / (3 * d), "c": s * d, "d": d, **out}


def optimum_loss(model_name: str) -> float:
    """Lowest sum of squared errors the family can reach (dynamic: averaged over the depth draw)."""
    return _solve(model_name)[0]


def optimum_coefficients(model_name: str) -> dict[str, float]:
    """Coefficients at the optimum: a..d (cubic), a..e (dynamic), legendre's a..d + cubic_a..cubic_d."""
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

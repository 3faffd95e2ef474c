"""The hand-written gradients of src.families agree with autograd (float64), on torch and numpy."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch

from src import families
from src.families import N_POINTS
from src.models import LegendrePolynomial3

FAMILIES = {name: families.get(name) for name in families.names()}
RTOL = 1e-10


def data_torch():
    x = torch.linspace(-math.pi, math.pi, N_POINTS, dtype=torch.float64)
    return x, torch.sin(x)


def random_coefficients(family, seed):
    gen = torch.Generator().manual_seed(seed)
    values = torch.randn(len(family.coefficient_names), generator=gen, dtype=torch.float64)
    if family.name == "legendre":  # stay near the tutorial's start so P3 is not extreme
        values = torch.tensor([0.0, -1.0, 0.0, 0.3], dtype=torch.float64) + 0.3 * values
    if family.name == "dynamic":  # keep e x^4, e x^5 from swamping the cubic terms
        values[4] *= 0.01
    return values.tolist()


def autograd_gradients(family, coefs, x, y, random_seed=None):
    if random_seed is not None:
        random.seed(random_seed)
    x = x.clone().requires_grad_(True)
    p = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in coefs]
    y_pred, _ = family.forward(p, x)
    loss = ((y_pred - y) ** 2).sum()
    # with no extra terms drawn, e is unused: its gradient is zero
    grads = torch.autograd.grad(loss, p, allow_unused=True, materialize_grads=True)
    return loss.item(), [g.item() for g in grads]


def hand_gradients(family, coefs, x, y, random_seed=None):
    if random_seed is not None:
        random.seed(random_seed)
    p = [torch.tensor(v, dtype=torch.float64) for v in coefs]
    x = x.detach().clone()
    y_pred, backprop = family.forward(p, x)
    loss = ((y_pred - y) ** 2).sum()
    return loss.item(), [float(g) for g in backprop(2 * (y_pred - y))]


def numpy_gradients(family, coefs, random_seed=None):
    if random_seed is not None:
        random.seed(random_seed)
    x = np.linspace(-math.pi, math.pi, N_POINTS)
    y = np.sin(x)
    p = [np.float64(v) for v in coefs]
    y_pred, backprop = family.forward(p, x)
    assert isinstance(y_pred, np.ndarray) and y_pred.dtype == np.float64
    loss = np.square(y_pred - y).sum()
    return float(loss), [float(g) for g in backprop(2 * (y_pred - y))]


def depth_seeds(n_each=2):
    """Seeds k for which random.seed(k); random.randint(4, 6) gives each of 4, 5, 6."""
    seen = {}
    for k in range(1000):
        random.seed(k)
        depth = random.randint(4, 6) - 4  # number of extra terms: len(range(4, draw))
        seen.setdefault(depth, [])
        if len(seen[depth]) < n_each:
            seen[depth].append(k)
        if len(seen) == 3 and all(len(v) == n_each for v in seen.values()):
            return seen
    raise AssertionError(f"randint(4, 6) never covered all depths: {seen}")


DEPTH_SEEDS = depth_seeds()
# (family, random.seed before the forward or None, coefficient seed)
CASES = [(name, None, s) for name in ("cubic", "legendre") for s in range(3)] + [
    ("dynamic", k, 100 + k) for depth in sorted(DEPTH_SEEDS) for k in DEPTH_SEEDS[depth]]


def case_id(case):
    name, rseed, cseed = case
    return f"{name}-coef{cseed}" + ("" if rseed is None else f"-random{rseed}")


def test_families_are_the_three():
    assert set(FAMILIES) == {"cubic", "legendre", "dynamic"}
    assert FAMILIES["cubic"].coefficient_names == ("a", "b", "c", "d")
    assert FAMILIES["legendre"].coefficient_names == ("a", "b", "c", "d")
    assert FAMILIES["dynamic"].coefficient_names == ("a", "b", "c", "d", "e")


def test_dynamic_cases_cover_all_depths():
    depths = set()
    for name, rseed, _ in CASES:
        if name == "dynamic":
            random.seed(rseed)
            depths.add(len(range(4, random.randint(4, 6))))
    assert depths == {0, 1, 2}


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_hand_gradients_equal_autograd(case):
    name, rseed, cseed = case
    family = FAMILIES[name]
    coefs = random_coefficients(family, cseed)
    x, y = data_torch()
    loss_auto, grads_auto = autograd_gradients(family, coefs, x, y, rseed)
    loss_hand, grads_hand = hand_gradients(family, coefs, x, y, rseed)
    assert loss_hand == pytest.approx(loss_auto, rel=RTOL)  # same depth drawn both times
    assert len(grads_hand) == len(family.coefficient_names)
    np.testing.assert_allclose(grads_hand, grads_auto, rtol=RTOL, atol=0,
                               err_msg=f"{case_id(case)}: {family.coefficient_names}")


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_numpy_path_equals_torch_path(case):
    name, rseed, cseed = case
    family = FAMILIES[name]
    coefs = random_coefficients(family, cseed)
    x, y = data_torch()
    loss_np, grads_np = numpy_gradients(family, coefs, rseed)
    loss_t, grads_t = hand_gradients(family, coefs, x, y, rseed)
    assert loss_np == pytest.approx(loss_t, rel=RTOL)
    np.testing.assert_allclose(grads_np, grads_t, rtol=RTOL, atol=0,
                               err_msg=f"{case_id(case)}: {family.coefficient_names}")


def test_dynamic_extra_term_gradient_changes_with_depth():
    # e's gradient is 0 with no extra terms and non-zero otherwise: the draw is really used.
    family = FAMILIES["dynamic"]
    coefs = random_coefficients(family, 5)
    x, y = data_torch()
    for depth, seeds in DEPTH_SEEDS.items():
        _, grads = hand_gradients(family, coefs, x, y, seeds[0])
        assert (grads[4] == 0) == (depth == 0), (depth, grads)


def test_legendre_function_gradcheck():
    gen = torch.Generator().manual_seed(0)
    z = (torch.rand(50, generator=gen, dtype=torch.float64) * 4 - 2).requires_grad_(True)
    assert torch.autograd.gradcheck(LegendrePolynomial3.apply, (z,), eps=1e-6, atol=1e-8)
    # forward is P3 itself
    zd = z.detach()
    torch.testing.assert_close(LegendrePolynomial3.apply(zd), 0.5 * (5 * zd ** 3 - 3 * zd),
                               rtol=0, atol=0)

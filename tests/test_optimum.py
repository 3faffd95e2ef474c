"""src.optimum: each family's best possible loss, checked against independent computations."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from src import optimum
from src.optimum import gap, optimum_coefficients, optimum_loss, steps_to_within

CUBIC_OPTIMUM = 8.817165410   # residual sum of squares of the least-squares cubic
DYNAMIC_OPTIMUM = 8.755326139  # min over a..e of the loss averaged over the three depth draws


def tutorial_data():
    x = np.linspace(-math.pi, math.pi, 2000)
    return x, np.sin(x)


def sse(prediction, y):
    r = prediction - y
    return float(r @ r)


def normal_equations_min(designs, y):
    """min_w mean_k |A_k w - y|^2 by solving (sum_k A_k^T A_k) w = sum_k A_k^T y (no lstsq)."""
    gram = sum(A.T @ A for A in designs)
    rhs = sum(A.T @ y for A in designs)
    w = np.linalg.solve(gram, rhs)
    return w, sum(sse(A @ w, y) for A in designs) / len(designs)


def dynamic_designs(x):
    """Independent of src: the e-column under each depth draw of Dynamic.forward."""
    cubic = [np.ones_like(x), x, x ** 2, x ** 3]
    return [np.column_stack(cubic + [e]) for e in (np.zeros_like(x), x ** 4, x ** 4 + x ** 5)]


def dynamic_average_loss(w, x, y):
    return sum(sse(A @ w, y) for A in dynamic_designs(x)) / 3


# --- the data -------------------------------------------------------------------------------

def test_data_is_the_tutorials():
    from src.implementations import torch_data  # imports torch: fine in a test

    for ours, theirs in zip(optimum.data(), tutorial_data()):
        assert ours.dtype == np.float64
        np.testing.assert_array_equal(ours, theirs)
    x32, y32 = torch_data("cpu")
    assert len(x32) == len(tutorial_data()[0])
    np.testing.assert_allclose(x32.numpy(), tutorial_data()[0], rtol=1e-6, atol=1e-6)


def test_import_does_not_load_torch():
    code = "import sys, src.optimum; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


# --- cubic ----------------------------------------------------------------------------------

def test_cubic_optimum_matches_polyfit_and_normal_equations():
    x, y = tutorial_data()
    loss = optimum_loss("cubic")
    assert round(loss, 4) == 8.8172
    assert loss == pytest.approx(CUBIC_OPTIMUM, rel=1e-9)

    coeffs_high_first, residuals, *_ = np.polyfit(x, y, 3, full=True)
    assert loss == pytest.approx(float(residuals[0]), rel=1e-6)
    assert loss == pytest.approx(sse(np.polyval(coeffs_high_first, x), y), rel=1e-6)

    _, by_normal_equations = normal_equations_min([np.vander(x, 4, increasing=True)], y)
    assert loss == pytest.approx(by_normal_equations, rel=1e-6)

    v = optimum_coefficients("cubic")
    assert set(v) == {"a", "b", "c", "d"}
    np.testing.assert_allclose([v["d"], v["c"], v["b"], v["a"]], coeffs_high_first, atol=1e-9)
    assert sse(v["a"] + v["b"] * x + v["c"] * x ** 2 + v["d"] * x ** 3, y) == pytest.approx(loss, rel=1e-12)


# --- legendre -------------------------------------------------------------------------------

def test_legendre_optimum_is_the_cubic_one_and_is_attained():
    assert optimum_loss("legendre") == optimum_loss("cubic")

    x, y = tutorial_data()
    v = optimum_coefficients("legendre")
    cubic = optimum_coefficients("cubic")
    assert {f"cubic_{n}": cubic[n] for n in "abcd"} == {k: v[k] for k in v if k.startswith("cubic_")}
    z = v["c"] + v["d"] * x
    prediction = v["a"] + v["b"] * 0.5 * (5 * z ** 3 - 3 * z)  # the Legendre model itself
    assert v["d"] > 0
    assert sse(prediction, y) == pytest.approx(optimum_loss("cubic"), rel=1e-10)


# --- dynamic --------------------------------------------------------------------------------

def test_dynamic_optimum_matches_normal_equations_over_the_three_draws():
    x, y = tutorial_data()
    w, expected = normal_equations_min(dynamic_designs(x), y)
    loss = optimum_loss("dynamic")
    assert loss == pytest.approx(expected, rel=1e-6)
    assert loss == pytest.approx(DYNAMIC_OPTIMUM, rel=1e-9)

    v = optimum_coefficients("dynamic")
    assert list(v) == ["a", "b", "c", "d", "e"]
    np.testing.assert_allclose([v[n] for n in "abcde"], w, rtol=1e-6, atol=1e-10)
    assert dynamic_average_loss(np.array([v[n] for n in "abcde"]), x, y) == pytest.approx(loss, rel=1e-12)


def test_dynamic_optimum_is_not_beaten_by_random_perturbations():
    x, y = tutorial_data()
    w = np.array([optimum_coefficients("dynamic")[n] for n in "abcde"])
    best = dynamic_average_loss(w, x, y)
    rng = np.random.default_rng(0)
    for scale in (1e-2, 1e-4, 1e-6):
        for _ in range(50):
            # scale each coefficient's step by its column size so every direction matters
            step = rng.standard_normal(5) * scale / np.array([1, math.pi, math.pi ** 2, math.pi ** 3, math.pi ** 5])
            assert dynamic_average_loss(w + step, x, y) >= best * (1 - 1e-12)


def test_dynamic_optimum_is_at_most_the_cubic_optimum():
    x, y = tutorial_data()
    v = optimum_coefficients("cubic")
    cubic_with_e0 = dynamic_average_loss(np.array([v["a"], v["b"], v["c"], v["d"], 0.0]), x, y)
    assert cubic_with_e0 == pytest.approx(optimum_loss("cubic"), rel=1e-12)  # e = 0: draw is moot
    assert optimum_loss("dynamic") <= cubic_with_e0
    assert optimum_loss("dynamic") < optimum_loss("cubic")


# --- API ------------------------------------------------------------------------------------

def test_results_are_cached_and_coefficients_are_copies():
    assert optimum_loss("cubic") is optimum_loss("cubic")
    v = optimum_coefficients("dynamic")
    v["e"] = 123.0
    assert optimum_coefficients("dynamic")["e"] != 123.0


def test_unknown_family_is_rejected():
    with pytest.raises(ValueError, match="unknown model family"):
        optimum_loss("quartic")


def test_gap():
    assert gap(10.0, 8.0) == pytest.approx(0.25)
    assert gap(8.0, 8.0) == 0.0
    assert gap(4.0, 8.0) == pytest.approx(-0.5)
    with pytest.raises(ValueError):
        gap(1.0, 0.0)


def test_steps_to_within():
    optimum_value = 8.0
    # threshold 8 * (1 + 0.25) = 10.0 exactly: equality counts as within
    assert steps_to_within([30.0, 20.0, 10.0, 9.0], optimum_value, tolerance=0.25) == 2
    assert steps_to_within([30.0, 20.0, 10.000001, 9.0], optimum_value, tolerance=0.25) == 3
    assert steps_to_within([30.0, 20.0, 12.0], optimum_value, tolerance=0.25) is None  # never
    assert steps_to_within([], optimum_value) is None
    assert steps_to_within([7.0, 100.0], optimum_value) == 0  # first index, not last
    assert steps_to_within([float("nan"), 8.05], optimum_value) == 1  # default 1 %: 8.08
    assert steps_to_within([8.1], optimum_value) is None
    assert steps_to_within(np.array([9.0, 8.0]), optimum_value, tolerance=0.0) == 1
    with pytest.raises(ValueError):
        steps_to_within([1.0], optimum_value, tolerance=-0.1)


# --- no trained run beats the optimum -------------------------------------------------------

@pytest.mark.parametrize("preset, family, printed_final_loss", [
    ("numpy", "cubic", 9.0320),
    ("autograd", "cubic", 8.9120),
    ("custom_function", "legendre", 8.9436),
    ("dynamic", "dynamic", 8.8719),  # one draw's loss; the optimum bounds the draw-average
])
def test_tutorial_final_losses_do_not_beat_the_optimum(preset, family, printed_final_loss):
    assert printed_final_loss >= optimum_loss(family)
    assert 0 <= gap(printed_final_loss, optimum_loss(family)) < 0.03

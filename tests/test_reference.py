"""The harness follows the tutorial's own programs (tests/tutorial_scripts.py), step by step.

Every preset, run through src.config.compose + src.trainer.fit with a seed, must retrace the
seeded tutorial script of its section bit for bit: the very same float at every step (==, no
tolerance) and the very same final coefficients. The hand-written sections update with
src.optimizers.ManualSGD (`p -= lr * grad`, as the tutorial writes it); torch.optim.SGD's fused
`p.add_(grad, alpha=-lr)` would round differently from step 2 on.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from src.config import compose, validate
from src.trainer import fit

try:  # pytest's default (prepend) import mode puts tests/ itself on sys.path
    from tutorial_scripts import SCRIPTS
except ImportError:  # pragma: no cover - tests/ imported as a package
    from tests.tutorial_scripts import SCRIPTS

PRESETS = ("numpy", "tensor", "autograd", "custom_function", "nn", "optim", "module", "dynamic")
CUBIC = ("numpy", "tensor", "autograd", "nn", "optim", "module")
SEEDS = (0, 1, 7)
STEPS = 2000  # the tutorial's length for all but dynamic


def steps_for(preset: str, seed: int) -> int:
    if preset == "dynamic":  # the tutorial's 30000 steps take ~8 s each way; a prefix suffices
        return 3000 if seed == 0 else 1000
    return STEPS


@functools.lru_cache(maxsize=None)
def script_run(preset: str, seed: int, steps: int) -> dict:
    return SCRIPTS[preset](seed, steps)


@functools.lru_cache(maxsize=None)
def harness_run(preset: str, seed: int, steps: int):
    cfg = compose([f"experiment={preset}", f"seed={seed}", f"steps={steps}"])
    validate(cfg)
    return fit(cfg)


def test_every_preset_has_a_script():
    from src.config import preset_names

    assert set(PRESETS) == set(SCRIPTS)
    assert set(PRESETS) <= set(preset_names())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("preset", PRESETS)
def test_harness_retraces_tutorial_script(preset, seed):
    steps = steps_for(preset, seed)
    expected = script_run(preset, seed, steps)
    result = harness_run(preset, seed, steps)

    assert result.diverged_step is None
    assert len(result.losses) == len(expected["losses"]) == steps
    first_off = next((t for t, (got, want) in enumerate(zip(result.losses, expected["losses"]))
                      if got != want), None)
    assert first_off is None, (f"{preset} seed={seed}: step {first_off} differs: harness "
                               f"{result.losses[first_off]!r}, script "
                               f"{expected['losses'][first_off]!r}")
    assert result.final_loss == result.losses[-1]
    assert result.coefficients == expected["coefficients"], f"{preset} seed={seed}"


def test_numpy_preset_updates_its_float64_array_in_place():
    """numpy: the optimizer updates the float64 array through a zero-copy tensor."""
    import torch

    from src import families, implementations

    cfg = compose(["experiment=numpy"])
    strategy = implementations.of(cfg.implementation).build(
        families.of(cfg.model), None, None)
    (tensor,) = strategy.params
    assert tensor.dtype == torch.float64 and tensor.data_ptr() == strategy.array.ctypes.data
    before = strategy.array.copy()
    strategy.loss_and_gradients()
    from src.optimizers import build

    build(cfg.optimizer, strategy.params).step()
    assert (strategy.array != before).all()


def test_sgd_stays_torch_sgd():
    import torch

    from src.optimizers import build

    cfg = compose(["optimizer=sgd"])
    assert type(build(cfg.optimizer, [torch.zeros(1, requires_grad=True)])) is torch.optim.SGD


def test_custom_function_default_matches_tutorial_printout():
    # Its start (0, -1, 0, 0.3) is fixed, so the tutorial's printed numbers are reproducible.
    result = fit(compose(["experiment=custom_function"]))
    assert len(result.losses) == 2000
    assert result.losses[99] == pytest.approx(209.95834350585938, rel=1e-5)
    assert round(result.losses[1999], 4) == 8.9436  # printed: 1999 8.943639755249023


def test_custom_function_script_matches_tutorial_printout():
    losses = script_run("custom_function", 0, STEPS)["losses"]
    assert losses[99] == pytest.approx(209.95834350585938, rel=1e-5)
    assert round(losses[1999], 4) == 8.9436


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("preset", CUBIC + ("custom_function",))
def test_tutorial_scripts_converge(preset, seed):
    run = script_run(preset, seed, STEPS)
    losses = run["losses"]
    assert len(losses) == STEPS and all(np.isfinite(losses))
    assert losses[1999] < 15  # the tutorial's runs end near 9-10
    assert losses[1999] < losses[99]
    # sin(x) ~ 0.857 x - 0.093 x^3 in least squares on [-pi, pi]
    if preset in CUBIC:
        c = run["coefficients"]
        assert 0.8 < c["b"] < 0.9 and -0.1 < c["d"] < -0.08


def test_dynamic_script_is_seeded_and_learns():
    assert SCRIPTS["dynamic"](0, 200) == SCRIPTS["dynamic"](0, 200)  # same seed, same run
    assert SCRIPTS["dynamic"](0, 200) != SCRIPTS["dynamic"](1, 200)
    losses = script_run("dynamic", 0, steps_for("dynamic", 0))["losses"]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0] / 10

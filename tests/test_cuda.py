"""CUDA paths: run where a GPU exists, skip cleanly elsewhere."""

import math

import numpy as np
import pytest
import torch

from src.config import compose, validate
from src.trainer import fit

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
TORCH_PRESETS = ["tensor", "autograd", "custom_function", "nn", "optim", "module", "dynamic"]


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("preset", TORCH_PRESETS)
def test_preset_on_cuda_follows_the_cpu_curve(preset):
    """Same seed, same arithmetic: on the GPU the curve stays close to the CPU's."""
    steps = ["steps=500"]
    on_gpu = fit(compose([f"experiment={preset}", "device=cuda", *steps]))
    on_cpu = fit(compose([f"experiment={preset}", "device=cpu", *steps]))
    assert on_gpu.device.startswith("cuda")
    assert len(on_gpu.losses) == 500 and all(math.isfinite(v) for v in on_gpu.losses)
    if preset in ("custom_function", "nn", "optim", "module", "dynamic"):
        # parameters are drawn on (or fixed independently of) the CPU generator: same start
        np.testing.assert_allclose(on_gpu.losses, on_cpu.losses, rtol=1e-3)
    assert on_gpu.losses[-1] < on_gpu.losses[0]


@needs_cuda
@pytest.mark.cuda
def test_auto_picks_cuda_but_numpy_stays_on_cpu():
    assert fit(compose(["experiment=autograd", "device=auto", "steps=5"])).device.startswith("cuda")
    cfg = compose(["experiment=numpy", "device=auto", "steps=5"])
    validate(cfg)
    assert fit(cfg).device == "cpu"


def test_auto_falls_back_to_cpu_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = compose(["experiment=autograd", "device=auto", "steps=5"])
    validate(cfg)
    assert fit(cfg).device == "cpu"


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("preset", ["autograd", "module", "dynamic"])
@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_vectorized_group_trains_on_the_gpu(preset, device):
    """A seed group batches on the GPU; each member retraces its solo GPU run."""
    from src.vectorized.loop import fit_group

    cfgs = [compose([f"experiment={preset}", f"device={device}", "steps=300", f"seed={s}"])
            for s in range(3)]
    group = fit_group(cfgs)
    assert group.batched
    for cfg, member in zip(cfgs, group.members):
        solo = fit(cfg)
        assert member.device == solo.device and member.device.startswith("cuda")
        assert member.losses == solo.losses
        assert member.coefficients == solo.coefficients

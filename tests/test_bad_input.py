"""Bad command lines are refused before anything is tracked.

Each case: exit code 2, exactly one line on stderr, starting with "error: ", naming the key and
what is allowed, and no run in the tracking store (sweeps included: one bad job refuses all).
All commands run at once in a module fixture (each CLI start costs a few seconds), each against
its own fresh store; the parametrized tests then check one case each.
"""

from __future__ import annotations

import pytest
from conftest import run_many

# id: (command-line arguments, substrings the one error line must contain)
CASES = {
    "unknown-model": (["model=foo"], ["model", "foo", "cubic, dynamic, legendre"]),
    "unknown-experiment": (["experiment=foo"],
                           ["experiment", "autograd, custom_function, dynamic, module, nn, "
                                          "numpy, optim, tensor"]),
    "unknown-key": (["foo=1"], ["foo", "allowed", "lr", "model", "optimizer", "seed", "steps"]),
    "optimizer-key-without-plus": (["optimizer.nesterov=true"],
                                   ["optimizer.nesterov", "+optimizer.nesterov=VALUE"]),
    "steps-not-int": (["steps=abc"], ["steps", "abc", "Integer"]),
    "lr-not-float": (["lr=abc"], ["lr", "abc", "Float"]),
    "lr-zero": (["lr=0"], ["lr", "> 0"]),
    "lr-negative": (["lr=-1"], ["lr", "> 0"]),
    "steps-zero": (["steps=0"], ["steps", "> 0"]),
    "cuda-unavailable": (["device=cuda"], ["device", "cuda", "cpu", "auto"]),
    "numpy-on-cuda": (["implementation=numpy", "device=cuda"],
                      ["device", "numpy", "cpu", "auto"]),
    "nn-legendre": (["implementation=nn", "model=legendre"],
                    ["model", "legendre", "implementation=nn", "cubic"]),
    "nn-dynamic": (["implementation=nn", "model=dynamic"],
                   ["model", "dynamic", "implementation=nn", "cubic"]),
    "sweep-one-bad-job": (["-m", "model=cubic,dynamic", "implementation=nn"],
                          ["model", "dynamic", "implementation=nn", "cubic"]),
    # the bad seed is a derived seed variant, checked without composing it (src/compose_once.py)
    "seed-study-one-bad-seed": (["-m", "steps=5", "seed=0,1,2,4294967296"],
                                ["seed=4294967296", "0..4294967295"]),
    "vectorized-seed-study-one-bad-seed": (["-m", "hydra/launcher=vectorized", "steps=5",
                                            "seed=0,1,2,-1"], ["seed=-1", "0..4294967295"]),
}


@pytest.fixture(scope="module")
def outcomes(make_store):
    """Every case run once, in parallel, each against its own empty store."""
    stores = {case: make_store(f"bad-{case}") for case in CASES}
    results = run_many([(stores[case], args) for case, (args, _) in CASES.items()])
    return {case: (stores[case], result) for case, result in zip(CASES, results)}


@pytest.fixture(scope="module")
def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused(case, outcomes, cuda_available):
    args, expected = CASES[case]
    if case == "cuda-unavailable" and cuda_available:
        pytest.skip("this machine has CUDA: device=cuda is valid here")
    store, result = outcomes[case]

    assert result.returncode == 2, result.describe()
    lines = result.stderr_lines
    assert len(lines) == 1, f"expected exactly one stderr line\n{result.describe()}"
    line = lines[0]
    assert line.startswith("error: "), line
    missing = [s for s in expected if s not in line]
    assert not missing, f"error line lacks {missing}: {line!r}"
    assert "Traceback" not in result.stdout + result.stderr

    runs = store.runs()
    assert runs == [], f"a refused command created {len(runs)} run(s)"


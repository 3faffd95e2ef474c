"""The whole model x optimizer x implementation grid: every option shipped in conf/.

In-process, every combination either composes and validates, or is refused with a ConfigError
naming the models its implementation supports; exactly nn with legendre or dynamic is refused.
Then every supported combination runs for 5 steps through the CLI (two sweeps) and must leave a
run with its 5 losses, FINISHED (or FAILED with diverged=true if it blew up).
"""

from __future__ import annotations

from itertools import product

import pytest
from conftest import loss_history, run_many

from src import families
from src.config import CONF_DIR, ConfigError, compose, implementation_name, model_name, validate


def options(group: str) -> tuple:
    return tuple(sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml")))


MODELS = options("model")
OPTIMIZERS = options("optimizer")
IMPLEMENTATIONS = options("implementation")
GRID = list(product(MODELS, OPTIMIZERS, IMPLEMENTATIONS))
REFUSED = {(m, o, "nn") for m in ("legendre", "dynamic") for o in OPTIMIZERS}
SUPPORTED = [combo for combo in GRID if combo not in REFUSED]
STEPS = 5


def test_grid_is_what_ships():
    assert MODELS == ("cubic", "dynamic", "legendre") and set(MODELS) <= set(families.names())
    assert OPTIMIZERS == ("adam", "adamw", "manual_sgd", "momentum", "rmsprop", "sgd")
    assert IMPLEMENTATIONS == ("autograd", "module", "nn", "numpy", "tensor")
    assert len(GRID) == 90 and len(REFUSED) == 12 and len(SUPPORTED) == 78


def test_config_validation_refuses_exactly_nn_with_legendre_or_dynamic():
    refused, messages = set(), {}
    for model, optimizer, implementation in GRID:
        cfg = compose([f"model={model}", f"optimizer={optimizer}",
                       f"implementation={implementation}"])
        assert (model_name(cfg), cfg.optimizer.name, implementation_name(cfg)) == \
            (model, optimizer, implementation)
        try:
            validate(cfg)
        except ConfigError as exc:
            refused.add((model, optimizer, implementation))
            messages[(model, optimizer, implementation)] = str(exc)
    assert refused == REFUSED
    for (model, _, implementation), message in messages.items():
        assert "\n" not in message
        assert f"model={model}" in message and f"implementation={implementation}" in message
        # names what is supported: nn expresses only the cubic
        assert message.rstrip().endswith("cubic"), message


@pytest.fixture(scope="module")
def grid_runs(make_store):
    store = make_store("grid")
    others = ",".join(i for i in IMPLEMENTATIONS if i != "nn")
    results = run_many([
        (store, ["-m", f"implementation={others}", f"model={','.join(MODELS)}",
                 f"optimizer={','.join(OPTIMIZERS)}", f"steps={STEPS}"]),
        (store, ["-m", "implementation=nn", "model=cubic", f"optimizer={','.join(OPTIMIZERS)}",
                 f"steps={STEPS}"]),
    ], max_parallel=2)
    for result in results:
        assert result.returncode == 0, result.describe()
    runs = {}
    for r in store.job_runs():
        t = r.data.tags
        combo = (t["model"], t["optimizer"], t["implementation"])
        assert combo not in runs, f"two runs for {combo}"
        runs[combo] = r
    return store, runs


@pytest.mark.slow
def test_every_supported_combination_ran(grid_runs):
    _, runs = grid_runs
    assert sorted(runs) == sorted(SUPPORTED)


@pytest.mark.slow
@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_supported_runs_have_their_losses(grid_runs, implementation):
    store, runs = grid_runs
    client = store.client()
    problems = []
    for combo in SUPPORTED:
        if combo[2] != implementation or combo not in runs:
            continue
        run = runs[combo]
        tags, status = run.data.tags, run.info.status
        steps = [s for s, _ in loss_history(client, run.info.run_id)]
        if status == "FINISHED":
            ok = tags.get("diverged") == "false" and steps == list(range(STEPS))
        elif status == "FAILED" and tags.get("diverged") == "true":
            ok = steps == list(range(int(tags["diverged_step"])))
        else:
            ok = False
        if not ok:
            problems.append((combo, status, tags.get("diverged"), len(steps)))
        assert tags["variant"] == "-".join((combo[0], combo[2], combo[1]))
    assert not problems, problems

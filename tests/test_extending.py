"""Extending the harness without editing src/, through the CLI as a user does.

- an optimizer from a user's own config folder (hydra.searchpath), and one refused in one line;
- the shipped optimizer=adamw and scheduler=cosine (the lr metric falls, one point a step);
- a model family defined in a test module (tests/extending/quintic.py + its yaml): trained, with
  its optimum, its comparison row and its fitted curve right;
- the quintic family and the cosine scheduler under hydra/launcher=vectorized: member runs equal
  their solo twins (quintic runs member by member, cosine batched with its lr series);
- seed groups: a sweep over two momentum values and two seeds gives two groups of two;
- what the MLflow UI shows first: the experiment kind and description (also set on an existing
  experiment that lacks them), and each sweep parent's comparison table as its description.

All commands run at once in a module fixture, each against its own fresh store.
"""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from conftest import REPO_ROOT, SWEEP_TAG, loss_history, run_many

from src import compare
from src.report.figures import fitted_curve
from src.report.mlflow_ui import KIND_TAG, NOTE_TAG, TRAINING_KIND

EXTENDING = REPO_ROOT / "tests" / "extending"  # quintic.py, and conf/ a user's config folder
USER_CONF = EXTENDING / "conf"
SEARCHPATH = f"hydra.searchpath=[file://{USER_CONF}]"
EXPERIMENT = "pytorch-examples"

COMMANDS = {  # case: command-line arguments
    "adagrad": [SEARCHPATH, "optimizer=adagrad", "steps=40"],
    "lbfgs": [SEARCHPATH, "optimizer=lbfgs"],
    "bad-keyword": ["optimizer=adam", "+optimizer.momentum=0.9"],
    "adamw": ["optimizer=adamw", "steps=40"],
    "cosine": ["scheduler=cosine", "steps=200"],
    "quintic": [SEARCHPATH, "model=quintic", "implementation=tensor", "optimizer=adam",
                "lr=0.01", "steps=300"],
    "momentum-seeds": ["-m", "optimizer=momentum", "optimizer.momentum=0.5,0.9", "seed=0,1",
                       "steps=30"],
    # the cases "quintic" and "cosine" again, as vectorized seed groups (seed 0 is their twin)
    "quintic-vectorized": ["-m", "hydra/launcher=vectorized", SEARCHPATH, "model=quintic",
                           "implementation=tensor", "optimizer=adam", "lr=0.01", "steps=300",
                           "seed=0,1"],
    "cosine-vectorized": ["-m", "hydra/launcher=vectorized", "scheduler=cosine", "steps=200",
                          "seed=0,1"],
}


@pytest.fixture(scope="module")
def outcomes(make_store):
    stores = {case: make_store(f"extend-{case}") for case in COMMANDS}
    # an experiment made before the harness marked its experiments: it gets the kind tag too
    stores["adamw"].client().create_experiment(EXPERIMENT, str(stores["adamw"].root / "art"))
    python_path = os.pathsep.join([str(EXTENDING), os.environ.get("PYTHONPATH", "")])
    for case in ("quintic", "quintic-vectorized"):
        plain_env = stores[case].env
        stores[case].env = (lambda *a, plain_env=plain_env, **k:
                            plain_env(*a, PYTHONPATH=python_path, **k))
    results = run_many([(stores[case], args) for case, args in COMMANDS.items()])
    return {case: (stores[case], result) for case, result in zip(COMMANDS, results)}


def only_run(outcomes, case):
    store, result = outcomes[case]
    assert result.returncode == 0, result.describe()
    (run,) = store.job_runs()
    assert run.info.status == "FINISHED"
    return store, run


@pytest.mark.slow
def test_optimizer_from_a_user_config_folder(outcomes):
    store, run = only_run(outcomes, "adagrad")
    assert run.data.tags["optimizer"] == "adagrad"
    assert run.data.params["optimizer._target_"] == "torch.optim.Adagrad"
    assert run.data.params["optimizer.lr"] == run.data.params["lr"] == "0.01"
    assert len(loss_history(store.client(), run.info.run_id)) == 40


@pytest.mark.slow
@pytest.mark.parametrize("case, words", [
    ("lbfgs", ["optimizer=lbfgs", "LBFGS", "closure"]),
    ("bad-keyword", ["optimizer.momentum", "Adam", "allowed", "betas", "weight_decay"]),
])
def test_unbuildable_optimizer_is_one_error_line(outcomes, case, words):
    store, result = outcomes[case]
    assert result.returncode == 2, result.describe()
    (line,) = result.stderr_lines
    assert line.startswith("error: ") and all(w in line for w in words), line
    assert store.runs() == []


@pytest.mark.slow
def test_adamw_and_the_experiment_kind_of_an_existing_experiment(outcomes):
    store, run = only_run(outcomes, "adamw")
    assert run.data.params["optimizer._target_"] == "torch.optim.AdamW"
    assert run.data.tags["variant"] == "cubic-module-adamw"
    tags = store.client().get_experiment(run.info.experiment_id).tags
    assert tags[KIND_TAG] == TRAINING_KIND
    assert "sin(x)" in tags[NOTE_TAG]


@pytest.mark.slow
def test_cosine_scheduler_logs_a_falling_lr(outcomes):
    store, run = only_run(outcomes, "cosine")
    assert run.data.tags["scheduler"] == "cosine"
    lrs = loss_history(store.client(), run.info.run_id, "lr")
    assert [step for step, _ in lrs] == list(range(200))
    values = [v for _, v in lrs]
    assert values[0] == float(run.data.params["lr"])
    assert all(b < a for a, b in zip(values, values[1:])) and values[-1] < values[0] / 1000
    expected = [1e-6 * (1 + math.cos(math.pi * t / 200)) / 2 for t in range(200)]
    np.testing.assert_allclose(values, expected, rtol=1e-9)


@pytest.mark.slow
def test_a_family_from_a_test_module_trains_with_its_optimum_row_and_plots(outcomes, monkeypatch):
    store, run = only_run(outcomes, "quintic")
    assert run.data.tags["model"] == "quintic"
    assert run.data.tags["variant"] == "quintic-tensor-adam"
    metrics = run.data.metrics
    x = np.linspace(-math.pi, math.pi, 2000)
    _, (residual,), *_ = np.polyfit(x, np.sin(x), 5, full=True)  # independent of src
    assert metrics["optimum_loss"] == pytest.approx(residual, rel=1e-8)
    assert metrics["gap"] == pytest.approx(metrics["final_loss"] / metrics["optimum_loss"] - 1)
    assert {k for k in metrics if k.startswith("coef/")} == {f"coef/{n}" for n in "abcdef"}
    assert {a.path for a in store.client().list_artifacts(run.info.run_id)} >= {
        "loss_curve.png", "fit.png"}

    monkeypatch.syspath_prepend(str(EXTENDING))  # as PYTHONPATH does for the CLI
    rep = compare.report(store.uri, experiment=EXPERIMENT, out=store.root / "report")
    (row,) = rep.table.itertuples()
    assert row.model == "quintic" and row.final_loss == metrics["final_loss"]
    assert row.gap == pytest.approx(metrics["gap"])
    coefs = [metrics[f"coef/{n}"] for n in "fedcba"]
    np.testing.assert_allclose(fitted_curve(rep.runs.iloc[0]), np.polyval(coefs, x), rtol=1e-9)
    assert (store.root / "report" / "fits.png").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["quintic", "cosine"])
def test_vectorized_members_equal_their_solo_twin(outcomes, case):
    """A family without a batched forward (quintic: run member by member) and a scheduler (cosine:
    batched, its lr sequence logged per member) under hydra/launcher=vectorized: seed 0's member
    run holds exactly what the solo run of the same config holds."""
    solo_store, solo = only_run(outcomes, case)
    store, result = outcomes[f"{case}-vectorized"]
    assert result.returncode == 0, result.describe()
    members = {r.data.params["seed"]: r for r in store.job_runs()}
    assert set(members) == {"0", "1"}
    twin = members["0"]
    assert twin.info.status == "FINISHED" and twin.data.tags["vectorized.size"] == "2"
    for tag in ("config_hash", "seed_group", "scheduler", "model", "formula"):
        assert twin.data.tags[tag] == solo.data.tags[tag], tag
    assert twin.data.params == solo.data.params
    for key in ("loss", "lr") if case == "cosine" else ("loss",):
        assert loss_history(store.client(), twin.info.run_id, key) == \
            loss_history(solo_store.client(), solo.info.run_id, key)
    timing = {"wall_time_s", "group_wall_time_s"}
    assert {k: v for k, v in twin.data.metrics.items() if k not in timing} == \
        {k: v for k, v in solo.data.metrics.items() if k not in timing}


@pytest.mark.slow
def test_seed_groups_are_configurations_minus_the_seed(outcomes):
    store, result = outcomes["momentum-seeds"]
    assert result.returncode == 0, result.describe()
    jobs = store.job_runs()
    assert len(jobs) == 4
    assert len({r.data.tags["seed_group"] for r in jobs}) == 2
    rep = compare.report(store.uri, out=store.root / "report")
    seeds = rep.seeds
    assert seeds is not None and list(seeds["n"]) == [2, 2]
    assert list(seeds["seeds"]) == ["0,1 (2)", "0,1 (2)"]
    assert sorted(seeds["configuration"]) == ["cubic-module-momentum optimizer.momentum=0.5",
                                              "cubic-module-momentum optimizer.momentum=0.9"]


@pytest.mark.slow
def test_sweep_parent_description_is_the_comparison_table(outcomes):
    store, _ = outcomes["momentum-seeds"]
    (parent,) = [r for r in store.runs() if r.data.tags.get(SWEEP_TAG) == "true"]
    note = parent.data.tags[NOTE_TAG]
    assert "| variant | seed | final_loss | gap | wall time (s) | status |" in note
    rows = [line for line in note.splitlines() if line.startswith("| cubic-module-momentum")]
    assert len(rows) == 4
    finals = sorted(r.data.metrics["final_loss"] for r in store.job_runs())
    assert [float(line.split("|")[3]) for line in rows] == pytest.approx(finals, rel=1e-5)
    experiment = store.client().get_experiment(parent.info.experiment_id)
    assert experiment.tags[KIND_TAG] == TRAINING_KIND

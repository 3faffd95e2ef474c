"""The command line, end to end: what one run and two sweeps leave in MLflow.

One module fixture runs four CLI commands at once, each against its own temporary store:
  * the tutorial's custom_function program, full length (2000 steps), tracked via $MLFLOW_TRACKING_URI;
  * the user's sweep `-m model=cubic,legendre optimizer=sgd,rmsprop steps=50`;
  * every preset at once, `-m 'experiment=glob(*)' steps=20`;
  * `tracking.uri=` and `tracking.experiment=` on the command line, with the env var pointing elsewhere.
The tests then read the stores back through MlflowClient.
"""

from __future__ import annotations

import math
import re
from itertools import product

import pytest
from conftest import SWEEP_TAG, loss_history, run_many
from omegaconf import OmegaConf

from src.config import compose, preset_names

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
LOSS_LINE = re.compile(r"^(\d+) (\S+)$")
TUTORIAL_STEPS = 2000
TUTORIAL_FINAL_LOSS = 8.9436  # custom_function, seed 0, 2000 steps, rounded to 4 places
SWEEP_ARGS = ["-m", "model=cubic,legendre", "optimizer=sgd,rmsprop", "steps=50"]
PRESETS_ARGS = ["-m", "experiment=glob(*)", "steps=20"]
OTHER_EXPERIMENT = "cli-chosen-experiment"

pytestmark = pytest.mark.slow


def flatten(node, prefix: str = "") -> dict:
    """Every leaf of a plain (resolved) config under its dotted path."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def printed_losses(stdout: str) -> dict:
    """The tutorial-style "t loss" lines: {t: the printed loss text}."""
    return {int(m.group(1)): m.group(2)
            for m in map(LOSS_LINE.match, stdout.splitlines()) if m}


@pytest.fixture(scope="module")
def cli(make_store):
    stores = {name: make_store(f"cli-{name}")
              for name in ("tutorial", "sweep", "presets", "env", "chosen")}
    chosen = stores["chosen"]
    jobs = {
        "tutorial": (stores["tutorial"], ["experiment=custom_function"]),
        "sweep": (stores["sweep"], SWEEP_ARGS),
        "presets": (stores["presets"], PRESETS_ARGS),
        # env var -> the "env" store; the command line names the "chosen" store and experiment
        "chosen": (stores["env"], ["experiment=numpy", "steps=20", f"tracking.uri={chosen.uri}",
                                   f"tracking.experiment={OTHER_EXPERIMENT}"]),
    }
    results = dict(zip(jobs, run_many(list(jobs.values()))))
    return stores, results


# --- one full run: custom_function ----------------------------------------------------------------

@pytest.fixture(scope="module")
def tutorial(cli):
    stores, results = cli
    store, result = stores["tutorial"], results["tutorial"]
    assert result.returncode == 0, result.describe()
    runs = store.runs()
    assert len(runs) == 1, f"expected one run, found {len(runs)}"
    run = runs[0]
    client = store.client()
    return store, result, run, client, loss_history(client, run.info.run_id)


@pytest.fixture(scope="module")
def expected_cfg():
    return OmegaConf.to_container(compose(["experiment=custom_function"]), resolve=True)


def test_run_finishes_in_the_env_var_store(tutorial):
    store, result, run, client, _ = tutorial
    assert run.info.status == "FINISHED"
    assert "error" not in result.stderr.lower(), result.describe()
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.name == "pytorch-examples"
    # artifacts beside the database, although the CLI ran from another directory
    assert run.info.artifact_uri.startswith(str(store.root / "artifacts")), run.info.artifact_uri
    assert not (store.cwd / "mlruns").exists()
    assert list(store.cwd.iterdir()) == [], "the CLI wrote into its working directory"


def test_every_config_leaf_is_a_param(tutorial, expected_cfg):
    _, _, run, _, _ = tutorial
    expected = {path: str(value) for path, value in flatten(expected_cfg).items()}
    params = run.data.params
    missing = sorted(set(expected) - set(params))
    assert not missing, f"config leaves not logged as params: {missing}"
    wrong = {k: (params[k], v) for k, v in expected.items() if params[k] != v}
    assert not wrong, f"params differ from the resolved config (logged, expected): {wrong}"
    for key in ("optimizer.lr", "model._target_", "seed", "steps", "lr"):
        assert key in params
    assert params["optimizer.lr"] == params["lr"] == str(5e-6)
    assert params["model._target_"] == "src.families.Legendre"
    assert run.data.tags["model"] == "legendre" and params["steps"] == str(TUTORIAL_STEPS)


def test_full_loss_history_matches_the_console(tutorial):
    _, result, _, _, history = tutorial
    assert [step for step, _ in history] == list(range(TUTORIAL_STEPS))
    assert all(math.isfinite(v) for _, v in history)
    printed = printed_losses(result.stdout)
    assert sorted(printed) == list(range(99, TUTORIAL_STEPS, 100)), \
        "the console prints 't loss' at t % log_every == log_every - 1"
    for t, text in printed.items():
        assert history[t][1] == float(text), f"step {t}: tracked {history[t][1]!r}, printed {text}"


def test_final_loss_is_the_last_printed_loss(tutorial):
    _, result, run, _, history = tutorial
    final = run.data.metrics["final_loss"]
    assert final == history[-1][1]
    assert final == float(printed_losses(result.stdout)[TUTORIAL_STEPS - 1])
    assert round(final, 4) == TUTORIAL_FINAL_LOSS
    assert run.data.metrics["loss"] == final  # the latest value of the loss metric
    assert run.data.metrics["wall_time_s"] > 0


def test_coefficients_and_formula(tutorial):
    _, result, run, _, _ = tutorial
    coefs = {k: v for k, v in run.data.metrics.items() if k.startswith("coef/")}
    assert sorted(coefs) == ["coef/a", "coef/b", "coef/c", "coef/d"]
    formula = run.data.tags["formula"]
    assert formula.startswith("y = ") and "P3(" in formula
    for value in coefs.values():
        assert f"{value}" in formula
    result_lines = [l for l in result.stdout.splitlines() if l.startswith("Result: ")]
    assert result_lines == [f"Result: {formula}"]


def test_tags_and_run_name(tutorial):
    _, _, run, _, _ = tutorial
    tags = run.data.tags
    assert tags["variant"] == "custom_function"
    assert tags["device"] == "cpu"
    assert tags["diverged"] == "false"
    assert "diverged_step" not in tags
    assert tags["mlflow.runName"] == run.info.run_name
    assert "custom_function" in run.info.run_name and " " not in run.info.run_name
    assert not run.info.run_name.startswith(run.info.run_id[:8])  # not an MLflow random name


def test_artifacts(tutorial, expected_cfg, tmp_path):
    _, _, run, client, _ = tutorial
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "overrides.yaml", "loss_curve.png", "fit.png"} <= names
    for png in ("loss_curve.png", "fit.png"):
        path = client.download_artifacts(run.info.run_id, png, str(tmp_path))
        with open(path, "rb") as fh:
            data = fh.read()
        assert data[:8] == PNG_MAGIC, f"{png} is not a PNG"
        assert len(data) > 1000, f"{png} is suspiciously small"
    config = OmegaConf.load(client.download_artifacts(run.info.run_id, "config.yaml",
                                                      str(tmp_path)))
    assert OmegaConf.to_container(config, resolve=True) == expected_cfg
    overrides = OmegaConf.load(client.download_artifacts(run.info.run_id, "overrides.yaml",
                                                         str(tmp_path)))
    assert list(overrides) == ["experiment=custom_function"]


# --- sweeps -----------------------------------------------------------------------------------------

def job_runs_of(cli, name):
    stores, results = cli
    store, result = stores[name], results[name]
    assert result.returncode == 0, result.describe()
    return store, store.job_runs()


def assert_one_sweep_group(store, jobs):
    """If the sweep recorded a parent run, every job is its child."""
    parents = [r for r in store.runs() if r.data.tags.get(SWEEP_TAG) == "true"]
    assert len(parents) <= 1
    if parents:
        assert {r.data.tags.get("mlflow.parentRunId") for r in jobs} == {parents[0].info.run_id}


def test_sweep_gives_one_finished_run_per_combination(cli):
    store, jobs = job_runs_of(cli, "sweep")
    assert len(jobs) == 4, [r.info.run_name for r in jobs]
    combos = sorted((r.data.tags["model"], r.data.tags["optimizer"]) for r in jobs)
    assert combos == sorted(product(("cubic", "legendre"), ("sgd", "rmsprop")))
    client = store.client()
    for r in jobs:
        model, optimizer = r.data.tags["model"], r.data.tags["optimizer"]
        assert r.info.status == "FINISHED", (model, optimizer, r.info.status)
        assert r.data.tags["variant"] == f"{model}-module-{optimizer}"
        assert r.data.params["steps"] == "50"
        assert [s for s, _ in loss_history(client, r.info.run_id)] == list(range(50))
    assert len({r.info.run_name for r in jobs}) == 4, "run names should tell the jobs apart"
    assert_one_sweep_group(store, jobs)


def test_glob_sweep_runs_every_preset(cli):
    store, jobs = job_runs_of(cli, "presets")
    variants = sorted(r.data.tags["variant"] for r in jobs)
    assert variants == sorted(preset_names())
    assert len(variants) == 8
    client = store.client()
    for r in jobs:
        assert r.info.status == "FINISHED", (r.data.tags["variant"], r.info.status)
        assert r.data.params["steps"] == "20"
        assert len(loss_history(client, r.info.run_id)) == 20
    assert_one_sweep_group(store, jobs)


# --- where runs go ------------------------------------------------------------------------------------

def test_command_line_tracking_uri_wins_over_env_var(cli):
    stores, results = cli
    result = results["chosen"]
    assert result.returncode == 0, result.describe()
    assert stores["env"].runs() == [], "the run went to $MLFLOW_TRACKING_URI, not tracking.uri"
    chosen = stores["chosen"]
    runs = chosen.runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert chosen.client().get_experiment(run.info.experiment_id).name == OTHER_EXPERIMENT
    assert run.data.params["tracking.experiment"] == OTHER_EXPERIMENT
    assert run.data.params["tracking.uri"] == chosen.uri
    assert run.info.artifact_uri.startswith(str(chosen.root / "artifacts"))

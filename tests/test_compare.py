"""`python -m src.compare`: which runs it selects, the tables it prints, the files it writes.

One module fixture runs two real sweeps, one after the other, into a temporary store:
  * sweep A `-m implementation=numpy lr=1e-6,1e-2 steps=100`: two runs, the second diverges;
  * sweep B `-m implementation=module,numpy seed=0,1,2 steps=100`: two configurations, three seeds
    each; B is the newer sweep, so it is what `compare` picks by default.
The command line itself runs twice as a subprocess (the default selection, and a missing store);
the other cases call `src.compare.main` in-process, which is the same code without the start-up.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest
from conftest import SWEEP_TAG

from src import compare

pytestmark = pytest.mark.slow

EXPERIMENT = "pytorch-examples"
SWEEP_A = ["-m", "implementation=numpy", "lr=1e-6,1e-2", "steps=100"]
SWEEP_B = ["-m", "implementation=module,numpy", "seed=0,1,2", "steps=100"]
VARIANTS_B = {"cubic-module-sgd", "cubic-numpy-sgd"}
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FIGURES = ("losses.png", "final_loss.png", "fits.png")
REPORT_FILES = {"runs.csv", "seeds.csv", "report.md", *FIGURES}


def compare_cli(store, *args):
    """`python -m src.compare ARGS` against the store, from an unrelated working directory."""
    return subprocess.run([sys.executable, "-m", "src.compare", *args], cwd=store.cwd,
                          env=store.env(), capture_output=True, text=True, timeout=120)


def children(client, parent_id):
    experiment_id = client.get_run(parent_id).info.experiment_id
    return {r.info.run_id: r for r in client.search_runs(
        [experiment_id], f"tags.`mlflow.parentRunId` = '{parent_id}'")}


@pytest.fixture(scope="module")
def swept(make_store):
    """The store after sweep A, then sweep B; parent run ids and children by sweep."""
    store = make_store("compare")
    for args in (SWEEP_A, SWEEP_B):  # one after the other: B must be the newest sweep
        result = store.run_cli(*args)
        assert result.returncode == 0, result.describe()
    client = store.client()
    parents = {r.data.tags["sweep.overrides"]: r.info.run_id
               for r in store.runs() if r.data.tags.get(SWEEP_TAG) == "true"}
    a, b = parents[" ".join(SWEEP_A[1:])], parents[" ".join(SWEEP_B[1:])]
    return store, {"A": a, "B": b}, {"A": children(client, a), "B": children(client, b)}


@pytest.fixture(scope="module")
def cli(swept, tmp_path_factory):
    """The command line run twice at once: default selection, and a store that does not exist."""
    store, _, _ = swept
    out = tmp_path_factory.mktemp("report")
    missing = store.root / "nowhere" / "mlflow.db"
    with ThreadPoolExecutor(2) as pool:
        default = pool.submit(compare_cli, store, "--out", str(out))
        no_store = pool.submit(compare_cli, store, "--uri", f"sqlite:///{missing}")
        return default.result(), no_store.result(), out, missing


def parse_table(stdout: str) -> pd.DataFrame:
    """The first printed table: columns up to `coefficients` (which holds spaces) as text."""
    lines = stdout.splitlines()
    header = lines[1].split()
    keep = header[:header.index("coefficients")]
    rows = []
    for line in lines[2:]:
        if not line.strip():
            break
        rows.append(dict(zip(keep, line.split()[:len(keep)])))
    return pd.DataFrame(rows, columns=keep)


def run_in_process(capsys, *args):
    code = compare.main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- selection -----------------------------------------------------------------------------------

def test_default_selects_the_newest_sweep(swept, cli):
    _, parents, kids = swept
    result = cli[0]
    assert result.returncode == 0, result.stderr
    assert parents["B"] in result.stdout.splitlines()[0]
    table = parse_table(result.stdout)
    assert sorted(table["run"]) == sorted(r[:8] for r in kids["B"])
    assert set(table["variant"]) == VARIANTS_B


def test_parent_selects_exactly_its_children(swept, capsys, tmp_path):
    store, parents, kids = swept
    code, out, err = run_in_process(capsys, "--uri", store.uri, "--parent", parents["A"],
                                    "--out", str(tmp_path))
    assert code == 0, err
    table = parse_table(out)
    assert sorted(table["run"]) == sorted(r[:8] for r in kids["A"])
    status = list(pd.read_csv(tmp_path / "runs.csv")["status"])
    assert status == ["FINISHED", "DIVERGED@41"]  # the diverged run's NaN final loss sorts last
    assert table["final_loss"].iloc[1] == "NaN" and table["gap"].iloc[1] == "NaN"
    assert "over seeds" not in out  # one seed per configuration: no grouped view


def test_experiment_selects_every_run_but_the_parents(swept, tmp_path):
    store, parents, kids = swept
    rep = compare.report(store.uri, experiment=EXPERIMENT, out=tmp_path)
    assert set(rep.runs["run_id"]) == set(kids["A"]) | set(kids["B"])
    assert rep.parent_id is None and not rep.logged
    assert not set(parents.values()) & set(rep.runs["run_id"])


def test_resumed_sweep_lists_the_runs_it_reused(swept):
    """resume=true notes a skipped config as skipped/<hash>.yaml on the parent (src/train.py)."""
    store, parents, kids = swept
    client = store.client()
    earlier = client.get_run(parents["A"])
    resumed = client.create_run(earlier.info.experiment_id, tags={SWEEP_TAG: "true"},
                                start_time=earlier.info.start_time - 1000)  # not the newest
    reused_id = next(iter(kids["A"]))
    client.log_text(resumed.info.run_id, f"finished_run: {reused_id}\n", "skipped/abc.yaml")
    client.set_terminated(resumed.info.run_id)
    runs, histories, parent_id = compare.load_runs(store.uri, parent=resumed.info.run_id)
    assert parent_id == resumed.info.run_id
    assert list(runs["run_id"]) == [reused_id] and bool(runs["reused"].iloc[0])
    assert runs["status"].iloc[0].endswith("(reused)")
    assert len(histories[reused_id]) == runs["points"].iloc[0] > 0


# --- the table -----------------------------------------------------------------------------------

def test_table_rows_match_the_mlflow_metrics(swept, cli):
    store, _, kids = swept
    table = parse_table(cli[0].stdout)
    assert len(table) == len(kids["B"])
    by_prefix = {run_id[:8]: run for run_id, run in kids["B"].items()}
    for row in table.itertuples():
        run = by_prefix[row.run]
        assert row.variant == run.data.tags["variant"]
        assert row.seed == run.data.params["seed"]
        assert float(row.final_loss) == pytest.approx(run.data.metrics["final_loss"], rel=1e-5)
    losses = [float(v) for v in table["final_loss"]]
    assert losses == sorted(losses)  # default: final_loss ascending


def test_csv_holds_the_same_rows_at_full_precision(swept, cli):
    store, parents, kids = swept
    csv = pd.read_csv(cli[2] / "runs.csv")
    assert set(csv["run_id"]) == set(kids["B"])
    for row in csv.to_dict("records"):
        metrics = kids["B"][row["run_id"]].data.metrics
        for column in ("final_loss", "wall_time_s", "coef/a", "coef/d"):
            assert row[column] == metrics[column], column
        assert row["steps_per_s"] == pytest.approx(100 / metrics["wall_time_s"])


@pytest.mark.parametrize("descending", [False, True])
def test_sort_by_any_column(swept, capsys, tmp_path, descending):
    store, parents, kids = swept
    args = ["--uri", store.uri, "--sort", "wall_time_s", "--out", str(tmp_path), "--no-log"]
    code, out, err = run_in_process(capsys, *args, *(["--desc"] if descending else []))
    assert code == 0, err
    expected = sorted(kids["B"], key=lambda r: kids["B"][r].data.metrics["wall_time_s"],
                      reverse=descending)
    assert list(parse_table(out)["run"]) == [r[:8] for r in expected]


def test_seed_grouping(swept, cli):
    _, _, kids = swept
    assert "over seeds:" in cli[0].stdout
    seeds = pd.read_csv(cli[2] / "seeds.csv")
    assert sorted(seeds["variant"]) == sorted(VARIANTS_B)
    for group in seeds.itertuples():
        losses = [r.data.metrics["final_loss"] for r in kids["B"].values()
                  if r.data.tags["variant"] == group.variant]
        assert group.n == 3 and group.seeds == "0\u20132 (3)"
        assert group.final_loss_mean == pytest.approx(np.mean(losses), rel=1e-12)
        assert group.final_loss_std == pytest.approx(np.std(losses, ddof=1), rel=1e-9)
        assert (group.final_loss_min, group.final_loss_max) == (min(losses), max(losses))


# --- files and artifacts -------------------------------------------------------------------------

def test_report_files_and_parent_artifacts(swept, cli):
    store, parents, _ = swept
    result, _, out, _ = cli
    assert f"report: {out}" in result.stdout
    assert {p.name for p in out.iterdir()} == REPORT_FILES
    for name in FIGURES:
        assert (out / name).read_bytes()[:8] == PNG_MAGIC, name
    markdown = (out / "report.md").read_text()
    assert markdown.count("\n| ") >= 6 and "## Over seeds" in markdown
    logged = {a.path for a in store.client().list_artifacts(parents["B"], "report")}
    assert logged == {f"report/{name}" for name in REPORT_FILES}


def test_fitted_curves_follow_the_models(monkeypatch):
    """The figures draw each family's own forward pass (dynamic: averaged over its draws)."""
    import random

    from src import families
    from src.report.figures import fitted_curve

    x, _ = families.data()
    coefs = dict(zip("abcde", (0.1, -0.9, 0.2, 0.3, 0.05)))
    run = {"final_loss": 9.0, **{f"coef/{k}": v for k, v in coefs.items()}}
    for name in ("cubic", "legendre"):
        expected, _ = families.get(name).forward([coefs[k] for k in "abcd"], x)
        np.testing.assert_allclose(fitted_curve({**run, "model": name}), expected, rtol=1e-12)
    draws = []
    for depth in (4, 5, 6):  # random.randint(4, 6) in Dynamic.forward, forced to each value
        monkeypatch.setattr(random, "randint", lambda a, b, depth=depth: depth)
        draws.append(families.get("dynamic").forward([coefs[k] for k in "abcde"], x)[0])
    np.testing.assert_allclose(fitted_curve({**run, "model": "dynamic"}), np.mean(draws, 0),
                               rtol=1e-10, atol=1e-12)
    assert fitted_curve({**run, "model": "nope"}) is None


# --- bad selections ------------------------------------------------------------------------------

def assert_one_error_line(code, out, err):
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, (out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err


def test_missing_store_is_refused_and_not_created(cli):
    _, result, _, missing = cli
    assert_one_error_line(result.returncode, result.stdout, result.stderr)
    assert str(missing) in result.stderr
    assert not missing.exists() and not missing.parent.exists()


@pytest.fixture(scope="module")
def no_sweep_store(make_store):
    """A store with one ordinary run and no sweep."""
    store = make_store("compare-no-sweep")
    client = store.client()
    experiment_id = client.create_experiment(EXPERIMENT, str(store.root / "artifacts"))
    client.create_run(experiment_id, tags={"variant": "numpy"})
    return store


BAD = {  # case: (arguments after --uri, words the error line must hold)
    "unknown-experiment": (["--experiment", "nope"], ["nope", "not found", EXPERIMENT]),
    "empty-experiment": (["--experiment", "empty"], ["empty", "no runs"]),
    "unknown-run": (["--parent", "0" * 32], ["0" * 32, "no such run"]),
    "parent-without-children": (["--parent", "CHILD"], ["no child runs"]),
    "unknown-sort-column": (["--sort", "nope"], ["nope", "final_loss"]),
    "experiment-and-parent": (["--experiment", EXPERIMENT, "--parent", "CHILD"], ["not allowed"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_selection_is_one_error_line(case, swept, capsys, tmp_path):
    store, _, kids = swept
    args, words = BAD[case]
    if case == "empty-experiment" and store.client().get_experiment_by_name("empty") is None:
        store.client().create_experiment("empty", str(store.root / "artifacts"))
    args = [next(iter(kids["A"])) if a == "CHILD" else a for a in args]
    code, out, err = run_in_process(capsys, "--uri", store.uri, *args, "--out", str(tmp_path / "r"))
    assert_one_error_line(code, out, err)
    assert all(w in err for w in words), err
    assert not (tmp_path / "r").exists()  # nothing written


def test_no_sweep_in_the_store(no_sweep_store, capsys, tmp_path):
    code, out, err = run_in_process(capsys, "--uri", no_sweep_store.uri, "--out", str(tmp_path / "r"))
    assert_one_error_line(code, out, err)
    assert "no sweep" in err

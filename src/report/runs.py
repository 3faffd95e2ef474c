"""Reading tracked runs back from MLflow: selections, one row per run, loss histories.

Shared by the comparison report (src/compare.py), the run card (src/card.py) and
src/reproduce.py. Runs are read with MlflowClient (mlflow.search_runs would set the process-wide
tracking URI, and $MLFLOW_TRACKING_URI with it); nothing here imports torch.
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from src.bulk_history import loss_histories
from src.tracking.store import redact, sqlite_path, tracking_uri

SWEEP_TAG = "harness.sweep"  # src/tracking/sweep.py
PARENT_TAG = "mlflow.parentRunId"
OPTIONAL_METRICS = ("final_loss", "optimum_loss", "gap", "steps_to_1pct", "wall_time_s")


class ReadError(Exception):
    """A selection that names nothing to read; the message is one line."""


def open_client(uri: Optional[str] = None):
    """A client on an existing store (reading must never create an empty SQLite database)."""
    uri = tracking_uri(uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise ReadError(f"no tracking store at {db}; run `python -m src.train` first")
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def search_all(client, experiment_ids: list, filter_string: str = "", order_by=None) -> list:
    """Every active run matching the filter, all pages."""
    runs, token = [], None
    while experiment_ids:
        page = client.search_runs(experiment_ids, filter_string, max_results=50000,
                                  order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    return runs


def experiment_ids(client) -> list:
    return [e.experiment_id for e in client.search_experiments()]


def newest_sweep(client) -> str:
    sweeps = client.search_runs(experiment_ids(client) or ["0"], f"tags.`{SWEEP_TAG}` = 'true'",
                                max_results=1, order_by=["attributes.start_time DESC"])
    if not sweeps:
        raise ReadError(f"no sweep in {redact(client.tracking_uri)}; "
                           "run one with `python -m src.train -m ...`, or use --experiment NAME")
    return sweeps[0].info.run_id


def get_run(client, run_id: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        raise ReadError(f"run {run_id}: no such run in {redact(client.tracking_uri)}") from None


def experiment_named(client, name: str):
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise ReadError(f"experiment {name!r}: not found; experiments here: {names}")
    return exp


def children_of(client, parent_id: str) -> tuple[list, set]:
    """The parent's child runs, and the earlier runs it reused; the ids of the reused ones."""
    parent = get_run(client, parent_id)
    children = search_all(client, experiment_ids(client) or [parent.info.experiment_id],
                          f"tags.`{PARENT_TAG}` = '{parent_id}'")
    known = {r.info.run_id for r in children}
    reused = [r for r in reused_runs(client, parent_id) if r.info.run_id not in known]
    if not children and not reused:
        raise ReadError(f"run {parent_id} ({parent.info.run_name}): has no child runs")
    return children + reused, {r.info.run_id for r in reused}


def reused_runs(client, parent_id: str) -> list:
    """The FINISHED runs a `resume=true` sweep did not redo (src/train.py notes each one as
    skipped/<config hash>.yaml on the parent, with its run id as finished_run)."""
    import tempfile

    import yaml
    from mlflow.exceptions import MlflowException

    if not client.list_artifacts(parent_id, "skipped"):
        return []
    with tempfile.TemporaryDirectory() as tmp, quiet_downloads():
        folder = Path(client.download_artifacts(parent_id, "skipped", tmp))
        notes = [yaml.safe_load(f.read_text()) or {} for f in sorted(folder.glob("*.yaml"))]
    runs = []
    for run_id in filter(None, (note.get("finished_run") for note in notes)):
        try:
            runs.append(client.get_run(str(run_id)))
        except MlflowException:  # deleted since: nothing to show
            continue
    return runs


@contextmanager
def quiet_downloads():
    """No MLflow download progress bars on the console (stdout is the report's)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def experiment_runs(client, name: str) -> list:
    exp = experiment_named(client, name)
    runs = [r for r in search_all(client, [exp.experiment_id])
            if r.data.tags.get(SWEEP_TAG) != "true"]
    if not runs:
        raise ReadError(f"experiment {name!r}: has no runs")
    return runs


def runs_frame(runs: list) -> pd.DataFrame:
    """One row per run: identity, configuration, metrics (NaN where absent), status."""
    rows = []
    for run in runs:
        info, params, metrics, tags = run.info, run.data.params, run.data.metrics, run.data.tags
        row = {"run_id": info.run_id, "run_name": info.run_name,
               "experiment_id": info.experiment_id, "parent_id": tags.get(PARENT_TAG),
               "start_time": pd.Timestamp(info.start_time, unit="ms", tz="UTC"),
               "variant": tags.get("variant"),
               "model": tags.get("model", params.get("model.name")),
               "model_target": params.get("model._target_"),
               "implementation": tags.get("implementation", params.get("implementation.name")),
               "optimizer": tags.get("optimizer", params.get("optimizer.name")),
               "seed_group": tags.get("seed_group") or configuration_key(params),
               "configuration": configuration(params),
               "lr": params.get("lr"), "seed": params.get("seed"), "steps": params.get("steps"),
               "mlflow_status": info.status, "diverged_step": tags.get("diverged_step"),
               "diverged": tags.get("diverged") == "true"}
        row.update({m: metrics.get(m, math.nan) for m in OPTIONAL_METRICS})
        row.update({k: v for k, v in metrics.items() if k.startswith("coef/")})
        rows.append(row)
    df = pd.DataFrame(rows)
    df["lr"] = pd.to_numeric(df["lr"], errors="coerce")
    for col in ("seed", "steps", "diverged_step", "steps_to_1pct"):
        df[col] = pd.to_numeric(df[col], errors="coerce").round().astype("Int64")
    return df


def configuration(params: dict) -> dict:
    """What a run computes, seed aside: its config params minus seed and where it is tracked."""
    return {k: v for k, v in params.items()
            if k not in ("seed", "resume") and not k.startswith("tracking.")}


def configuration_key(params: dict) -> str:
    """The seed group of a run logged before the seed_group tag existed."""
    return "params:" + repr(sorted(configuration(params).items()))


def fetch_history(client, run_id: str) -> np.ndarray:
    """The `loss` metric by step (0, 1, ...); a gap in the steps stops the curve there."""
    return loss_histories(client, [run_id])[run_id]


def expected_points(row) -> Optional[int]:
    """How many loss points a complete record of this run holds (None: not known)."""
    if row["diverged"] and not pd.isna(row["diverged_step"]):
        return int(row["diverged_step"])
    if row["mlflow_status"] == "FINISHED" and not pd.isna(row["steps"]):
        return int(row["steps"])
    return None


def status_of(row) -> str:
    status = "DIVERGED" if row["diverged"] else row["mlflow_status"]
    if row["diverged"] and not pd.isna(row["diverged_step"]):
        status += f"@{row['diverged_step']}"
    expected = expected_points(row)
    if expected is not None and row["points"] != expected:
        status += f" (history {row['points']}/{expected})"  # incomplete, never silently
    if row["reused"]:
        status += " (reused)"  # an earlier sweep's run that this resumed sweep skipped
    return status


def load_runs(uri: Optional[str] = None, experiment: Optional[str] = None,
              parent: Optional[str] = None) -> tuple[pd.DataFrame, dict, Optional[str]]:
    """(runs, histories run_id -> loss array, parent run id or None) for one selection.

    experiment: its runs (sweep parents left out); parent: its children; neither: the children
    of the newest sweep in the store. A sweep resumed with resume=true also lists the earlier
    runs it skipped, with status "FINISHED (reused)".
    """
    if experiment is not None and parent is not None:
        raise ReadError("give --experiment or --parent, not both")
    client = open_client(uri)
    if experiment is not None:
        runs, reused, parent_id = experiment_runs(client, experiment), set(), None
    else:
        parent_id = parent or newest_sweep(client)
        runs, reused = children_of(client, parent_id)
    df = runs_frame(runs)
    df["reused"] = df["run_id"].isin(reused)
    histories = loss_histories(client, df["run_id"])  # one query on SQL stores
    df["points"] = [len(histories[r]) for r in df["run_id"]]
    df["steps_per_s"] = df["points"] / df["wall_time_s"]
    df["status"] = df.apply(status_of, axis=1)
    return df, histories, parent_id

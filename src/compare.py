"""`python -m src.compare`: compare the runs of a sweep (or of an experiment) side by side.

Usage::

    python -m src.compare                         # the most recent sweep in the store
    python -m src.compare --parent RUN_ID         # the children of that sweep's parent run
    python -m src.compare --experiment NAME       # every run of that experiment (sweep parents left out)
    python -m src.compare --sort wall_time_s --desc --out reports/today
    python -m src.compare --uri sqlite:////tmp/x/mlflow.db

It prints one row per run (variant, configuration, final loss, distance to the family's optimum,
speed, coefficients, status) and, when the selection holds several seeds of one configuration, a
grouped view over the seeds (count, mean, std, min, max). It writes, into a folder it prints
(default: a new <repo>/mlruns/reports/<timestamp>/):

- ``runs.csv`` (full precision) and ``report.md`` (the tables in Markdown, with the figures);
- ``seeds.csv`` when there is a grouped view;
- ``losses.png``: every loss curve, log scale, one colour per variant, seeds as a min..max band
  around their mean; ``final_loss.png``: final loss per configuration as bars;
  ``fits.png``: each configuration's fitted curve against sin(x).

When the selection is a sweep (the default, or --parent), the same files are logged as artifacts
of the sweep's parent run under ``report/`` (--no-log: not). A sweep run with resume=true also
lists the earlier runs it skipped as already FINISHED, with status "FINISHED (reused)". A run
whose logged loss history is shorter than its steps (or its diverged step) says so in its status.

In-process: ``load_runs(uri, experiment=None, parent=None)`` returns the runs as a DataFrame, their
loss histories and the parent run id; ``report(...)`` does what the command does and returns a
``Report``. Bad selections raise ``CompareError``; the command turns it into one ``error:`` line on
stderr and exit code 2.

optimum_loss, gap and steps_to_1pct are read from the runs' metrics; runs logged before those
metrics existed show NaN there. Runs are read with MlflowClient (mlflow.search_runs would set the
process-wide tracking URI, and $MLFLOW_TRACKING_URI with it); nothing here imports torch.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from src.bulk_history import loss_histories
from src.seed_ranges import compact_seeds
from src.tracking.store import DEFAULT_STORE_DIR, redact, sqlite_path, tracking_uri

SWEEP_TAG = "harness.sweep"  # src/tracking/sweep.py
PARENT_TAG = "mlflow.parentRunId"
REPORTS_DIR = DEFAULT_STORE_DIR / "reports"
DEFAULT_SORT = "final_loss"

CONFIG_KEYS = ["variant", "model", "implementation", "optimizer", "lr", "steps"]  # seed aside
COEFFICIENTS = ("a", "b", "c", "d", "e")
MODELS = ("cubic", "legendre", "dynamic")  # src.config.MODELS
OPTIONAL_METRICS = ("final_loss", "optimum_loss", "gap", "steps_to_1pct", "wall_time_s")
TABLE_COLUMNS = ["run_id", *CONFIG_KEYS[:5], "seed", "steps", "final_loss", "optimum_loss", "gap",
                 "steps_to_1pct", "wall_time_s", "steps_per_s"]  # + coef/* + status
GROUPED_STATS = ("final_loss", "gap", "wall_time_s")


class CompareError(Exception):
    """A selection that names nothing to compare; the message is one line."""


# --- selecting and loading runs --------------------------------------------------------------------

def open_client(uri: str):
    """A client on an existing store (reading must never create an empty SQLite database)."""
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise CompareError(f"no tracking store at {db}; run `python -m src.train` first")
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
        raise CompareError(f"no sweep in {redact(client.tracking_uri)}; "
                           "run one with `python -m src.train -m ...`, or use --experiment NAME")
    return sweeps[0].info.run_id


def children_of(client, parent_id: str) -> tuple[list, set]:
    """The parent's child runs, and the earlier runs it reused; the ids of the reused ones."""
    from mlflow.exceptions import MlflowException

    try:
        parent = client.get_run(parent_id)
    except MlflowException:
        raise CompareError(f"run {parent_id}: no such run in {redact(client.tracking_uri)}") from None
    children = search_all(client, experiment_ids(client) or [parent.info.experiment_id],
                          f"tags.`{PARENT_TAG}` = '{parent_id}'")
    known = {r.info.run_id for r in children}
    reused = [r for r in reused_runs(client, parent_id) if r.info.run_id not in known]
    if not children and not reused:
        raise CompareError(f"run {parent_id} ({parent.info.run_name}): has no child runs")
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
    exp = client.get_experiment_by_name(name)
    if exp is None or exp.lifecycle_stage == "deleted":
        names = ", ".join(e.name for e in client.search_experiments()) or "none"
        raise CompareError(f"experiment {name!r}: not found; experiments here: {names}")
    runs = [r for r in search_all(client, [exp.experiment_id])
            if r.data.tags.get(SWEEP_TAG) != "true"]
    if not runs:
        raise CompareError(f"experiment {name!r}: has no runs")
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
               "implementation": tags.get("implementation", params.get("implementation.name")),
               "optimizer": tags.get("optimizer", params.get("optimizer.name")),
               "lr": params.get("lr"), "seed": params.get("seed"), "steps": params.get("steps"),
               "mlflow_status": info.status, "diverged_step": tags.get("diverged_step"),
               "diverged": tags.get("diverged") == "true"}
        row.update({m: metrics.get(m, math.nan) for m in OPTIONAL_METRICS})
        row.update({f"coef/{k}": metrics[f"coef/{k}"] for k in COEFFICIENTS
                    if f"coef/{k}" in metrics})
        rows.append(row)
    df = pd.DataFrame(rows)
    df["lr"] = pd.to_numeric(df["lr"], errors="coerce")
    for col in ("seed", "steps", "diverged_step", "steps_to_1pct"):
        df[col] = pd.to_numeric(df[col], errors="coerce").round().astype("Int64")
    return df


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
        raise CompareError("give --experiment or --parent, not both")
    client = open_client(tracking_uri(uri))
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


# --- tables ----------------------------------------------------------------------------------------

def coefficient_columns(df: pd.DataFrame) -> list:
    return [f"coef/{k}" for k in COEFFICIENTS if f"coef/{k}" in df.columns]


def run_table(runs: pd.DataFrame, sort: str = DEFAULT_SORT, descending: bool = False) -> pd.DataFrame:
    """The per-run table, sorted by any of its columns (NaN last)."""
    table = runs[TABLE_COLUMNS + coefficient_columns(runs) + ["status"]]
    if sort not in table.columns:
        raise CompareError(f"--sort {sort}: not a column; columns: {', '.join(table.columns)}")
    return table.sort_values(sort, ascending=not descending, na_position="last",
                             kind="stable").reset_index(drop=True)


def has_seed_groups(runs: pd.DataFrame) -> bool:
    """Whether some configuration was run with several seeds."""
    seeds = runs.groupby(CONFIG_KEYS, dropna=False)["seed"].nunique(dropna=False)
    return bool((seeds > 1).any())


def seed_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: n runs, their seeds, mean/std/min/max of the grouped stats."""
    groups = runs.groupby(CONFIG_KEYS, dropna=False, sort=True)
    table = groups.agg(n=("run_id", "size"),
                       seeds=("seed", lambda s: compact_seeds(s.dropna())))
    for col in GROUPED_STATS:
        for stat in ("mean", "std", "min", "max"):
            table[f"{col}_{stat}"] = groups[col].agg(stat)
    return table.reset_index()


def compact_coefficients(row, columns: list) -> str:
    return " ".join(f"{c[5:]}={row[c]:.4g}" for c in columns if not pd.isna(row[c]))


NUMBER_FORMATS = {"wall_time_s": ".4g", "steps_per_s": ",.0f", "lr": "g"}  # else ".6g"
STAT_SUFFIXES = ("_mean", "_std", "_min", "_max")


def cell(column: str, value) -> str:
    if value is None or pd.isna(value):
        return "NaN"
    if isinstance(value, float):
        base = column.rsplit("_", 1)[0] if column.endswith(STAT_SUFFIXES) else column
        return format(value, NUMBER_FORMATS.get(base, ".6g"))
    return str(value)


def formatted(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text for reading: 8-character run ids, 6 significant digits, the
    coefficients in one column (before the status)."""
    coefs = coefficient_columns(table)
    text = pd.DataFrame({col: [cell(col, v) for v in table[col]]
                         for col in table.columns if col not in coefs}, index=table.index)
    if "run_id" in text.columns:
        text = text.rename(columns={"run_id": "run"})
        text["run"] = text["run"].str[:8]
    if coefs:
        where = text.columns.get_loc("status") if "status" in text.columns else len(text.columns)
        text.insert(where, "coefficients",
                    [compact_coefficients(row, coefs) for _, row in table.iterrows()])
    return text


def numeric_columns(table: pd.DataFrame, text: pd.DataFrame) -> list[bool]:
    return [c in table.columns and pd.api.types.is_numeric_dtype(table[c]) for c in text.columns]


def to_text(table: pd.DataFrame) -> str:
    """Fixed-width text: numbers right-aligned, words left-aligned."""
    text = formatted(table)
    widths = [max([len(c), *text[c].str.len()]) for c in text.columns]
    align = [str.rjust if n else str.ljust for n in numeric_columns(table, text)]
    rows = [list(text.columns), *text.itertuples(index=False)]
    return "\n".join("  ".join(a(v, w) for a, v, w in zip(align, row, widths)).rstrip()
                     for row in rows)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub Markdown table (no dependency on tabulate)."""
    text = formatted(table)
    numeric = numeric_columns(table, text)
    lines = ["| " + " | ".join(text.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(v.replace("|", "\\|") for v in row) + " |"
              for row in text.itertuples(index=False)]
    return "\n".join(lines) + "\n"


# --- figures ---------------------------------------------------------------------------------------

def p3(z):
    """Legendre polynomial of degree 3 (the same as src.models.p3, without importing torch)."""
    return 0.5 * (5 * z ** 3 - 3 * z)


def fitted_curve(model: str, coefs: dict, x: np.ndarray) -> np.ndarray:
    """A run's fitted function. dynamic: its expectation over the random depth, which adds no
    term, e x^4, or e x^4 + e x^5 with probability 1/3 each: cubic + e (2/3 x^4 + 1/3 x^5)."""
    if model not in MODELS:
        raise ValueError(f"model {model!r}: unknown; expected one of {', '.join(MODELS)}")
    a, b, c, d = (coefs[k] for k in "abcd")
    if model == "legendre":
        return a + b * p3(c + d * x)
    y = a + b * x + c * x ** 2 + d * x ** 3
    if model == "dynamic":
        y = y + coefs["e"] * (2 / 3 * x ** 4 + 1 / 3 * x ** 5)
    return y


def config_groups(runs: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(label, runs) per configuration; the label is the variant plus whatever tells apart the
    configurations that share it."""
    groups = list(runs.groupby(CONFIG_KEYS, dropna=False, sort=True))
    out = []
    for key, group in groups:
        same_variant = [k for k, _ in groups if k[0] == key[0]]
        varying = [(name, value) for i, (name, value) in enumerate(zip(CONFIG_KEYS, key))
                   if i > 0 and len({k[i] for k in same_variant}) > 1]
        label = str(key[0]) + "".join(f" {n}={v:g}" if isinstance(v, float) else f" {n}={v}"
                                      for n, v in varying)
        out.append((label, group))
    return out


def variant_colours(runs: pd.DataFrame) -> dict:
    from matplotlib import colormaps

    variants = sorted(runs["variant"].astype(str).unique())
    cmap = colormaps["tab10" if len(variants) <= 10 else "tab20"]
    return {v: cmap(i % cmap.N) for i, v in enumerate(variants)}


def new_figure(width=8.0, height=5.0):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    return fig, fig.subplots()


def stacked(curves: list) -> np.ndarray:
    """Curves of unequal length as rows of one array, NaN-padded."""
    out = np.full((len(curves), max(len(c) for c in curves)), np.nan)
    for i, c in enumerate(curves):
        out[i, :len(c)] = c
    return out


def loss_limits(runs: pd.DataFrame, histories: dict) -> tuple[float, float]:
    """y range of the loss plot: every curve's lowest point and every start, but not the heights
    a diverging run climbs to before it stops (they would flatten everything else)."""
    lows, highs = list(runs["optimum_loss"].dropna()), []
    for run_id, diverged in zip(runs["run_id"], runs["diverged"]):
        curve = histories[run_id][np.isfinite(histories[run_id]) & (histories[run_id] > 0)]
        if len(curve):
            lows.append(curve.min())
            highs.append(curve[0] if diverged else curve.max())
    if not lows or not highs:
        return 1e-1, 1e1
    return min(lows) / 2, max(highs) * 2


def loss_figure(runs: pd.DataFrame, histories: dict):
    fig, ax = new_figure()
    colours = variant_colours(runs)
    low, high = loss_limits(runs, histories)
    styles = {}
    for label, group in config_groups(runs):
        variant = str(group["variant"].iloc[0])
        style = ("-", "--", ":", "-.")[styles.setdefault(variant, 0) % 4]
        styles[variant] += 1
        curves = [np.clip(histories[r], low / 10, high * 10)  # off the plot, not overflowing it
                  for r in group["run_id"] if len(histories[r])]
        if not curves:
            continue
        colour = colours[variant]
        n_diverged = int(group["diverged"].sum())
        if n_diverged:
            label += f" ({n_diverged} diverged)"
        if len(curves) == 1:
            ax.plot(curves[0], color=colour, ls=style, lw=1.2, label=label)
            continue
        with warnings.catch_warnings():  # steps past the shortest curve hold NaN in some rows
            warnings.simplefilter("ignore", RuntimeWarning)
            band = stacked(curves)
            steps = np.arange(band.shape[1])
            ax.fill_between(steps, np.nanmin(band, 0), np.nanmax(band, 0), color=colour,
                            alpha=0.2, lw=0)
            ax.plot(steps, np.nanmean(band, 0), color=colour, ls=style, lw=1.2,
                    label=f"{label} (mean of {len(curves)} runs, band min..max)")
    optima = runs.dropna(subset="optimum_loss").groupby("optimum_loss")["model"].unique()
    for i, (best, models) in enumerate(optima.items()):  # cubic and legendre share theirs
        ax.axhline(best, color="grey", ls=(":", "-.")[i % 2], lw=1,
                   label=f"optimum {', '.join(sorted(models))}: {best:.4f}")
    lengths = [len(h) for h in histories.values() if len(h)]
    if lengths and max(lengths) > 5 * min(lengths):  # short runs beside long ones: log steps
        ax.set_xscale("symlog", linthresh=10)
    ax.set_xlim(0, max(lengths, default=1))
    ax.set_yscale("log")
    ax.set_ylim(low, high)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (sum of squared errors)")
    ax.set_title("Loss curves")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    return fig


def final_loss_figure(runs: pd.DataFrame):
    groups = config_groups(runs)
    fig, ax = new_figure(max(6.0, 0.6 * len(groups) + 2), 5.0)
    colours = variant_colours(runs)
    optimum_shown = False
    for i, (label, group) in enumerate(groups):
        losses = group["final_loss"].dropna()
        colour = colours[str(group["variant"].iloc[0])]
        if losses.empty:
            ax.text(i, 0.02, "no final loss", rotation=90, ha="center", va="bottom", fontsize=8,
                    transform=ax.get_xaxis_transform())
            continue
        mean = losses.mean()
        ax.bar(i, mean, color=colour, alpha=0.8,
               yerr=[[mean - losses.min()], [losses.max() - mean]] if len(losses) > 1 else None,
               capsize=4)
        best = group["optimum_loss"].dropna()
        if not best.empty:
            ax.hlines(best.iloc[0], i - 0.4, i + 0.4, color="black", lw=1.5,
                      label=None if optimum_shown else "optimum of the model family")
            optimum_shown = True
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_xticks(range(len(groups)), [label for label, _ in groups], rotation=30, ha="right",
                  fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("final loss (mean over runs; whiskers: min..max)")
    ax.set_title("Final loss per configuration")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[1]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def fits_figure(runs: pd.DataFrame):
    """sin(x) and, per configuration, the fit of its best seed."""
    x = np.linspace(-math.pi, math.pi, 2000)
    fig, ax = new_figure()
    ax.plot(x, np.sin(x), color="black", lw=2.5, alpha=0.5, label="sin(x)")
    colours = variant_colours(runs)
    for label, group in config_groups(runs):
        best = group.sort_values("final_loss", na_position="last").iloc[0]
        colour = colours[str(best["variant"])]
        coefs = {k: best.get(f"coef/{k}", math.nan) for k in COEFFICIENTS}
        if (pd.isna(best["final_loss"]) or best["model"] not in MODELS
                or any(pd.isna(coefs[k]) for k in "abcd")):
            ax.plot([], [], color=colour, ls="--", label=f"{label}: no final fit (not drawn)")
            continue
        suffix = f" (best of {len(group)} runs)" if len(group) > 1 else ""
        ax.plot(x, fitted_curve(best["model"], coefs, x), color=colour, lw=1.2, ls="--",
                label=label + suffix)
    ax.set_ylim(-2.5, 2.5)  # poor fits leave the plot rather than squash sin(x)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("Fitted curves against sin(x)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


# --- the report ------------------------------------------------------------------------------------

@dataclass
class Report:
    runs: pd.DataFrame
    table: pd.DataFrame
    seeds: Optional[pd.DataFrame]
    histories: dict
    parent_id: Optional[str]
    folder: Path
    files: list = field(default_factory=list)
    logged: bool = False
    heading: str = ""


def describe_selection(uri: str, runs: pd.DataFrame, experiment, parent_id) -> str:
    if parent_id is None:
        return f"experiment {experiment!r}: {len(runs)} runs"
    client = open_client(uri)
    parent = client.get_run(parent_id)
    what = parent.data.tags.get("sweep.overrides")
    name = f"sweep {what!r}" if what is not None else f"run {parent.info.run_name!r}"
    return f"{name} (parent run {parent_id}): {len(runs)} runs"


def new_report_folder() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        folder = REPORTS_DIR / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise CompareError(f"cannot make a new report folder under {REPORTS_DIR}")


def write_files(rep: Report) -> list[Path]:
    folder = rep.folder
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / "runs.csv"]
    rep.table.to_csv(files[0], index=False)
    md = [f"# {rep.heading}", "", to_markdown(rep.table)]
    if rep.seeds is not None:
        files.append(folder / "seeds.csv")
        rep.seeds.to_csv(files[-1], index=False)
        md += ["## Over seeds", "", to_markdown(rep.seeds)]
    figures = {"losses.png": loss_figure(rep.runs, rep.histories),
               "final_loss.png": final_loss_figure(rep.runs),
               "fits.png": fits_figure(rep.runs)}
    for name, fig in figures.items():
        fig.savefig(folder / name)
        files.append(folder / name)
        md += [f"![{name}]({name})", ""]
    files.append(folder / "report.md")
    files[-1].write_text("\n".join(md))
    return files


def report(uri: Optional[str] = None, experiment: Optional[str] = None,
           parent: Optional[str] = None, out=None, sort: str = DEFAULT_SORT,
           descending: bool = False, log_to_parent: bool = True) -> Report:
    """Load a selection, build its tables and figures, write them to `out` (default: a new folder
    under mlruns/reports/) and, for a sweep, log them to its parent run under report/."""
    uri = tracking_uri(uri)
    runs, histories, parent_id = load_runs(uri, experiment, parent)
    table = run_table(runs, sort, descending)  # a bad --sort fails before anything is written
    rep = Report(runs, table, seed_table(runs) if has_seed_groups(runs) else None, histories,
                 parent_id, Path(out) if out else new_report_folder(),
                 heading=describe_selection(uri, runs, experiment, parent_id))
    rep.files = write_files(rep)
    if parent_id is not None and log_to_parent:
        client = open_client(uri)
        for path in rep.files:  # these files only, whatever else --out holds
            client.log_artifact(parent_id, str(path), "report")
        rep.logged = True
    return rep


def print_report(rep: Report, stream=None) -> None:
    stream = stream or sys.stdout
    print(rep.heading, file=stream)
    print(to_text(rep.table), file=stream)
    if rep.seeds is not None:
        print("\nover seeds:", file=stream)
        print(to_text(rep.seeds), file=stream)
    where = f"; logged to run {rep.parent_id} under report/" if rep.logged else ""
    print(f"\nreport: {rep.folder}{where}", file=stream)


class OneLineParser(argparse.ArgumentParser):
    def error(self, message):  # like every other refusal here: one line, exit code 2
        self.exit(2, f"error: {message} (see --help)\n")


def main(argv=None) -> int:
    parser = OneLineParser(prog="python -m src.compare", description=__doc__.splitlines()[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument("--experiment", metavar="NAME", help="every run of this experiment (sweep parents left out)")
    which.add_argument("--parent", metavar="RUN_ID", help="the child runs of this run")
    parser.add_argument("--out", metavar="DIR", help="folder for the report files "
                                                      "(default: mlruns/reports/<timestamp>)")
    parser.add_argument("--sort", default=DEFAULT_SORT, metavar="COLUMN",
                        help=f"table column to sort by (default: {DEFAULT_SORT})")
    parser.add_argument("--desc", action="store_true", help="sort descending")
    parser.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI or the repo's "
                                      "mlruns/mlflow.db)")
    parser.add_argument("--no-log", action="store_true",
                        help="do not log the report to the sweep's parent run")
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help, or a bad command line (already reported)
        return stop.code
    from mlflow.exceptions import MlflowException

    try:
        rep = report(args.uri, args.experiment, args.parent, args.out, args.sort, args.desc,
                     log_to_parent=not args.no_log)
    except CompareError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except MlflowException as exc:  # a store that cannot be read: still one line
        print(f"error: tracking store {redact(tracking_uri(args.uri))}: "
              f"{' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return 1
    print_report(rep)
    return 0


if __name__ == "__main__":
    sys.exit(main())

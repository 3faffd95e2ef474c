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

Seed groups are configurations minus the seed: runs share one when their logged `seed_group`
tag (a hash of the resolved config without seed) agrees; a group's label is its variant plus the
settings that differ between the groups of that variant (e.g. ``optimizer.momentum=0.5``).

This module is the command and the report's assembly; src/report/ holds the parts: runs.py
(reading runs back), tables.py, figures.py. In-process: ``load_runs(uri, experiment=None,
parent=None)`` returns the runs as a DataFrame, their loss histories and the parent run id;
``report(...)`` does what the command does and returns a ``Report``. Bad selections raise
``CompareError``; the command turns it into one ``error:`` line on stderr and exit code 2.

optimum_loss, gap and steps_to_1pct are read from the runs' metrics; runs logged before those
metrics existed show NaN there. Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pandas as pd

from src.report.figures import final_loss_figure, fits_figure, loss_figure
from src.report.runs import ReadError, get_run, load_runs, open_client
from src.report.tables import DEFAULT_SORT, has_seed_groups, run_table, seed_table, to_markdown, to_text
from src.tracking.store import DEFAULT_STORE_DIR, redact, tracking_uri
from src.tracking.uri_secrets import redact_text

CompareError = ReadError  # the name this command's callers know
REPORTS_DIR = DEFAULT_STORE_DIR / "reports"


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
    parent = get_run(open_client(uri), parent_id)
    what = parent.data.tags.get("sweep.overrides")
    name = f"sweep {what!r}" if what is not None else f"run {parent.info.run_name!r}"
    # Masked again: runs logged before the redaction existed may hold a password in their overrides.
    return redact_text(f"{name} (parent run {parent_id}): {len(runs)} runs")


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
              f"{redact_text(' '.join(str(exc).split()))[:300]}", file=sys.stderr)
        return 1
    print_report(rep)
    return 0


if __name__ == "__main__":
    # No cyclic garbage collection in this short command: each full collection walks every
    # object MLflow, pandas and matplotlib made on import (about 300,000), and importing MLflow
    # and reading a sweep back trigger several (measured: a sixth of the command's CPU time on
    # a 256-member sweep, the same peak memory). Its few cycles (figures) die with it.
    gc.disable()
    sys.exit(main())

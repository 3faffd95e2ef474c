"""What the MLflow UI shows first: the experiment's kind and description, a sweep's table.

MLflow marks model-training experiments with the tag `mlflow.experimentKind=
custom_model_development`; we set it on every experiment we write to. MLflow 3.17.2's UI,
though, decides between its GenAI overview and the runs from its sidebar switch ("GenAI" /
"Model training", remembered by the browser) or the `workflowType` query parameter, not from
the tag (measured: the plain experiment address opens the GenAI overview even with the tag). So
`landing_url` adds `workflowType=machine_learning`, and `python -m src.report.mlflow_ui` (run by
`make ui`) prints that address. A description is the tag `mlflow.note.content` (Markdown), shown
on the experiment's and on a run's page without expanding anything.

Called by the recorder process (src/tracking/recorder.py) with its MlflowClient: when it opens
an experiment and when it ends a sweep's parent run. Plain Python, no pandas: it runs on the
path every command waits for.
"""

from __future__ import annotations

import argparse
import math

KIND_TAG = "mlflow.experimentKind"
TRAINING_KIND = "custom_model_development"
NOTE_TAG = "mlflow.note.content"

EXPERIMENT_NOTE = """\
Runs of the harness for the PyTorch tutorial *Learning PyTorch with Examples*: each run fits
y = sin(x) on 2000 points in [-pi, pi] with one model family, implementation style, optimizer
and seed, and logs its loss at every step, its final loss, its gap to the family's least-squares
optimum and its figures.

A sweep (`python -m src.train -m ...`) is one parent run with a child run per job; the parent's
description holds the comparison table. For the full report with figures:
`python -m src.compare` (or `--parent RUN_ID`).
"""


def describe_experiment(client, experiment_id: str) -> None:
    """Mark the experiment as model training and describe it, unless it already says so."""
    tags = client.get_experiment(experiment_id).tags
    if tags.get(KIND_TAG) != TRAINING_KIND:
        client.set_experiment_tag(experiment_id, KIND_TAG, TRAINING_KIND)
    if not tags.get(NOTE_TAG):  # a description someone wrote stays
        client.set_experiment_tag(experiment_id, NOTE_TAG, EXPERIMENT_NOTE)


def _number(value, spec: str) -> str:
    return "–" if value is None or math.isnan(value) else format(value, spec)


def sweep_markdown(children: list) -> str:
    """A sweep's child runs (mlflow Run objects) as a Markdown table, best final loss first."""
    def order(run):
        loss = run.data.metrics.get("final_loss")
        return (loss is None, loss if loss is not None else 0.0, run.info.run_name or "")

    # The table first: the UI shows a description's first lines and folds the rest.
    lines = ["| variant | seed | final_loss | gap | wall time (s) | status |",
             "|---|---:|---:|---:|---:|---|"]
    for run in sorted(children, key=order):
        m, tags = run.data.metrics, run.data.tags
        status = "DIVERGED" if tags.get("diverged") == "true" else run.info.status
        lines.append(f"| {tags.get('variant', run.info.run_name)} | {run.data.params.get('seed', '')} "
                     f"| {_number(m.get('final_loss'), '.6g')} | {_number(m.get('gap'), '.3g')} "
                     f"| {_number(m.get('wall_time_s'), '.3g')} | {status} |")
    lines += ["", f"{len(children)} runs, best final loss first; gap: relative excess over the "
              "model family's least-squares optimum. Full report: `python -m src.compare "
              "--parent RUN_ID`."]
    return "\n".join(lines) + "\n"


def landing_url(base_url: str, experiment_id: str) -> str:
    """The experiment's page in the UI, opening on its runs (see the module docstring)."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}?workflowType=machine_learning"


def main(argv=None) -> None:
    """Print the address that opens the experiment on its runs."""
    from src.report.runs import ReadError, experiment_named, open_client

    parser = argparse.ArgumentParser(prog="python -m src.report.mlflow_ui",
                                     description=main.__doc__)
    parser.add_argument("--base", default="http://127.0.0.1:5000", help="the UI's address")
    parser.add_argument("--experiment", default="pytorch-examples")
    parser.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI or mlruns/)")
    args = parser.parse_args(argv)
    try:
        experiment = experiment_named(open_client(args.uri), args.experiment)
        print(f"open {landing_url(args.base, experiment.experiment_id)}")
    except ReadError as exc:
        print(f"open {args.base} (no runs yet: {exc})")


if __name__ == "__main__":
    main()

"""What the MLflow UI shows first: the experiment's kind and description, a sweep's table.

MLflow 3 opens an experiment on its GenAI overview unless the experiment carries the tag
`mlflow.experimentKind=custom_model_development` (its marker for model-training experiments);
with it the page lands on the runs. A description is the tag `mlflow.note.content` (Markdown),
shown on the experiment's and on a run's page without expanding anything.

Called by the recorder process (src/tracking/recorder.py) with its MlflowClient: when it opens
an experiment and when it ends a sweep's parent run. Plain Python, no pandas: it runs on the
path every command waits for.
"""

from __future__ import annotations

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

    lines = [f"**{len(children)} runs**, best final loss first (gap: relative excess over the "
             "model family's optimum).", "",
             "| variant | seed | final_loss | gap | wall time (s) | status |",
             "|---|---:|---:|---:|---:|---|"]
    for run in sorted(children, key=order):
        m, tags = run.data.metrics, run.data.tags
        status = "DIVERGED" if tags.get("diverged") == "true" else run.info.status
        lines.append(f"| {tags.get('variant', run.info.run_name)} | {run.data.params.get('seed', '')} "
                     f"| {_number(m.get('final_loss'), '.6g')} | {_number(m.get('gap'), '.3g')} "
                     f"| {_number(m.get('wall_time_s'), '.3g')} | {status} |")
    return "\n".join(lines) + "\n"

"""`python -m src.card [RUN_ID]`: a Markdown card for one tracked run.

Without RUN_ID, the newest run of the experiment. The card puts the run's final loss next to
the number the tutorial printed for that section (the tutorial's runs were unseeded, so only
custom_function, whose start is fixed, must agree to the digit).
"""

from __future__ import annotations

import argparse
import sys

from src.report.runs import ReadError, experiment_named, fetch_history, get_run, open_client
from src.tracking.uri_secrets import redact_text

# Last loss the tutorial printed (step 1999; 29999 for dynamic), per preset.
TUTORIAL_FINAL_LOSS = {
    "numpy": 9.031997888657425,
    "tensor": 9.580371856689453,
    "autograd": 8.911981582641602,
    "custom_function": 8.943639755249023,
    "nn": 9.649618148803711,
    "optim": 9.908321380615234,
    "module": 10.249417304992676,
    "dynamic": 8.871894836425781,
}


def find_run(client, run_id: str | None, experiment: str):
    if run_id:
        return get_run(client, run_id)
    exp = experiment_named(client, experiment)
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"],
                              max_results=1)
    if not runs:
        raise ReadError(f"experiment {experiment!r}: has no runs")
    return runs[0]


def render(client, run) -> str:
    info, data = run.info, run.data
    p, m, t = data.params, data.metrics, data.tags
    variant = t.get("variant", "?")
    history = fetch_history(client, info.run_id)
    steps = len(history)
    log_every = int(p.get("log_every", 100))
    wall = m.get("wall_time_s")
    lines = [
        f"# Run card: {info.run_name}",
        "",
        f"- run id: `{info.run_id}` ({info.status})",
        f"- variant: **{variant}** — model `{t.get('model')}`, implementation "
        f"`{t.get('implementation')}`, optimizer `{t.get('optimizer')}`, "
        f"lr {p.get('lr')}, seed {p.get('seed')}, device `{t.get('device', '?')}`",
        f"- code: {t.get('mlflow.source.git.commit', 'unknown')}"
        + (" (uncommitted changes)" if t.get("git_dirty") == "true" else ""),
        "",
        "| | value |",
        "|---|---|",
        f"| steps logged | {steps} of {p.get('steps')} |",
        f"| final loss | {m['final_loss']:.6g} |" if "final_loss" in m else
        f"| final loss | diverged at step {t.get('diverged_step')} |",
    ]
    if variant in TUTORIAL_FINAL_LOSS:
        lines.append(f"| tutorial printed | {TUTORIAL_FINAL_LOSS[variant]:.6g} |")
    if wall:
        lines += [f"| training loop | {wall:.3f} s |", f"| steps per second | {steps / wall:,.0f} |"]
    coefs = sorted(k for k in m if k.startswith("coef/"))
    lines += ["", f"Result: {t.get('formula', '?')}", "", "| coefficient | value |", "|---|---|"]
    lines += [f"| {k[5:]} | {m[k]:.6g} |" for k in coefs]
    lines += ["", "Loss, as the tutorial prints it:", "", "```"]
    lines += [f"{step} {value}" for step, value in enumerate(history)
              if step % log_every == log_every - 1]
    lines += ["```", "", "Artifacts: " + ", ".join(a.path for a in client.list_artifacts(info.run_id))]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.card", description=__doc__.splitlines()[0])
    parser.add_argument("run_id", nargs="?", help="run id (default: the newest run)")
    parser.add_argument("--experiment", default="pytorch-examples")
    parser.add_argument("--uri", default=None, help="tracking URI (default: $MLFLOW_TRACKING_URI "
                                                    "or the repo's mlruns/)")
    parser.add_argument("--out", help="also write the card to this file")
    args = parser.parse_args(argv)

    try:
        client = open_client(args.uri)  # reading must not create an empty store
        card = redact_text(render(client, find_run(client, args.run_id, args.experiment)))
    except ReadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(card)
    if args.out:
        with open(args.out, "w") as f:
            f.write(card)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`python -m src.reproduce RUN_ID`: re-run a logged run from its logged config and compare.

The config comes from the run's own `config.yaml` artifact (never from today's defaults), checked
against today's schema. The new run is logged to the same store and experiment, tagged
`reproduces=RUN_ID`, and its loss curve is compared with the logged one step by step: exit 0 and
"identical" when they agree to the last bit, else exit 1 naming the first step that differs.
A different code version (git commit) or device is reported, since either may explain a
difference.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from src.report.runs import ReadError, fetch_history, get_run, open_client
from src.tracking.uri_secrets import redact_text


class ReproduceError(ReadError):
    pass


def logged_config(client, run):
    """The run's resolved config, as logged, merged onto the typed schema."""
    from src.config import TrainConfig

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, "config.yaml", tmp)
        except Exception:
            raise ReproduceError(f"run {run.info.run_id} has no config.yaml artifact; "
                                 "only runs made by src.train can be reproduced") from None
        logged = OmegaConf.load(Path(path))
    return OmegaConf.merge(OmegaConf.structured(TrainConfig), logged)


def first_difference(logged: list[float], new: list[float]):
    """(step, logged value, new value) of the first disagreement, or None if identical."""
    for step, (a, b) in enumerate(zip(logged, new)):
        if a != b and not (math.isnan(a) and math.isnan(b)):
            return step, a, b
    if len(logged) != len(new):
        step = min(len(logged), len(new))
        return (step, logged[step] if step < len(logged) else None,
                new[step] if step < len(new) else None)
    return None


def describe_difference(step, logged, new) -> str:
    if logged is None or new is None:
        return (f"curves differ in length: the logged run has {'no' if logged is None else 'a'} "
                f"loss at step {step}, the new run {'has none' if new is None else 'has one'}")
    delta = new - logged
    relative = abs(delta) / abs(logged) if logged else math.inf
    return (f"first difference at step {step}: logged {logged!r}, new {new!r} "
            f"(difference {delta:.3g}, relative {relative:.3g})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.reproduce",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("run_id")
    parser.add_argument("--uri", help="tracking URI (default: $MLFLOW_TRACKING_URI or mlruns/)")
    args = parser.parse_args(argv)

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from src.config import ConfigError
    from src.tracking.client import TrackingError, close_all
    from src.tracking.provenance import git_tags
    from src.tracking.store import tracking_uri
    from src.train import train_tracked

    uri = tracking_uri(args.uri)
    try:
        client = open_client(uri)
        original = get_run(client, args.run_id)
        cfg = logged_config(client, original)
        experiment = client.get_experiment(original.info.experiment_id).name
        cfg.tracking.uri, cfg.tracking.experiment = uri, experiment  # beside the original
        logged = fetch_history(client, args.run_id).tolist()
        result = train_tracked(cfg, extra_tags={"reproduces": args.run_id},
                               overrides=[f"reproduce {args.run_id}"])
        errors = close_all()  # everything written before we report
        if errors:
            raise TrackingError(errors[0])
    except (ReadError, ConfigError, TrackingError) as exc:
        print(f"error: {redact_text(str(exc))}", file=sys.stderr)
        return 2

    then = original.data.tags.get("mlflow.source.git.commit")
    now = git_tags().get("mlflow.source.git.commit")
    if then != now:
        print(f"note: code version differs: logged run at {then or 'unknown'}, now {now or 'unknown'}")
    if git_tags().get("git_dirty") == "true" or original.data.tags.get("git_dirty") == "true":
        print("note: uncommitted changes in the working tree (now or then)")
    if original.data.tags.get("device") not in (None, result.device):
        print(f"note: device differs: logged {original.data.tags.get('device')}, now {result.device}")

    difference = first_difference(logged, result.losses)
    if difference is None:
        print(f"identical: {len(logged)} losses of run {args.run_id} reproduced bit for bit")
        return 0
    print(f"differs: {describe_difference(*difference)}")
    return 1


if __name__ == "__main__":
    sys.exit(main())

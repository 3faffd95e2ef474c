"""A batched group tracked as its members' own runs, the way src.train tracks a solo run.

Every member gets the run a solo job would get (src.train.open_run / record_result: params,
config and overrides artifacts, the full loss curve, summary metrics, tags, the same
config_hash), plus the tags `vectorized.group` and `vectorized.size` and the metric
`group_wall_time_s`; its `wall_time_s` is its share of the group's loop time. Instead of two
PNGs per member, the sweep's parent run gets one loss band and one fit band per group, under
groups/<group id>/ (src/vectorized/figures.py says why).
"""

from __future__ import annotations

import sys

from src.config import ConfigError, validate
from src.tracking import sweep
from src.tracking.client import Run, TrackingError, recorder_for

GROUP_WALL_TIME = "group_wall_time_s"


def train_group(cfgs: list, overrides: list, group_id: str) -> list:
    """Train and track one group; returns each member's final loss (inf if it diverged)."""
    from src.train import end_unfinished, open_run, record_result
    from src.vectorized.loop import fit_group  # torch: imported once a group needs it

    try:
        for cfg in cfgs:
            validate(cfg)
        tags = {"vectorized.group": group_id, "vectorized.size": len(cfgs)}
        runs = [open_run(cfg, tags, member_overrides)
                for cfg, member_overrides in zip(cfgs, overrides)]
        try:
            group = fit_group(cfgs, on_losses=lambda i, first, values, stamps:
                              runs[i].log_losses(first, values, stamps))
        except BaseException as exc:
            for run in runs:  # every open member: KILLED on Ctrl-C / SIGTERM, else FAILED
                end_unfinished(run, exc)
            raise
    except (ConfigError, TrackingError) as exc:  # one line, and the sweep stops here
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None
    parent = group_parent(cfgs[0])
    for cfg, run, result in zip(cfgs, runs, group.members):
        record_result(cfg, run, result, extra_metrics={GROUP_WALL_TIME: group.wall_time_s},
                      figures=parent is None)
    if parent is not None:
        log_group_figures(parent, cfgs, group, group_id)
    return [result.final_loss for result in group.members]


def group_parent(cfg):
    """The sweep's parent run, when this process started it (else members plot themselves)."""
    recorder = recorder_for(cfg.tracking.uri, cfg.tracking.experiment)
    parent = sweep.parent_for(recorder)
    return Run(recorder, parent) if isinstance(parent, int) else None


def log_group_figures(parent, cfgs, group, group_id: str) -> None:
    from src.config import composed_variant
    from src.seed_ranges import compact_seeds
    from src.vectorized import figures

    members = group.members
    seeds = [int(c.seed) for c in cfgs]
    title = (f"{composed_variant(cfgs[0])} (lr={cfgs[0].lr:g}), "
             f"seeds {compact_seeds(seeds)}, group {group_id}")
    parent.log_group_figures(f"groups/{group_id}", members[0].x, members[0].y,
                             figures.loss_stats([m.losses for m in members]),
                             figures.fit_stats([m.y_fit for m in members]), title)


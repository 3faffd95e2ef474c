"""A batched group tracked as its members' own runs, the way src.train tracks a solo run.

Every member gets the run a solo job would get (src.train.open_run / training / record_result:
params, config and overrides artifacts with URI secrets masked, the full loss curve and, with a
scheduler, the `lr` series, summary metrics, tags with the same config_hash, seed_group and
scheduler), plus the tags `vectorized.group` and `vectorized.size` and the metric
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
    from src.train import open_run, output_dir, record_result, training

    try:
        for cfg in cfgs:
            validate(cfg)
        cfg = cfgs[0]
        # the recorder checks the store while torch is imported (as src.train does)
        recorder = recorder_for(cfg.tracking.uri, cfg.tracking.experiment, output_dir())
        from src.vectorized.loop import fit_group  # torch: imported once a group needs it

        tags = {"vectorized.group": group_id, "vectorized.size": len(cfgs)}
        runs = [open_run(recorder, member, tags, member_overrides)
                for member, member_overrides in zip(cfgs, overrides)]
        with training(recorder, runs):  # no member left RUNNING, whatever stops the group
            group = fit_group(cfgs, on_losses=lambda i, *series: runs[i].log_losses(*series),
                              on_lrs=lambda i, *series: runs[i].log_series("lr", *series))
    except (ConfigError, TrackingError) as exc:  # one line, and the sweep stops here
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2 if isinstance(exc, ConfigError) else 1) from None
    parent = group_parent(recorder)
    for member, run, result in zip(cfgs, runs, group.members):
        record_result(member, run, result, extra_metrics={GROUP_WALL_TIME: group.wall_time_s},
                      figures=parent is None)
    if parent is not None:
        log_group_figures(parent, cfgs, group, group_id)
    return [result.final_loss for result in group.members]


def group_parent(recorder):
    """The sweep's parent run, when this process started it (else members plot themselves)."""
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
    pngs = figures.group_figures(members[0].x, members[0].y,
                                 figures.loss_stats([m.losses for m in members]),
                                 figures.fit_stats([m.y_fit for m in members]), title)
    for name, png in pngs.items():
        parent.log_file(f"groups/{group_id}/{name}", png)


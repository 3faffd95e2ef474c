"""The comparison's figures: every loss curve, final loss per configuration, fitted curves.

Fitted curves come from the model family registry (src/families.py), never a copy here.
"""

from __future__ import annotations

import math
import warnings
from typing import Optional

import numpy as np
import pandas as pd

from src import families
from src.report.tables import config_groups


def fitted_curve(run) -> Optional[np.ndarray]:
    """A run's fitted function on the tutorial's x (averaged over a family's random draws), or
    None without a final fit or a known family."""
    try:
        family = families.get(str(run["model"]), run.get("model_target"))
    except (ValueError, ImportError):
        return None
    coefs = {k: run.get(f"coef/{k}", math.nan) for k in family.coefficient_names}
    if pd.isna(run["final_loss"]) or any(pd.isna(v) for v in coefs.values()):
        return None
    return family.mean_prediction(coefs, families.data()[0])


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
    x, y = families.data()
    fig, ax = new_figure()
    ax.plot(x, y, color="black", lw=2.5, alpha=0.5, label="sin(x)")
    colours = variant_colours(runs)
    for label, group in config_groups(runs):
        best = group.sort_values("final_loss", na_position="last").iloc[0]
        colour = colours[str(best["variant"])]
        curve = fitted_curve(best)
        if curve is None:
            ax.plot([], [], color=colour, ls="--", label=f"{label}: no final fit (not drawn)")
            continue
        suffix = f" (best of {len(group)} runs)" if len(group) > 1 else ""
        ax.plot(x, curve, color=colour, lw=1.2, ls="--", label=label + suffix)
    ax.set_ylim(-2.5, 2.5)  # poor fits leave the plot rather than squash sin(x)
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title("Fitted curves against sin(x)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig

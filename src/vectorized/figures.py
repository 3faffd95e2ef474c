"""One pair of figures per group, on the sweep's parent run, instead of two PNGs per member.

Rendering and uploading two PNGs costs the recorder about 70 ms a run on an idle machine
(about 260 ms measured under load), more than a member's share of the batched loop; a group's
members differ only in seed, so one loss band (median and min-max over members, step by step)
and one fit band say what the per-member plots would.

They are drawn in the training process, which is idle once a group has trained, while its
recorder, the busier process of a vectorized launch, writes the members' runs (measured, 64
members: 0.27 s of drawing and 0.5 s of loading matplotlib off the recorder's work).
"""

from __future__ import annotations

import io

import numpy as np


def loss_stats(curves: list) -> np.ndarray:
    """[3, T]: min, median, max over the members still training at each step (NaN after)."""
    length = max(len(c) for c in curves)
    table = np.full((len(curves), length), np.nan)
    for i, curve in enumerate(curves):
        table[i, :len(curve)] = curve
    return np.nanpercentile(table, [0, 50, 100], axis=0)


def fit_stats(y_fits) -> np.ndarray:
    return np.percentile(np.asarray(y_fits, dtype=float), [0, 50, 100], axis=0)


def band(x, stats, title: str, xlabel: str, ylabel: str, log: bool, data=None):
    from matplotlib.figure import Figure  # once a group has trained: not on the way to it

    from src.plots import MARGINS

    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    if data is not None:
        ax.plot(x, data, label="sin(x)", lw=2, color="black", alpha=0.6)
    low, median, high = stats
    ax.fill_between(x, low, high, alpha=0.3, label="min-max over seeds")
    ax.plot(x, median, lw=1.2, label="median over seeds")
    if log:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="upper right" if log else "upper left", fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.subplots_adjust(**MARGINS)
    return fig


def group_figures(x, y, losses, fits, title: str) -> dict:
    """artifact name -> PNG bytes, drawn from the statistics."""
    figures = {"loss_band.png": band(np.arange(losses.shape[1]), losses, title, "step",
                                     "loss (sum of squared errors)", log=True),
               "fit_band.png": band(x, fits, title, "x", "y", log=False, data=y)}
    out = {}
    for name, figure in figures.items():
        png = io.BytesIO()
        figure.savefig(png, format="png")
        out[name] = png.getvalue()
    return out

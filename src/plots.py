"""The two figures every run logs: its loss curve and its fit against sin(x)."""

from __future__ import annotations

from matplotlib.figure import Figure

# Fixed margins: tight_layout would cost about 50 ms a figure, twice per run.
MARGINS = dict(left=0.13, right=0.97, bottom=0.12, top=0.92)


def loss_curve(losses, title: str) -> Figure:
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.semilogy(range(len(losses)), losses, lw=1.2)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (sum of squared errors)")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.subplots_adjust(**MARGINS)
    return fig


def fit(x, y, y_fit, formula: str, title: str) -> Figure:
    fig = Figure(figsize=(6, 4), dpi=100)
    ax = fig.subplots()
    ax.plot(x, y, label="sin(x)", lw=2, color="black", alpha=0.6)
    ax.plot(x, y_fit, label="fitted", lw=1.5, ls="--")
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(loc="upper left")
    ax.text(0.02, 0.02, formula, transform=ax.transAxes, fontsize=6, wrap=True)
    ax.grid(True, alpha=0.3)
    fig.subplots_adjust(**MARGINS)
    return fig

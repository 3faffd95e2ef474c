"""A model family defined outside src/: one class here plus conf/model/quintic.yaml beside it."""

import numpy as np

from src.families import Family, powers

NAMES = ("a", "b", "c", "d", "e", "f")


class Quintic(Family):
    name = "quintic"
    coefficient_names = NAMES

    def forward(self, p, x):
        y = p[0]
        for k in range(1, 6):
            y = y + p[k] * x ** k

        def backprop(g):
            return [g.sum()] + [(g * x ** k).sum() for k in range(1, 6)]

        return y, backprop

    def formula(self, v: dict) -> str:
        return "y = " + " + ".join(f"{v[n]} x^{k}" for k, n in enumerate(NAMES))

    def designs(self, x):
        return [np.column_stack(powers(x, 5))]

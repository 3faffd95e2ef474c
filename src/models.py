"""The three model families, written once for numpy arrays and torch tensors alike.

`forward(p, x)` returns the prediction and a `backprop(g)` that turns dLoss/dprediction into the
hand-written gradients of the coefficients (used by the numpy and tensor implementations; the
autograd ones ignore it). The arithmetic follows the tutorial's expressions operation by
operation, so a seeded run retraces the tutorial's script.
"""

from __future__ import annotations

import random

import torch


def p3(z):
    """Legendre polynomial of degree 3."""
    return 0.5 * (5 * z ** 3 - 3 * z)


def dp3(z):
    return 1.5 * (5 * z ** 2 - 1)


class LegendrePolynomial3(torch.autograd.Function):
    """P3 as a custom autograd Function with a hand-written backward (tutorial section 5)."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return p3(input)

    @staticmethod
    def backward(ctx, grad_output):
        (input,) = ctx.saved_tensors
        return grad_output * 1.5 * (5 * input ** 2 - 1)


class Cubic:
    name = "cubic"
    coefficient_names = ("a", "b", "c", "d")

    def forward(self, p, x):
        a, b, c, d = p
        y = a + b * x + c * x ** 2 + d * x ** 3

        def backprop(g):
            return [g.sum(), (g * x).sum(), (g * x ** 2).sum(), (g * x ** 3).sum()]

        return y, backprop

    def formula(self, v: dict) -> str:
        return f"y = {v['a']} + {v['b']} x + {v['c']} x^2 + {v['d']} x^3"


class Legendre:
    name = "legendre"
    coefficient_names = ("a", "b", "c", "d")

    def forward(self, p, x):
        a, b, c, d = p
        P3 = LegendrePolynomial3.apply if isinstance(x, torch.Tensor) else p3
        z = c + d * x
        pz = P3(z)
        y = a + b * pz

        def backprop(g):
            gz = g * b * dp3(z)
            return [g.sum(), (g * pz).sum(), gz.sum(), (gz * x).sum()]

        return y, backprop

    def formula(self, v: dict) -> str:
        return f"y = {v['a']} + {v['b']} * P3({v['c']} + {v['d']} x)"


class Dynamic:
    """Cubic plus e x^4 and e x^5, each used or not at random on every forward pass."""

    name = "dynamic"
    coefficient_names = ("a", "b", "c", "d", "e")

    def forward(self, p, x):
        a, b, c, d, e = p
        y = a + b * x + c * x ** 2 + d * x ** 3
        exponents = range(4, random.randint(4, 6))  # the tutorial's draw: 0, 1 or 2 extra terms
        for exp in exponents:
            y = y + e * x ** exp

        def backprop(g):
            grad_e = (g * 0).sum()
            for exp in exponents:
                grad_e = grad_e + (g * x ** exp).sum()
            return [g.sum(), (g * x).sum(), (g * x ** 2).sum(), (g * x ** 3).sum(), grad_e]

        return y, backprop

    def formula(self, v: dict) -> str:
        return (f"y = {v['a']} + {v['b']} x + {v['c']} x^2 + {v['d']} x^3"
                f" + {v['e']} x^4 ? + {v['e']} x^5 ?")


FAMILIES = {family.name: family for family in (Cubic(), Legendre(), Dynamic())}


class PolynomialModule(torch.nn.Module):
    """A custom nn.Module over any family: one Parameter per coefficient (tutorial section 8/9)."""

    def __init__(self, family, init=None):
        super().__init__()
        self.family = family
        for i, name in enumerate(family.coefficient_names):
            value = torch.randn(()) if init is None else torch.tensor(float(init[i]))
            self.register_parameter(name, torch.nn.Parameter(value))

    def forward(self, x):
        y, _ = self.family.forward([getattr(self, n) for n in self.family.coefficient_names], x)
        return y

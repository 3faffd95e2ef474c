"""The torch side of the model families (src/families.py): P3 as a custom autograd Function
(tutorial section 5) and an nn.Module holding any family's coefficients as Parameters."""

from __future__ import annotations

import torch

from src.families import p3


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

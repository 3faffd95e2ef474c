"""Batched counterparts of the implementation strategies (src/implementations.py).

Each takes the members' solo strategies at their start (src/vectorized/solo.py) and stacks their
parameters: every coefficient gets a leading member dimension. `loss_and_gradients(depth)`
returns one loss per member ([S]) and leaves each member's gradient in its row of `.grad`, so
one torch.optim optimizer over the stacked tensors updates every member as its solo optimizer
would (the updates are elementwise).
"""

from __future__ import annotations

import numpy as np
import torch

from src import implementations
from src.vectorized.families import forward_of


def stacked(tensors, shape):
    return torch.stack([t.detach() for t in tensors]).reshape(shape).clone()


class HandWrittenGradients:
    """numpy or tensor style: the family's hand-written backward over all members at once."""

    def __init__(self, solos, family):
        first = solos[0]
        self.family, self.forward = family, forward_of(family)
        self.numpy, self.x, self.y = first.numpy, first.x, first.y
        n = len(solos)
        if self.numpy:
            self.array = np.stack([s.array for s in solos])  # [S, C] float64
            self.params = [torch.from_numpy(self.array)]  # updated in place by the optimizer
        else:
            self.params = [stacked([s.params[i] for s in solos], (n, 1))
                           for i in range(len(family.coefficient_names))]

    def coefficient_values(self):
        if self.numpy:
            return [self.array[:, i:i + 1] for i in range(self.array.shape[1])]
        return self.params

    def loss_and_gradients(self, depth):
        y_pred, backprop = self.forward(self.coefficient_values(), self.x, depth)
        diff = y_pred - self.y
        if self.numpy:
            loss = np.square(diff).sum(axis=-1)
            self.params[0].grad = torch.from_numpy(np.concatenate(backprop(2.0 * diff), axis=1))
            return torch.from_numpy(loss)
        for p, g in zip(self.params, backprop(2.0 * diff)):
            p.grad = g
        return diff.pow(2).sum(-1)

    def coefficient_rows(self) -> list:
        if self.numpy:
            return self.array.tolist()
        return torch.cat([p.detach() for p in self.params], dim=1).tolist()

    def predict(self, depth) -> np.ndarray:
        y, _ = self.forward(self.coefficient_values(), self.x, depth)
        return y if self.numpy else y.cpu().numpy()


def squared_error_rows(y_pred, y):
    """src.implementations.squared_error_sum, once per member."""
    return (y_pred - y).pow(2).sum(-1)


def mse_sum_rows(y_pred, y):
    """torch.nn.MSELoss(reduction="sum"), once per member."""
    return torch.nn.functional.mse_loss(y_pred, y.expand_as(y_pred), reduction="none").sum(-1)


class Autograd:
    """autograd and module styles: the family's forward on stacked coefficients, then backward.

    The members' losses are summed for one backward pass: each member's gradient reaches its
    own row multiplied by exactly 1.0, as in its solo run.
    """

    def __init__(self, solos, family, loss_rows):
        first = solos[0]
        self.family, self.forward, self.loss_rows = family, forward_of(family), loss_rows
        self.x, self.y = first.x, first.y
        n = len(solos)
        self.params = [stacked([s.params[i] for s in solos], (n, 1)).requires_grad_()
                       for i in range(len(family.coefficient_names))]

    def loss_and_gradients(self, depth):
        y_pred, _ = self.forward(self.params, self.x, depth)
        loss = self.loss_rows(y_pred, self.y)
        loss.sum().backward()
        return loss.detach()

    def coefficient_rows(self) -> list:
        return torch.cat([p.detach() for p in self.params], dim=1).tolist()

    def predict(self, depth) -> np.ndarray:
        with torch.no_grad():
            return self.forward(self.params, self.x, depth)[0].cpu().numpy()


class Sequential:
    """nn style: Linear(3, 1) on (x, x^2, x^3), the loss and the optimizer batched over members.

    The layer's matrix product runs once per member, on that member's rows of the stacked
    parameters: BLAS blocks the 2000-term sums of a stacked product (and of its backward)
    differently from the solo run's, so a stacked matrix product is not bit-identical (measured:
    torch.baddbmm, one addmm over all members, and torch.func.vmap all differ from step 1).
    """

    def __init__(self, solos, family):
        first = solos[0]
        self.family, self.x, self.y = family, first.x, first.y
        n = len(solos)
        weights, biases = zip(*(s.params for s in solos))  # Sequential's order: weight, bias
        self.weight = stacked(weights, (n, 1, 3)).requires_grad_()
        self.bias = stacked(biases, (n, 1)).requires_grad_()
        self.params = [self.weight, self.bias]
        self.xx = self.x.unsqueeze(-1).pow(torch.tensor([1, 2, 3], device=self.x.device))

    def _predict(self):
        # what nn.Linear computes for a 2-d input, member by member
        return torch.stack([torch.addmm(b, self.xx, w.t()).flatten()
                            for w, b in zip(self.weight, self.bias)])

    def loss_and_gradients(self, depth):
        loss = mse_sum_rows(self._predict(), self.y)
        loss.sum().backward()
        return loss.detach()

    def coefficient_rows(self) -> list:
        return torch.cat([self.bias.detach(), self.weight.detach()[:, 0, :]], dim=1).tolist()

    def predict(self, depth) -> np.ndarray:
        with torch.no_grad():
            return self._predict().cpu().numpy()


# Keyed by the Style class itself (src/implementations.py): a style from anywhere else has no
# batched counterpart here, and its groups run member by member (src/vectorized/loop.py).
BUILDERS = {
    implementations.Numpy: HandWrittenGradients,
    implementations.Tensor: HandWrittenGradients,
    implementations.Sequential: Sequential,
    implementations.RawAutograd: lambda solos, family: Autograd(solos, family, squared_error_rows),
    implementations.CustomModule: lambda solos, family: Autograd(solos, family, mse_sum_rows),
}
AUTOGRAD = (implementations.RawAutograd, implementations.CustomModule, implementations.Sequential)


def batchable(style) -> bool:
    return type(style) in BUILDERS


def build(style, family, solos):
    """solos: the members' solo strategies at their start, in member order."""
    return BUILDERS[type(style)](solos, family)

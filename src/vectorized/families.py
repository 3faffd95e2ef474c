"""The model families over a batch of members: coefficients [S, 1], data x [N], results [S, N].

The same expressions as src/families.py, operation by operation, so that every member's row is
computed exactly as its solo run computes it; sums run over the last axis only (one per member).
The dynamic model's draw of 0, 1 or 2 extra terms is made per member (`depth`) and applied by
masks: `where` selects a member's own value, it never adds a zero to it.
Written for numpy arrays (the numpy style) and torch tensors alike.
"""

from __future__ import annotations

import numpy as np
import torch

from src import families
from src.families import dp3, p3
from src.models import LegendrePolynomial3


def _where(mask, a, b):
    return torch.where(mask, a, b) if isinstance(a, torch.Tensor) else np.where(mask, a, b)


def row_sum(t):
    """One sum per member, [S, 1]: the same reduction as the solo run's full sum of one row."""
    return t.sum(-1, keepdim=True) if isinstance(t, torch.Tensor) else t.sum(axis=-1, keepdims=True)


def cubic(p, x, depth=None):
    a, b, c, d = p
    y = a + b * x + c * x ** 2 + d * x ** 3

    def backprop(g):
        return [row_sum(g), row_sum(g * x), row_sum(g * x ** 2), row_sum(g * x ** 3)]

    return y, backprop


def legendre(p, x, depth=None):
    a, b, c, d = p
    P3 = LegendrePolynomial3.apply if isinstance(x, torch.Tensor) else p3
    z = c + d * x
    pz = P3(z)
    y = a + b * pz

    def backprop(g):
        gz = g * b * dp3(z)
        return [row_sum(g), row_sum(g * pz), row_sum(gz), row_sum(gz * x)]

    return y, backprop


def dynamic(p, x, depth):
    """depth: per member the solo run's `random.randint(4, 6)` of this step, as an [S, 1] array
    or tensor; exponent 4 is used where depth >= 5, exponent 5 where depth == 6."""
    a, b, c, d, e = p
    y = a + b * x + c * x ** 2 + d * x ** 3
    uses = [(exp, depth > exp) for exp in (4, 5)]
    for exp, used in uses:
        y = _where(used, y + e * x ** exp, y)

    def backprop(g):
        grad_e = row_sum(g * 0)
        for exp, used in uses:
            grad_e = _where(used, grad_e + row_sum(g * x ** exp), grad_e)
        return [row_sum(g), row_sum(g * x), row_sum(g * x ** 2), row_sum(g * x ** 3), grad_e]

    return y, backprop


# Keyed by the Family class itself (src/families.py): a family from anywhere else (a user's, the
# quintic of tests/extending) has no batched forward here, and its groups run member by member
# (src/vectorized/loop.py says so in the log). Family.forward sums over everything, so a batched
# forward cannot be derived from it generically.
FORWARDS = {families.Cubic: cubic, families.Legendre: legendre, families.Dynamic: dynamic}
DRAWS_DEPTH = {families.Dynamic}  # families whose forward pass draws from `random` on every call
SKIPPABLE = {families.Dynamic: "e"}  # coefficient left without a grad on steps that do not use it


def forward_of(family):
    """The batched forward of a family, or None."""
    return FORWARDS.get(type(family))

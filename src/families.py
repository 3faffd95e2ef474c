"""Model families: the one place that says what a family is, and the tutorial's data.

A family is a class: its name, its coefficient names, its forward pass (written once for numpy
arrays and torch tensors alike, with hand-written gradients), the formula it prints, and the
linear least-squares design src/optimum.py solves for the best loss it can reach. Subclassing
`Family` registers it; conf/model/<name>.yaml names the class with `_target_`, so a family may
live in any importable module (a user's, a test's) without editing src/.

Config validation, the optimum, the plots, the comparison report and the tests read this module.
No torch import here: the optimum and the report load fast. (Legendre's forward pass on torch
tensors uses the custom autograd Function in src/models.py, imported only then.)
"""

from __future__ import annotations

import importlib
import math
import random

import numpy as np

N_POINTS = 2000
X_RANGE = (-math.pi, math.pi)


def data() -> tuple[np.ndarray, np.ndarray]:
    """The tutorial's points, float64: x = linspace(-pi, pi, 2000), y = sin(x)."""
    x = np.linspace(*X_RANGE, N_POINTS)
    return x, np.sin(x)


_REGISTRY: dict[str, type] = {}


class Family:
    """Base class; a subclass with a `name` is registered under it."""

    name: str = ""
    coefficient_names: tuple = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            _REGISTRY[cls.name] = cls

    def forward(self, p, x):
        """(prediction, backprop): backprop(dLoss/dprediction) gives the coefficients' gradients."""
        raise NotImplementedError

    def formula(self, v: dict) -> str:
        raise NotImplementedError

    def designs(self, x: np.ndarray) -> list:
        """Equally likely design matrices A (one per random draw of the forward pass): the family
        predicts A @ w for linear coefficients w. The optimum minimises the mean squared error
        sum over them."""
        raise NotImplementedError

    def from_linear(self, w: np.ndarray) -> dict:
        """The family's coefficients for linear coefficients w (identity unless reparametrised)."""
        return dict(zip(self.coefficient_names, map(float, w)))

    def mean_prediction(self, coefficients: dict, x: np.ndarray) -> np.ndarray:
        """The fitted function, averaged over the forward pass's random draws (for plots)."""
        w = np.array([coefficients[n] for n in self.coefficient_names], dtype=float)
        return np.mean([A @ w for A in self.designs(x)], axis=0)


def powers(x, degree: int) -> list:
    return [np.ones_like(x)] + [x ** k for k in range(1, degree + 1)]


class Cubic(Family):
    name = "cubic"
    coefficient_names = ("a", "b", "c", "d")

    def forward(self, p, x):
        a, b, c, d = p
        y = a + b * x + c * x ** 2 + d * x ** 3  # the tutorial's expression, operation by operation

        def backprop(g):
            return [g.sum(), (g * x).sum(), (g * x ** 2).sum(), (g * x ** 3).sum()]

        return y, backprop

    def formula(self, v: dict) -> str:
        return f"y = {v['a']} + {v['b']} x + {v['c']} x^2 + {v['d']} x^3"

    def designs(self, x):
        return [np.column_stack(powers(x, 3))]


def p3(z):
    """Legendre polynomial of degree 3."""
    return 0.5 * (5 * z ** 3 - 3 * z)


def dp3(z):
    return 1.5 * (5 * z ** 2 - 1)


class Legendre(Family):
    """y = a + b P3(c + d x). Every such function is a cubic, and the least-squares cubic for
    sin(x) lies inside the family (see `from_linear`), so its optimum is the cubic's."""

    name = "legendre"
    coefficient_names = ("a", "b", "c", "d")

    def forward(self, p, x):
        a, b, c, d = p
        if isinstance(x, np.ndarray):
            P3 = p3
        else:  # torch: the custom autograd Function of tutorial section 5
            P3 = importlib.import_module("src.models").LegendrePolynomial3.apply
        z = c + d * x
        pz = P3(z)
        y = a + b * pz

        def backprop(g):
            gz = g * b * dp3(z)
            return [g.sum(), (g * pz).sum(), gz.sum(), (gz * x).sum()]

        return y, backprop

    def formula(self, v: dict) -> str:
        return f"y = {v['a']} + {v['b']} * P3({v['c']} + {v['d']} x)"

    def designs(self, x):
        return Cubic().designs(x)

    def from_linear(self, w) -> dict:
        """a, b, c, d with a + b P3(c + d x) equal to the cubic k0 + k1 x + k2 x^2 + k3 x^3, plus
        that cubic as cubic_a..cubic_d. Writing it as k3 u^3 + p u + q with u = x + k2 / (3 k3),
        the family reaches exactly the cubics with k3 * p < 0: d = sqrt(-3 k3 / (5 p)),
        b = -2 p / (3 d), c = d k2 / (3 k3), a = q (d > 0; -b, -c, -d is the same curve)."""
        k0, k1, k2, k3 = map(float, w)
        cubic = {f"cubic_{n}": v for n, v in zip("abcd", (k0, k1, k2, k3))}
        s = k2 / (3 * k3)
        p = k1 - k2 * k2 / (3 * k3)
        q = k0 - k1 * s + k2 * s * s - k3 * s ** 3
        if not k3 * p < 0:  # pragma: no cover - not the case for sin(x)
            raise ValueError("this cubic is not of the form a + b P3(c + d x)")
        d = math.sqrt(-3 * k3 / (5 * p))
        return {"a": q, "b": -2 * p / (3 * d), "c": s * d, "d": d, **cubic}

    def mean_prediction(self, coefficients, x):
        v = coefficients
        return v["a"] + v["b"] * p3(v["c"] + v["d"] * x)


class Dynamic(Family):
    """Cubic plus e x^4 and e x^5, each used or not at random on every forward pass."""

    name = "dynamic"
    coefficient_names = ("a", "b", "c", "d", "e")
    depths = (4, 5, 6)  # random.randint(4, 6) is inclusive: range(4, D) adds 0, 1 or 2 terms

    def forward(self, p, x):
        a, b, c, d, e = p
        y = a + b * x + c * x ** 2 + d * x ** 3
        exponents = range(4, random.randint(4, 6))  # the tutorial's draw
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

    def designs(self, x):
        """Per depth draw: 1, x, x^2, x^3 and e's column sum(x^k for k in range(4, depth))."""
        out = []
        for depth in self.depths:
            e_column = np.zeros_like(x)
            for k in range(4, depth):
                e_column = e_column + x ** k
            out.append(np.column_stack(powers(x, 3) + [e_column]))
        return out


def names() -> list[str]:
    return sorted(_REGISTRY)


def get(name: str, target: str | None = None) -> Family:
    """The family called `name`; `target` (its class path, e.g. a run's model._target_ param)
    imports a family defined outside src/ first."""
    if name not in _REGISTRY and target:
        module, _, _ = target.rpartition(".")
        importlib.import_module(module)
    if name not in _REGISTRY:
        raise ValueError(f"unknown model family {name!r}; known: {', '.join(names())}")
    return _REGISTRY[name]()


def of(model_cfg) -> Family:
    """The family a `model` config node names with `_target_` (imports its module)."""
    module, _, cls_name = str(model_cfg._target_).rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    if not (isinstance(cls, type) and issubclass(cls, Family) and cls.name):
        raise TypeError(f"{model_cfg._target_} is not a named src.families.Family subclass")
    return cls()

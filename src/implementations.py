"""Implementation styles as small strategy objects: how one step computes loss and gradients.

Every strategy exposes the tensors the optimizer updates (`parameters`), one
`loss_and_gradients()` per step (the loss as a Python float, gradients left in `.grad`), and the
current coefficients. The update itself is always a torch.optim optimizer, so every style can be
combined with every optimizer; the numpy style lends its float64 arrays to the optimizer as
zero-copy tensors.

Parameter creation draws from the same generators in the same order as the tutorial's scripts:
numpy.random for numpy, torch.randn on the device for raw tensors, nn.Linear's own init for nn.

Each style is a `Style` subclass named by conf/implementation/<name>.yaml with `_target_`; the
styles, like the model families, are found from the config group, not from a list here.
"""

from __future__ import annotations

import contextlib
import random

import numpy as np
import torch

from src.families import N_POINTS, X_RANGE, data
from src.models import PolynomialModule


def torch_data(device):
    x = torch.linspace(*X_RANGE, N_POINTS, device=device, dtype=torch.float)
    return x, torch.sin(x)


@contextlib.contextmanager
def preserved_random_state():
    """The fit plot's forward pass must not consume the dynamic model's depth draws."""
    state = random.getstate()
    try:
        yield
    finally:
        random.setstate(state)


def scalar_parameters(family, init, device, requires_grad=False):
    """One 0-d float32 tensor per coefficient: torch.randn draws as in the tutorial, or `init`."""
    kw = dict(device=device, dtype=torch.float, requires_grad=requires_grad)
    if init is None:
        return [torch.randn((), **kw) for _ in family.coefficient_names]
    return [torch.full((), float(v), **kw) for v in init]


class HandWrittenGradients:
    """numpy or tensor style: forward and backward written out, no autograd."""

    def __init__(self, family, init, device):
        self.family = family
        self.numpy = device is None
        if self.numpy:
            self.x, self.y = data()
            names = family.coefficient_names
            values = [np.random.randn() for _ in names] if init is None else list(init)
            self.array = np.array(values, dtype=np.float64)
            self.params = [torch.from_numpy(self.array)]  # the optimizer updates the array in place
        else:
            self.x, self.y = torch_data(device)
            self.params = scalar_parameters(family, init, device)

    def coefficient_values(self):
        return tuple(self.array) if self.numpy else self.params

    def loss_and_gradients(self) -> float:
        y_pred, backprop = self.family.forward(self.coefficient_values(), self.x)
        diff = y_pred - self.y
        if self.numpy:
            loss = np.square(diff).sum()
            self.params[0].grad = torch.from_numpy(np.array(backprop(2.0 * diff)))
        else:
            loss = diff.pow(2).sum().item()
            for p, g in zip(self.params, backprop(2.0 * diff)):
                p.grad = g
        return float(loss)

    def coefficients(self) -> dict:
        values = self.array.tolist() if self.numpy else [p.item() for p in self.params]
        return dict(zip(self.family.coefficient_names, values))

    def predict(self) -> np.ndarray:
        with preserved_random_state():
            y, _ = self.family.forward(self.coefficient_values(), self.x)
        return y if self.numpy else y.cpu().numpy()


class Autograd:
    """autograd, nn and module styles: a prediction closure, a loss, loss.backward()."""

    def __init__(self, family, params, predict, loss_fn, x, y, coefficients):
        self.family, self.params = family, list(params)
        self._predict, self._loss_fn, self.x, self.y = predict, loss_fn, x, y
        self._coefficients = coefficients

    def loss_and_gradients(self) -> float:
        loss = self._loss_fn(self._predict(), self.y)
        loss.backward()
        return loss.item()

    def coefficients(self) -> dict:
        return dict(zip(self.family.coefficient_names, self._coefficients()))

    def predict(self) -> np.ndarray:
        with torch.no_grad(), preserved_random_state():
            return self._predict().cpu().numpy()


def squared_error_sum(y_pred, y):
    return (y_pred - y).pow(2).sum()


def raw_autograd(family, init, device):
    x, y = torch_data(device)
    params = scalar_parameters(family, init, device, requires_grad=True)
    return Autograd(family, params, lambda: family.forward(params, x)[0], squared_error_sum, x, y,
                    lambda: [p.item() for p in params])


def sequential(family, init, device):
    x, y = torch_data(device)
    xx = x.unsqueeze(-1).pow(torch.tensor([1, 2, 3], device=device))
    model = torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.Flatten(0, 1))
    linear = model[0]
    if init is not None:
        with torch.no_grad():
            linear.bias.fill_(float(init[0]))
            linear.weight.copy_(torch.tensor([list(map(float, init[1:]))]))
    model.to(device)
    return Autograd(family, model.parameters(), lambda: model(xx),
                    torch.nn.MSELoss(reduction="sum"), x, y,
                    lambda: [linear.bias.item(), *linear.weight[0].tolist()])


def custom_module(family, init, device):
    x, y = torch_data(device)
    model = PolynomialModule(family, init).to(device)
    return Autograd(family, model.parameters(), lambda: model(x),
                    torch.nn.MSELoss(reduction="sum"), x, y,
                    lambda: [p.item() for p in model.parameters()])


class Style:
    """An implementation style: which families it can express and how it builds a strategy."""

    name = ""
    families: tuple | None = None  # None: every family
    cpu_only = False

    def supports(self, family) -> bool:
        return self.families is None or family.name in self.families

    def build(self, family, init, device):
        raise NotImplementedError


class Numpy(Style):
    name, cpu_only = "numpy", True

    def build(self, family, init, device):
        return HandWrittenGradients(family, init, None)


class Tensor(Style):
    name = "tensor"

    def build(self, family, init, device):
        return HandWrittenGradients(family, init, device)


class RawAutograd(Style):
    name = "autograd"

    def build(self, family, init, device):
        return raw_autograd(family, init, device)


class Sequential(Style):
    name = "nn"
    families = ("cubic",)  # Linear(3, 1) on (x, x^2, x^3) is exactly the cubic

    def build(self, family, init, device):
        return sequential(family, init, device)


class CustomModule(Style):
    name = "module"

    def build(self, family, init, device):
        return custom_module(family, init, device)


def of(implementation_cfg) -> Style:
    """The style a config node names with `_target_`."""
    from hydra.utils import get_class

    return get_class(str(implementation_cfg._target_))()

"""The eight programs of the PyTorch tutorial "Learning PyTorch with Examples", as plain functions.

Each one is the tutorial's script operation by operation (same data, same initial draws in the
same order, same forward expression, same loss, same update), with three changes only: it begins
by seeding `random`, `numpy.random` and torch; the number of steps is a parameter; and it records
the loss of every step (taken before that step's update, the number the tutorial prints at
t % 100 == 99) instead of printing every hundredth.

They are written independently of src/ on purpose: the tests hold the harness against them, and
the benchmark runs them as the bare loops without any tracking. So keep them lean: nothing per
step beyond the tutorial's own work and appending the loss to a list.

Each returns {"losses": [loss at t = 0 .. steps-1], "coefficients": {"a": ..., "b": ..., ...}}.
"""

from __future__ import annotations

import math
import random

import numpy as np
import torch


def _seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def numpy(seed: int, steps: int) -> dict:
    """Warm-up: numpy, float64, hand-written forward and backward."""
    _seed(seed)
    # Create random input and output data
    x = np.linspace(-math.pi, math.pi, 2000)
    y = np.sin(x)

    # Randomly initialize weights
    a = np.random.randn()
    b = np.random.randn()
    c = np.random.randn()
    d = np.random.randn()

    losses = []
    learning_rate = 1e-6
    for t in range(steps):
        # Forward pass: compute predicted y
        # y = a + b x + c x^2 + d x^3
        y_pred = a + b * x + c * x ** 2 + d * x ** 3

        # Compute loss
        loss = np.square(y_pred - y).sum()
        losses.append(float(loss))

        # Backprop to compute gradients of a, b, c, d with respect to loss
        grad_y_pred = 2.0 * (y_pred - y)
        grad_a = grad_y_pred.sum()
        grad_b = (grad_y_pred * x).sum()
        grad_c = (grad_y_pred * x ** 2).sum()
        grad_d = (grad_y_pred * x ** 3).sum()

        # Update weights
        a -= learning_rate * grad_a
        b -= learning_rate * grad_b
        c -= learning_rate * grad_c
        d -= learning_rate * grad_d

    return {"losses": losses,
            "coefficients": {"a": float(a), "b": float(b), "c": float(c), "d": float(d)}}


def tensor(seed: int, steps: int, device="cpu") -> dict:
    """PyTorch: Tensors, hand-written forward and backward."""
    _seed(seed)
    dtype = torch.float
    device = torch.device(device)

    # Create random input and output data
    x = torch.linspace(-math.pi, math.pi, 2000, device=device, dtype=dtype)
    y = torch.sin(x)

    # Randomly initialize weights
    a = torch.randn((), device=device, dtype=dtype)
    b = torch.randn((), device=device, dtype=dtype)
    c = torch.randn((), device=device, dtype=dtype)
    d = torch.randn((), device=device, dtype=dtype)

    losses = []
    learning_rate = 1e-6
    for t in range(steps):
        # Forward pass: compute predicted y
        y_pred = a + b * x + c * x ** 2 + d * x ** 3

        # Compute loss
        loss = (y_pred - y).pow(2).sum().item()
        losses.append(loss)

        # Backprop to compute gradients of a, b, c, d with respect to loss
        grad_y_pred = 2.0 * (y_pred - y)
        grad_a = grad_y_pred.sum()
        grad_b = (grad_y_pred * x).sum()
        grad_c = (grad_y_pred * x ** 2).sum()
        grad_d = (grad_y_pred * x ** 3).sum()

        # Update weights using gradient descent
        a -= learning_rate * grad_a
        b -= learning_rate * grad_b
        c -= learning_rate * grad_c
        d -= learning_rate * grad_d

    return {"losses": losses,
            "coefficients": {"a": a.item(), "b": b.item(), "c": c.item(), "d": d.item()}}


def autograd(seed: int, steps: int, device="cpu") -> dict:
    """PyTorch: Tensors and autograd, manual gradient-descent update."""
    _seed(seed)
    dtype = torch.float
    device = torch.device(device)

    x = torch.linspace(-math.pi, math.pi, 2000, device=device, dtype=dtype)
    y = torch.sin(x)

    a = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    b = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    c = torch.randn((), device=device, dtype=dtype, requires_grad=True)
    d = torch.randn((), device=device, dtype=dtype, requires_grad=True)

    losses = []
    learning_rate = 1e-6
    for t in range(steps):
        # Forward pass: compute predicted y using operations on Tensors.
        y_pred = a + b * x + c * x ** 2 + d * x ** 3

        # Compute loss using operations on Tensors.
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())

        # Use autograd to compute the backward pass.
        loss.backward()

        # Manually update weights using gradient descent. Wrap in torch.no_grad()
        # because weights have requires_grad=True, but we don't need to track this
        # in autograd.
        with torch.no_grad():
            a -= learning_rate * a.grad
            b -= learning_rate * b.grad
            c -= learning_rate * c.grad
            d -= learning_rate * d.grad

            # Manually zero the gradients after updating weights
            a.grad = None
            b.grad = None
            c.grad = None
            d.grad = None

    return {"losses": losses,
            "coefficients": {"a": a.item(), "b": b.item(), "c": c.item(), "d": d.item()}}


class LegendrePolynomial3(torch.autograd.Function):
    """P3(x) = 1/2 (5x^3 - 3x) with a hand-written backward, as in the tutorial."""

    @staticmethod
    def forward(ctx, input):
        ctx.save_for_backward(input)
        return 0.5 * (5 * input ** 3 - 3 * input)

    @staticmethod
    def backward(ctx, grad_output):
        input, = ctx.saved_tensors
        return grad_output * 1.5 * (5 * input ** 2 - 1)


def custom_function(seed: int, steps: int, device="cpu") -> dict:
    """PyTorch: Defining new autograd functions, y = a + b P3(c + d x) from a fixed start."""
    _seed(seed)
    dtype = torch.float
    device = torch.device(device)

    x = torch.linspace(-math.pi, math.pi, 2000, device=device, dtype=dtype)
    y = torch.sin(x)

    # These weights need to be initialized not too far from the correct result to
    # ensure convergence.
    a = torch.full((), 0.0, device=device, dtype=dtype, requires_grad=True)
    b = torch.full((), -1.0, device=device, dtype=dtype, requires_grad=True)
    c = torch.full((), 0.0, device=device, dtype=dtype, requires_grad=True)
    d = torch.full((), 0.3, device=device, dtype=dtype, requires_grad=True)

    losses = []
    learning_rate = 5e-6
    for t in range(steps):
        # To apply our Function, we use Function.apply method. We alias this as 'P3'.
        P3 = LegendrePolynomial3.apply

        # Forward pass: compute predicted y using operations; P3 is our custom autograd op.
        y_pred = a + b * P3(c + d * x)

        # Compute loss
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())

        # Use autograd to compute the backward pass.
        loss.backward()

        # Update weights using gradient descent
        with torch.no_grad():
            a -= learning_rate * a.grad
            b -= learning_rate * b.grad
            c -= learning_rate * c.grad
            d -= learning_rate * d.grad

            # Manually zero the gradients after updating weights
            a.grad = None
            b.grad = None
            c.grad = None
            d.grad = None

    return {"losses": losses,
            "coefficients": {"a": a.item(), "b": b.item(), "c": c.item(), "d": d.item()}}


def _linear_coefficients(linear_layer) -> dict:
    return {"a": linear_layer.bias.item(),
            "b": linear_layer.weight[:, 0].item(),
            "c": linear_layer.weight[:, 1].item(),
            "d": linear_layer.weight[:, 2].item()}


def nn(seed: int, steps: int, device="cpu") -> dict:
    """PyTorch: nn, Sequential(Linear(3, 1), Flatten(0, 1)) with a manual update."""
    _seed(seed)
    device = torch.device(device)

    x = torch.linspace(-math.pi, math.pi, 2000, device=device)
    y = torch.sin(x)

    # Prepare the input tensor (x, x^2, x^3).
    p = torch.tensor([1, 2, 3], device=device)
    xx = x.unsqueeze(-1).pow(p)

    model = torch.nn.Sequential(
        torch.nn.Linear(3, 1),
        torch.nn.Flatten(0, 1)
    ).to(device)

    loss_fn = torch.nn.MSELoss(reduction='sum')

    losses = []
    learning_rate = 1e-6
    for t in range(steps):
        # Forward pass: compute predicted y by passing x to the model.
        y_pred = model(xx)

        # Compute loss.
        loss = loss_fn(y_pred, y)
        losses.append(loss.item())

        # Zero the gradients before running the backward pass.
        model.zero_grad()

        # Backward pass: gradient of the loss with respect to all learnable parameters.
        loss.backward()

        # Update the weights using gradient descent.
        with torch.no_grad():
            for param in model.parameters():
                param -= learning_rate * param.grad

    return {"losses": losses, "coefficients": _linear_coefficients(model[0])}


def optim(seed: int, steps: int, device="cpu") -> dict:
    """PyTorch: optim, the same Sequential model trained by RMSprop."""
    _seed(seed)
    device = torch.device(device)

    x = torch.linspace(-math.pi, math.pi, 2000, device=device)
    y = torch.sin(x)

    p = torch.tensor([1, 2, 3], device=device)
    xx = x.unsqueeze(-1).pow(p)

    model = torch.nn.Sequential(
        torch.nn.Linear(3, 1),
        torch.nn.Flatten(0, 1)
    ).to(device)
    loss_fn = torch.nn.MSELoss(reduction='sum')

    learning_rate = 1e-3
    optimizer = torch.optim.RMSprop(model.parameters(), lr=learning_rate)
    losses = []
    for t in range(steps):
        # Forward pass: compute predicted y by passing x to the model.
        y_pred = model(xx)

        # Compute loss.
        loss = loss_fn(y_pred, y)
        losses.append(loss.item())

        # Before the backward pass, zero all of the gradients the optimizer will update.
        optimizer.zero_grad()

        # Backward pass: compute gradient of the loss with respect to model parameters
        loss.backward()

        # Calling the step function on an Optimizer makes an update to its parameters
        optimizer.step()

    return {"losses": losses, "coefficients": _linear_coefficients(model[0])}


class Polynomial3(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(()))
        self.b = torch.nn.Parameter(torch.randn(()))
        self.c = torch.nn.Parameter(torch.randn(()))
        self.d = torch.nn.Parameter(torch.randn(()))

    def forward(self, x):
        return self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3


def module(seed: int, steps: int, device="cpu") -> dict:
    """PyTorch: Custom nn Modules, Polynomial3 trained by SGD."""
    _seed(seed)
    device = torch.device(device)

    x = torch.linspace(-math.pi, math.pi, 2000, device=device)
    y = torch.sin(x)

    # Construct our model by instantiating the class defined above
    model = Polynomial3().to(device)

    criterion = torch.nn.MSELoss(reduction='sum')
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    losses = []
    for t in range(steps):
        # Forward pass: Compute predicted y by passing x to the model
        y_pred = model(x)

        # Compute loss
        loss = criterion(y_pred, y)
        losses.append(loss.item())

        # Zero gradients, perform a backward pass, and update the weights.
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return {"losses": losses,
            "coefficients": {n: getattr(model, n).item() for n in ("a", "b", "c", "d")}}


class DynamicNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(()))
        self.b = torch.nn.Parameter(torch.randn(()))
        self.c = torch.nn.Parameter(torch.randn(()))
        self.d = torch.nn.Parameter(torch.randn(()))
        self.e = torch.nn.Parameter(torch.randn(()))

    def forward(self, x):
        # For the forward pass we randomly choose either 4 or 5 (or neither) and reuse the
        # e parameter to compute the contribution of these orders.
        y = self.a + self.b * x + self.c * x ** 2 + self.d * x ** 3
        for exp in range(4, random.randint(4, 6)):
            y = y + self.e * x ** exp
        return y


def dynamic(seed: int, steps: int, device="cpu") -> dict:
    """PyTorch: Control Flow + Weight Sharing, DynamicNet trained by momentum SGD."""
    _seed(seed)
    device = torch.device(device)

    x = torch.linspace(-math.pi, math.pi, 2000, device=device)
    y = torch.sin(x)

    # Construct our model by instantiating the class defined above
    model = DynamicNet().to(device)

    # Training this strange model with vanilla stochastic gradient descent is tough, so we
    # use momentum
    criterion = torch.nn.MSELoss(reduction='sum')
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-8, momentum=0.9)
    losses = []
    for t in range(steps):
        # Forward pass: Compute predicted y by passing x to the model
        y_pred = model(x)

        # Compute loss
        loss = criterion(y_pred, y)
        losses.append(loss.item())

        # Zero gradients, perform a backward pass, and update the weights.
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return {"losses": losses,
            "coefficients": {n: getattr(model, n).item() for n in ("a", "b", "c", "d", "e")}}


SCRIPTS = {
    "numpy": numpy,
    "tensor": tensor,
    "autograd": autograd,
    "custom_function": custom_function,
    "nn": nn,
    "optim": optim,
    "module": module,
    "dynamic": dynamic,
}

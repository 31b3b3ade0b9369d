"""Optimisers with exactly ``torch.optim``'s semantics: ``SGD`` and ``Adam``.

Both work on any object with two dicts of arrays, ``params`` (the live parameters) and
``grads`` (same keys and shapes, filled by ``backward``)::

    opt = minattn.optim.Adam(module, lr=1e-3)
    module.forward(x); module.backward(dloss_dy)
    opt.step()          # module.params updated in place from module.grads

``step`` writes into the parameter arrays (``p -= ...``), never replaces them, so whoever
holds a reference to ``module.params[k]`` (a model made of several modules, a plot) sees
the update; and it computes in each parameter's own dtype, as PyTorch does. A gradient
of ``None`` means the parameter took no part in the loss: it is skipped, weight decay and
all, as PyTorch skips a parameter whose ``.grad`` is None. The formulas
are those of PyTorch's single-tensor code path (the one it takes for CPU tensors), written
out per parameter p with gradient g at step t = 1, 2, ...:

    SGD:   g <- g + weight_decay * p
           b <- g (t = 1),  b <- momentum * b + (1 - dampening) * g (t > 1)   [momentum != 0]
           g <- g + momentum * b (nesterov) or g <- b
           p <- p - lr * g

    Adam:  g <- g + weight_decay * p                 (L2 penalty added to the gradient)
           m <- m + (1 - beta1) (g - m)              (torch's lerp: beta1 m + (1 - beta1) g)
           v <- beta2 v + (1 - beta2) g^2
           p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

Note where Adam's ``eps`` sits: after the square root of the bias-corrected second moment,
not inside it.
"""

import numbers

import numpy as np


def _validate_number(value, name, lo=0.0, hi=None, hi_open=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < lo or (hi is not None and (value >= hi if hi_open else value > hi)):
        bracket = ")" if hi_open else "]"
        span = f"[{lo}, {hi}{bracket}" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be in {span}, got {value!r}")
    return float(value)


class Optimizer:
    """Base class: holds the module and per-parameter state keyed by parameter name."""

    def __init__(self, module, lr):
        for attr in ("params", "grads"):
            if not isinstance(getattr(module, attr, None), dict):
                raise TypeError(
                    f"module must have a dict attribute {attr!r} (parameter name -> array), "
                    f"got {type(module).__name__} without one"
                )
        if not module.params:
            raise ValueError(f"module {type(module).__name__} has no parameters to optimise")
        self.module = module
        self.lr = _validate_number(lr, "lr")
        self.state = {name: {} for name in module.params}
        self.steps = 0

    def _pairs(self):
        """(name, live parameter, gradient) for every parameter, checked."""
        params, grads = self.module.params, self.module.grads
        if set(params) != set(self.state):
            raise ValueError(
                f"the module's parameters changed since the optimiser was built: expected keys "
                f"{sorted(self.state)}, got {sorted(params)}"
            )
        missing = sorted(set(params) - set(grads))
        if missing:
            raise ValueError(
                f"module.grads has no entry for {missing}: call backward() before step()"
            )
        for name, p in params.items():
            g = grads[name]
            if g is None:
                continue
            if not isinstance(g, np.ndarray) or g.shape != p.shape:
                raise ValueError(
                    f"grads[{name!r}] must be an array of shape {p.shape} (the parameter's), "
                    f"got {getattr(g, 'shape', type(g).__name__)}"
                )
            if g.dtype != p.dtype:
                raise TypeError(
                    f"grads[{name!r}] has dtype {g.dtype}, expected the parameter's {p.dtype}"
                )
            yield name, p, g

    def step(self):
        """One update of every parameter, in place."""
        self.steps += 1
        for name, p, g in list(self._pairs()):
            self._update(p, g, self.state[name])

    def _update(self, p, g, state):
        raise NotImplementedError


class SGD(Optimizer):
    """``torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov)``."""

    def __init__(self, module, lr=1e-3, momentum=0.0, dampening=0.0, weight_decay=0.0,
                 nesterov=False):  # fmt: skip
        super().__init__(module, lr)
        self.momentum = _validate_number(momentum, "momentum")
        self.dampening = _validate_number(dampening, "dampening")
        self.weight_decay = _validate_number(weight_decay, "weight_decay")
        if not isinstance(nesterov, bool):
            raise TypeError(f"nesterov must be True or False, got {nesterov!r}")
        if nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError(
                f"nesterov=True needs momentum > 0 and dampening = 0 (as torch), got "
                f"momentum={momentum}, dampening={dampening}"
            )
        self.nesterov = nesterov

    def __repr__(self):
        return (
            f"SGD(lr={self.lr}, momentum={self.momentum}, dampening={self.dampening}, "
            f"weight_decay={self.weight_decay}, nesterov={self.nesterov})"
        )

    def _update(self, p, g, state):
        if self.weight_decay != 0:
            g = g + self.weight_decay * p  # a new array: module.grads is left as it was
        if self.momentum != 0:
            buf = state.get("momentum_buffer")
            if buf is None:
                # torch starts the buffer at the first gradient itself, not at zero
                buf = state["momentum_buffer"] = g.copy()
            else:
                buf *= self.momentum
                buf += (1 - self.dampening) * g
            g = g + self.momentum * buf if self.nesterov else buf
        p -= self.lr * g


class Adam(Optimizer):
    """``torch.optim.Adam(params, lr, betas, eps, weight_decay)`` (amsgrad=False)."""

    def __init__(self, module, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(module, lr)
        try:
            beta1, beta2 = betas
        except (TypeError, ValueError) as e:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}") from e
        self.betas = (
            _validate_number(beta1, "betas[0]", 0.0, 1.0, hi_open=True),
            _validate_number(beta2, "betas[1]", 0.0, 1.0, hi_open=True),
        )
        self.eps = _validate_number(eps, "eps")
        self.weight_decay = _validate_number(weight_decay, "weight_decay")

    def __repr__(self):
        return (
            f"Adam(lr={self.lr}, betas={self.betas}, eps={self.eps}, "
            f"weight_decay={self.weight_decay})"
        )

    def _update(self, p, g, state):
        beta1, beta2 = self.betas
        if not state:
            state["step"] = 0
            state["exp_avg"] = np.zeros_like(p)
            state["exp_avg_sq"] = np.zeros_like(p)
        state["step"] += 1
        t = state["step"]
        m, v = state["exp_avg"], state["exp_avg_sq"]
        if self.weight_decay != 0:
            g = g + self.weight_decay * p
        _lerp_(m, g, 1 - beta1)
        v *= beta2
        v += (1 - beta2) * (g * g)
        step_size = self.lr / (1 - beta1**t)
        denom = np.sqrt(v) / (1 - beta2**t) ** 0.5 + self.eps
        p += -step_size * (m / denom)


def _lerp_(start, end, weight):
    """start <- start + weight (end - start), in place, rounded as torch's lerp kernel.

    torch evaluates the formula from whichever end is nearer, so the result is exact at
    weight 0 and weight 1.
    """
    if abs(weight) < 0.5:
        start += weight * (end - start)
    else:
        start[...] = end - (end - start) * (1 - weight)

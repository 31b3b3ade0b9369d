"""``SqueezeExcitation``: SENet's channel gate, the best-known "channel attention".

    squeeze:  z = mean of each channel over all pixels         (B, C)
    excite:   s = sigmoid(W2 relu(W1 z))                       (B, C), each in (0, 1)
    gate:     y = x * s                                        every channel scaled by its s

Unlike attention, nothing is mixed: channel c of y is channel c of x times one number.
The gate decides *how much* of each channel passes, from a summary of the whole map;
attention decides *which other* pixels or channels each one is rebuilt from.
"""

from typing import NamedTuple

import numpy as np

from ..validate import validate_feature_map, validate_positive_int, validate_seed
from .base import Module


class SECache(NamedTuple):
    """What the forward keeps for the backward: each step's cache, in order."""

    squeeze: tuple
    fc0: tuple
    relu: np.ndarray
    fc2: tuple
    sigmoid: np.ndarray
    gate: tuple


class SqueezeExcitation(Module):
    """SENet's ``SELayer``: global mean, Linear-ReLU-Linear (no biases), sigmoid, gate.

    Args:
        channels: C, channels of the input.
        reduction: the bottleneck has ``channels // reduction`` units (SENet's default 16);
            it must leave at least one, so reduction <= channels.
        backend: "reference", "numpy" or "numba". The work is one mean and two tiny
            matrix products; there is no kernel for it, so "numba" runs the numpy steps.
        dtype: np.float32 or np.float64.
        seed: for PyTorch's nn.Linear initialisation, uniform in +-1/sqrt(fan_in).

    Shapes: x (B, C, H, W) -> y (B, C, H, W); gate (B, C), the s of the last forward.
    state_dict, as SENet's: ``fc.0.weight`` (C // reduction, C), ``fc.2.weight``
    (C, C // reduction) (torch's nn.Linear layout: (out, in)).
    """

    step_labels = {
        "global_avg_pool_forward#1": "squeeze: channel means",
        "linear_forward#1": "excite: fc.0",
        "relu_forward#1": "excite: relu",
        "linear_forward#2": "excite: fc.2",
        "sigmoid_forward#1": "excite: sigmoid (the gate)",
        "channel_gate_forward#1": "x * gate",
    }

    def __init__(self, channels, reduction=16, *, backend="numpy", dtype=np.float64, seed=None):
        super().__init__(backend=backend, dtype=dtype)
        self.channels = validate_positive_int(channels, "channels")
        self.reduction = validate_positive_int(reduction, "reduction")
        self.hidden = channels // reduction
        if self.hidden == 0:
            raise ValueError(
                f"reduction={reduction} is larger than channels={channels}: the bottleneck "
                f"would have channels // reduction = 0 units; use reduction <= {channels}"
            )
        rng = np.random.default_rng(validate_seed(seed))

        def linear_init(f_out, f_in):  # nn.Linear: kaiming_uniform(a=sqrt 5) = U(+-1/sqrt f_in)
            bound = 1.0 / np.sqrt(f_in)
            return rng.uniform(-bound, bound, (f_out, f_in)).astype(self.dtype)

        self._set_params(
            {
                "fc.0.weight": linear_init(self.hidden, channels),
                "fc.2.weight": linear_init(channels, self.hidden),
            }
        )
        self.gate = None

    def __repr__(self):
        return (
            f"SqueezeExcitation(channels={self.channels}, reduction={self.reduction}, "
            f"backend={self.backend!r}, dtype={self.dtype.name})"
        )

    def _validate_inputs(self, x):
        validate_feature_map(x, self.channels, 1, self.dtype)

    def _forward(self, x):
        ops, P = self.ops, self.params
        z, c_pool = ops.global_avg_pool_forward(x)  # squeeze: (B, C)
        h, c_fc0 = ops.linear_forward(z, P["fc.0.weight"])  # (B, C // r)
        h, c_relu = ops.relu_forward(h)
        g, c_fc2 = ops.linear_forward(h, P["fc.2.weight"])  # (B, C)
        s, c_sig = ops.sigmoid_forward(g)  # the gate, in (0, 1)
        y, c_gate = ops.channel_gate_forward(x, s)
        self.gate = s
        self._cache = SECache(c_pool, c_fc0, c_relu, c_fc2, c_sig, c_gate)
        return y

    def _backward(self, dy):
        ops, c = self.ops, self._cache
        dx, ds = ops.channel_gate_backward(dy, c.gate)
        dg = ops.sigmoid_backward(ds, c.sigmoid)
        dh, dW2, _ = ops.linear_backward(dg, c.fc2)
        dh = ops.relu_backward(dh, c.relu)
        dz, dW0, _ = ops.linear_backward(dh, c.fc0)
        # x reached y twice: through the gate's product and through its own channel means
        dx = dx + ops.global_avg_pool_backward(dz, c.squeeze)
        self.grads = {"fc.0.weight": dW0, "fc.2.weight": dW2}
        return dx

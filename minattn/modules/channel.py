"""``ChannelAttention``: DANet's channel attention module, channel against channel.

Where position attention asks "which pixels are like this pixel?" (an N x N matrix),
channel attention asks "which channels are like this channel?" (C x C), with no
projections at all: the channels of x are query, key and value at once.

    flatten -> channel energy E = X X^T -> rowmax - E -> softmax -> A X -> unflatten
            -> y = gamma * out + x
"""

from typing import NamedTuple

import numpy as np

from ..validate import validate_feature_map, validate_positive_int, validate_seed
from .base import Module


class ChannelCache(NamedTuple):
    """What the forward keeps for the backward: each step's cache, in order."""

    flatten: tuple
    energy: np.ndarray
    rowmax_minus: tuple
    softmax: np.ndarray
    weighted_sum: tuple
    unflatten: tuple
    residual: tuple


class ChannelAttention(Module):
    """DANet's ``CAM_Module``: each channel becomes a weighted sum of channels, ``gamma * . + x``.

    The row-max trick. DANet's code does not take the softmax of the energy E = X X^T
    (as its paper writes) but of ``rowmax(E) - E``. A softmax ignores a constant added
    to a whole row, and rowmax(E)[i] is one number per row, so

        softmax(rowmax - E) = softmax(-E):

    the trick is not the usual overflow guard (that would be E - rowmax, and the softmax
    does it anyway); it flips the sign. Channel i attends most to the channels *least*
    like it (smallest inner product), and least to itself when |x_i|^2 is its row's
    largest entry. The paper writes softmax(E) and does not mention the trick; asked
    about it, the authors point to DANet issue #9, whose answer, as later threads quote
    it, is that it prevents the loss from diverging in training. We keep it, as the
    ports of DANet do, so that we compute what DANet's trained networks compute.

    What the sign means in practice: after a ReLU every feature is >= 0, so every
    E[i, j] >= 0 and the smallest inner products tend to belong to the weakest channels,
    which then collect the attention. E also grows with the number of pixels N, so on a
    large map either softmax is close to one-hot. Notebook 7 shows both on photo features.

    Args:
        in_dim: C, channels of the input.
        backend: "reference", "numpy" or "numba". There is no fused kernel for a C x C
            attention (it is small; the cost is the two C x C x N products), so "numba"
            runs the numpy steps.
        dtype: np.float32 or np.float64.
        seed: accepted for a uniform signature; the only parameter, gamma, starts at 0.

    Shapes: x (B, C, H, W) -> y (B, C, H, W); attention (B, C, C).
    state_dict: ``gamma`` (1,), as DANet's.
    """

    step_labels = {
        "flatten_forward#1": "X = x as (B, C, N)",
        "channel_energy_forward#1": "energy X X^T (C x C)",
        "rowmax_minus_forward#1": "rowmax - energy",
        "softmax_forward#1": "attention (softmax)",
        "channel_weighted_sum_forward#1": "attention X",
        "unflatten_forward#1": "reshape back",
        "residual_forward#1": "gamma * out + x",
    }

    def __init__(self, in_dim, *, backend="numpy", dtype=np.float64, seed=None):
        super().__init__(backend=backend, dtype=dtype)
        self.in_dim = validate_positive_int(in_dim, "in_dim")
        validate_seed(seed)
        self._set_params({"gamma": np.zeros(1, dtype=self.dtype)})
        self.attention = None

    def __repr__(self):
        return (
            f"ChannelAttention(in_dim={self.in_dim}, backend={self.backend!r}, "
            f"dtype={self.dtype.name})"
        )

    def _validate_inputs(self, x):
        validate_feature_map(x, self.in_dim, 1, self.dtype)

    def _forward(self, x):
        ops = self.ops
        B, C, H, W = x.shape
        X, c_flat = ops.flatten_forward(x)  # (B, C, N)
        energy, c_e = ops.channel_energy_forward(X)  # (B, C, C), E = X X^T
        flipped, c_r = ops.rowmax_minus_forward(energy)  # rowmax - E
        attention, c_a = ops.softmax_forward(flipped)  # = softmax(-E), rows sum to 1
        out2, c_w = ops.channel_weighted_sum_forward(attention, X)  # (B, C, N)
        out, c_un = ops.unflatten_forward(out2, H, W)
        y, c_res = ops.residual_forward(x, out, self.params["gamma"])
        self.attention = attention
        self._cache = ChannelCache(c_flat, c_e, c_r, c_a, c_w, c_un, c_res)
        return y

    def _backward(self, dy):
        ops, c = self.ops, self._cache
        dx, dout, dgamma = ops.residual_backward(dy, c.residual)
        dout2 = ops.unflatten_backward(dout, c.unflatten)
        dattention, dX_value = ops.channel_weighted_sum_backward(dout2, c.weighted_sum)
        dflipped = ops.softmax_backward(dattention, c.softmax)
        denergy = ops.rowmax_minus_backward(dflipped, c.rowmax_minus)
        dX_energy = ops.channel_energy_backward(denergy, c.energy)
        # X was both the value and (twice) the energy's factor: its gradients add up
        dx = dx + ops.flatten_backward(dX_value + dX_energy, c.flatten)
        self.grads = {"gamma": dgamma}
        return dx

"""``PositionAttention``: DANet's position attention module, pixel against pixel.

The article's seven steps on the full-resolution map, as DANet writes them
(SAGAN's attention):

    step 1 (q, k, v) -> step 2 -> steps 3-5 (energy, softmax, weighted sum)
         -> step 6 -> step 7 (y = gamma * out + x)

Two differences from the article's BAM: no pooling (attention runs on all N = H W
pixels, so the N x N matrix grows with the fourth power of the side), and no step 4
(DANet does not scale the energy). gamma starts at 0, so the module starts as the
identity and learns how much attention to mix in.
"""

from typing import NamedTuple

import numpy as np

from ..backend import AttendCache, attend_backward, attend_forward
from ..validate import validate_feature_map
from .bam import ProjectCache, QKVAttention, project_backward, project_forward


class PositionCache(NamedTuple):
    """What the forward keeps for the backward: each step's cache, in order."""

    project: ProjectCache
    attend: AttendCache
    unflatten: tuple
    residual: tuple


class PositionAttention(QKVAttention):
    """DANet's ``PAM_Module``: self-attention over every pixel, ``gamma * attn + x``.

    Args:
        in_dim: C, channels of the input.
        key_channels: channels of query and key; None means ``in_dim // 8`` as in DANet.
        backend: "reference" (literal loops), "numpy", or "numba": steps 3-5 run as the
            streaming kernel (`minattn.backend.attend_forward`), which never forms the
            N x N matrix (``attention`` is then None), and the 1x1 convolutions BLAS-free.
        dtype: np.float32 or np.float64, for parameters and computation.
        seed: int, np.random.Generator or None, for PyTorch's default initialisation
            (Conv2d: uniform in +-1/sqrt(in_dim); gamma = 0).

    Shapes: x (B, C, H, W) -> y (B, C, H, W); attention (B, N, N) with N = H W.
    state_dict keys, as DANet's: ``query_conv.weight`` (Ck, C, 1, 1), ``query_conv.bias``
    (Ck,), the same for ``key_conv``, ``value_conv.weight`` (C, C, 1, 1),
    ``value_conv.bias`` (C,), ``gamma`` (1,).
    """

    step_labels = {
        "conv1x1_forward#1": "step 1: query",
        "conv1x1_forward#2": "step 1: key",
        "conv1x1_forward#3": "step 1: value",
        "flatten_forward#1": "step 2: query matrix",
        "flatten_forward#2": "step 2: key matrix",
        "flatten_forward#3": "step 2: value matrix",
        "energy_forward#1": "step 3: energy (not scaled)",
        "softmax_forward#1": "step 3: attention (softmax)",
        "weighted_sum_forward#1": "step 5: weighted sum",
        "fused_attention_forward#1": "steps 3-5: streaming attention",
        "unflatten_forward#1": "step 6: reshape back",
        "residual_forward#1": "step 7: gamma * out + x",
    }

    def __init__(self, in_dim, *, key_channels=None, backend="numpy", dtype=np.float64, seed=None):
        super().__init__(backend=backend, dtype=dtype)
        self._init_qkv(in_dim, key_channels, "DANet's", seed)

    def __repr__(self):
        return (
            f"PositionAttention(in_dim={self.in_dim}, key_channels={self.key_channels}, "
            f"backend={self.backend!r}, dtype={self.dtype.name})"
        )

    def _validate_inputs(self, x):
        validate_feature_map(x, self.in_dim, 1, self.dtype)

    def _forward(self, x):
        ops = self.ops
        B, C, H, W = x.shape
        (q2, k2, v2), c_project = project_forward(ops, self.params, x)  # steps 1-2
        out2, c_attend = attend_forward(ops, q2, k2, v2, None)  # steps 3-5, no step 4
        self.attention = c_attend.attention  # (B, N, N), or None from the fused kernel
        out, c_un = ops.unflatten_forward(out2, H, W)  # step 6
        y, c_res = ops.residual_forward(x, out, self.params["gamma"])  # step 7
        self._cache = PositionCache(c_project, c_attend, c_un, c_res)
        return y

    def _backward(self, dy):
        ops, c = self.ops, self._cache
        dx, dout, dgamma = ops.residual_backward(dy, c.residual)  # step 7
        dout2 = ops.unflatten_backward(dout, c.unflatten)  # step 6
        dq2, dk2, dv2 = attend_backward(ops, dout2, c.attend)  # steps 5, 3
        dx_qkv, self.grads = project_backward(ops, dq2, dk2, dv2, c.project)  # steps 2-1
        # x reached y four ways: the residual and the three projections
        dx = dx + dx_qkv
        self.grads["gamma"] = dgamma
        return dx

"""``BAM``, the article's "Basic self-attention module", composed of the seven steps.

The forward pass reads top to bottom like the article's PyTorch ``forward``:

    pool -> step 1 (q, k, v) -> step 2 -> steps 3-5 (energy, scale, softmax, weighted sum)
         -> step 6 -> resize -> step 7

and the backward pass walks the same list in reverse, each step's backward
consuming the cache its forward left. Every step runs through ``self.ops``, the
backend's table (`minattn.backend`); steps 3-5 go through `attend_forward`, which
on the numba backend is one streaming kernel, so ``attention`` is then None.
"""

from typing import NamedTuple

import numpy as np

from ..backend import AttendCache, attend_backward, attend_forward, attention_rows
from ..ops.resize import INTERPOLATIONS
from ..validate import validate_choice, validate_feature_map, validate_positive_int, validate_seed
from .base import Module


class QKVAttention(Module):
    """What BAM and DANet's position attention share: ``in_dim``, ``key_channels``, the query,
    key and value 1x1 convolutions (keyed as the article's module, with gamma), and
    `attention_maps`. ``ds`` pools before the attention; ``scale`` is step 4's factor (None:
    no step 4)."""

    ds = 1
    scale = None

    def _init_qkv(self, in_dim, key_channels, whose, seed):
        self.in_dim = validate_positive_int(in_dim, "in_dim")
        self.key_channels = key_channels_for(in_dim, key_channels, whose)
        self._set_params(qkv_init(self.in_dim, self.key_channels, self.dtype, validate_seed(seed)))
        self.attention = None  # (B, N, N) of the last forward, or None

    def attention_maps(self, x, queries):
        """Attention rows of chosen query pixels, without forming the N x N matrix.

        x: (B, C, H, W); queries: [(row, col), ...] in input-pixel coordinates.
        Returns (B, len(queries), H/ds, W/ds): for each query, the weights its pooled
        pixel gives every pooled pixel (each map sums to 1). Same for every backend.
        """
        self._validate_inputs(x)
        self._validate_params()
        B, C, H, W = x.shape
        rows = query_indices(queries, H, W, self.ds)
        pooled = x if self.ds == 1 else self.ops.avg_pool_forward(x, self.ds)[0]
        (q2, k2, _), _ = project_forward(self.ops, self.params, pooled)
        attention = attention_rows(self.ops, q2[:, :, rows], k2, self.scale)  # (B, Q, N)
        return attention.reshape(B, len(rows), H // self.ds, W // self.ds)


class BAMCache(NamedTuple):
    """What BAM's forward keeps for its backward: each step's cache, in order."""

    pool: int
    project: "ProjectCache"
    attend: AttendCache
    unflatten: tuple
    upsample: tuple
    residual: tuple


class BAM(QKVAttention):
    """Self-attention over a pooled feature map, with a residual connection.

    Args:
        in_dim: C, channels of the input.
        ds: average-pool factor before attention (the article's default 8).
        key_channels: channels of query and key; None means ``in_dim // 8`` as in the article.
        interpolation: "nearest" (what the article's code does) or "bilinear" (what its
            comment says; PyTorch's align_corners=False).
        use_gamma: False gives ``out = up(attn) + x`` as the article's code; True gives
            ``gamma * up(attn) + x`` as SAGAN / DANet.
        backend: "reference", "numpy" or "numba".
        dtype: np.float32 or np.float64, for parameters and computation.
        seed: int, np.random.Generator or None, for PyTorch-style default initialisation.

    Shapes: x (B, C, H, W) -> y (B, C, H, W); attention (B, N, N) with N = (H/ds)(W/ds).
    """

    step_labels = {
        "avg_pool_forward#1": "pool",
        "conv1x1_forward#1": "step 1: query",
        "conv1x1_forward#2": "step 1: key",
        "conv1x1_forward#3": "step 1: value",
        "flatten_forward#1": "step 2: query matrix",
        "flatten_forward#2": "step 2: key matrix",
        "flatten_forward#3": "step 2: value matrix",
        "energy_forward#1": "step 3: energy",
        "scale_forward#1": "step 4: scaled energy",
        "softmax_forward#1": "step 3: attention (softmax)",
        "weighted_sum_forward#1": "step 5: weighted sum",
        "fused_attention_forward#1": "steps 3-5: streaming attention",
        "unflatten_forward#1": "step 6: reshape back",
        "upsample_forward#1": "resize",
        "residual_forward#1": "step 7: residual",
    }

    def __init__(
        self,
        in_dim,
        ds=8,
        *,
        key_channels=None,
        interpolation="nearest",
        use_gamma=False,
        backend="numpy",
        dtype=np.float64,
        seed=None,
    ):
        super().__init__(backend=backend, dtype=dtype)
        self.ds = validate_positive_int(ds, "ds")
        self.interpolation = validate_choice(interpolation, "interpolation", INTERPOLATIONS)
        if not isinstance(use_gamma, bool | np.bool_):
            raise TypeError(f"use_gamma must be True or False, got {use_gamma!r}")
        self.use_gamma = bool(use_gamma)
        self._init_qkv(in_dim, key_channels, "the article's", seed)
        self.scale = self.key_channels**-0.5  # step 4, as the article's code: not sqrt(in_dim)

    def __repr__(self):
        return (
            f"{type(self).__name__}(in_dim={self.in_dim}, ds={self.ds}, "
            f"key_channels={self.key_channels}, interpolation={self.interpolation!r}, "
            f"use_gamma={self.use_gamma}, backend={self.backend!r}, dtype={self.dtype.name})"
        )

    def _validate_inputs(self, x):
        validate_feature_map(x, self.in_dim, self.ds, self.dtype)

    # ------------------------------------------------------------ forward

    def _forward(self, x):
        ops = self.ops
        B, C, H, W = x.shape
        h, w = H // self.ds, W // self.ds

        pooled, c_pool = ops.avg_pool_forward(x, self.ds)  # (B, C, h, w)
        (q2, k2, v2), c_project = project_forward(ops, self.params, pooled)  # steps 1-2
        out2, c_attend = attend_forward(ops, q2, k2, v2, self.scale)  # steps 3-5: (B, C, N)
        self.attention = c_attend.attention  # (B, N, N), or None from the fused kernel
        out, c_un = ops.unflatten_forward(out2, h, w)  # step 6: (B, C, h, w)
        up, c_up = ops.upsample_forward(out, self.ds, self.interpolation)  # (B, C, H, W)
        gamma = self.params["gamma"] if self.use_gamma else None
        y, c_res = ops.residual_forward(x, up, gamma)  # step 7

        self._cache = BAMCache(c_pool, c_project, c_attend, c_un, c_up, c_res)
        return y

    # ------------------------------------------------------------ backward

    def _backward(self, dy):
        ops, c = self.ops, self._cache

        dx, dup, dgamma = ops.residual_backward(dy, c.residual)  # step 7: dy reaches x as is
        dout = ops.upsample_backward(dup, c.upsample)
        dout2 = ops.unflatten_backward(dout, c.unflatten)  # step 6
        dq2, dk2, dv2 = attend_backward(ops, dout2, c.attend)  # steps 5, 3, 4, 3
        dpooled, self.grads = project_backward(ops, dq2, dk2, dv2, c.project)  # steps 2-1
        dx = dx + ops.avg_pool_backward(dpooled, c.pool)
        self.grads["gamma"] = np.zeros(1, self.dtype) if dgamma is None else dgamma
        return dx


def conv_init(seed, dtype, **convs):
    """PyTorch's Conv2d default for 1x1 convolutions: weight and bias uniform in +-1/sqrt(C_in).

    ``convs`` maps a name to (C_out, C_in); returns ``{name.weight, name.bias}`` in order.
    """
    rng = np.random.default_rng(seed)
    params = {}
    for name, (c_out, c_in) in convs.items():
        bound = 1.0 / np.sqrt(c_in)  # fan_in of a 1x1 convolution is C_in
        params[f"{name}.weight"] = rng.uniform(-bound, bound, (c_out, c_in, 1, 1)).astype(dtype)
        params[f"{name}.bias"] = rng.uniform(-bound, bound, c_out).astype(dtype)
    return params


def key_channels_for(in_dim, key_channels, whose):
    """key_channels, or ``in_dim // 8`` (``whose`` default) when None; at least 1."""
    if key_channels is None:
        if in_dim // 8 == 0:
            raise ValueError(
                f"in_dim={in_dim} gives in_dim // 8 = 0 query/key channels ({whose} "
                f"default); pass key_channels=k with k >= 1, or use in_dim >= 8"
            )
        key_channels = in_dim // 8
    return validate_positive_int(key_channels, "key_channels")


def qkv_init(in_dim, key_channels, dtype, seed):
    """The parameters of steps 1 and 7, keyed as the article's module; gamma starts at 0."""
    params = conv_init(
        seed,
        dtype,
        query_conv=(key_channels, in_dim),
        key_conv=(key_channels, in_dim),
        value_conv=(in_dim, in_dim),
    )
    params["gamma"] = np.zeros(1, dtype=dtype)
    return params


class ProjectCache(NamedTuple):
    """The caches of steps 1 (three convolutions) and 2 (three reshapes)."""

    query: tuple
    key: tuple
    value: tuple
    query_flat: tuple
    key_flat: tuple
    value_flat: tuple


def project_forward(ops, P, x):
    """Steps 1 and 2: x (B, C, h, w) -> query, key (B, Ck, N) and value (B, C, N), cache."""
    # step 1: three 1x1 convolutions
    query, c_q = ops.conv1x1_forward(x, P["query_conv.weight"], P["query_conv.bias"])
    key, c_k = ops.conv1x1_forward(x, P["key_conv.weight"], P["key_conv.bias"])
    value, c_v = ops.conv1x1_forward(x, P["value_conv.weight"], P["value_conv.bias"])
    # step 2: reshape to matrices, (B, ., h, w) -> (B, ., N)
    q2, c_q2 = ops.flatten_forward(query)
    k2, c_k2 = ops.flatten_forward(key)
    v2, c_v2 = ops.flatten_forward(value)
    return (q2, k2, v2), ProjectCache(c_q, c_k, c_v, c_q2, c_k2, c_v2)


def project_backward(ops, dq2, dk2, dv2, cache):
    """Steps 2 and 1 in reverse -> dx (B, C, h, w) and the six convolution gradients."""
    dquery = ops.flatten_backward(dq2, cache.query_flat)  # step 2
    dkey = ops.flatten_backward(dk2, cache.key_flat)
    dvalue = ops.flatten_backward(dv2, cache.value_flat)
    dx_q, dWq, dbq = ops.conv1x1_backward(dquery, cache.query)  # step 1
    dx_k, dWk, dbk = ops.conv1x1_backward(dkey, cache.key)
    dx_v, dWv, dbv = ops.conv1x1_backward(dvalue, cache.value)
    grads = {
        "query_conv.weight": dWq,
        "query_conv.bias": dbq,
        "key_conv.weight": dWk,
        "key_conv.bias": dbk,
        "value_conv.weight": dWv,
        "value_conv.bias": dbv,
    }
    # x fed all three projections, so its gradients add up
    return dx_q + dx_k + dx_v, grads


def query_indices(queries, H, W, ds):
    """[(row, col), ...] in input pixels -> flat indices of their pooled pixels."""
    try:
        pairs = [(int(r), int(c)) for r, c in queries]
    except (TypeError, ValueError) as e:
        raise TypeError(f"queries must be a list of (row, col) pairs, got {queries!r}") from e
    if not pairs:
        raise ValueError("queries must name at least one (row, col) pixel, got an empty list")
    for r, c in pairs:
        if not (0 <= r < H and 0 <= c < W):
            raise ValueError(
                f"query pixel (row={r}, col={c}) lies outside the input of size H={H}, W={W}"
            )
    return [(r // ds) * (W // ds) + c // ds for r, c in pairs]

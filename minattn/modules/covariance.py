"""``CovarianceAttention``: the article's sentence taken literally.

The article explains self-attention by covariance: "treat every pixel of the feature
map as a random variable and compute the covariance of every pair of pixels", an
N x N matrix, then rebuild each pixel as a weighted sum of all pixels, weighted by
that similarity. Its code (and every attention module) computes q_i . k_j instead:
uncentred, between two *different* learned projections, so not a covariance. This
module computes the covariance the sentence describes.

What the samples are. A random variable needs samples. Pixel n has C numbers, its
channel values x[0, n], ..., x[C-1, n]; we take those as its C samples. Then, with
xc the pixel's vector minus its mean over channels,

    energy[i, j] = cov(pixel i, pixel j) = sum_c xc[c, i] xc[c, j] / (C - 1),

which is exactly ``np.cov(X.T)`` for X = x[b] reshaped to (C, N) (np.cov takes rows
as variables and columns as samples; ddof = 1). With ``kind="correlation"`` each
centred vector is also divided by its length, and the energy is ``np.corrcoef(X.T)``,
in [-1, 1] whatever the scale of the features (a pixel whose C values are all equal
has no variance: its correlations are 0 here, where np.corrcoef gives NaN).

    flatten -> centre -> [unit_norm] -> steps 3-5 with query = key = the centred
    vectors (energy, scale by scale / (C - 1) or scale, softmax, weighted sum of the
    values) -> reshape back -> y = gamma * out + x

Taken literally, nothing in the similarity is learned: there are no query or key
convolutions, the features alone decide which pixels are alike. What is mixed is
learned (the value convolution, as in the article's code) and how much of it
(gamma, as in DANet; it starts at 0 so the module starts as the identity).
"""

import numbers
from typing import NamedTuple

import numpy as np

from ..backend import AttendCache, attend_backward, attend_forward
from ..validate import validate_choice, validate_feature_map, validate_positive_int, validate_seed
from .bam import conv_init
from .base import Module

KINDS = ("covariance", "correlation")


class CovarianceCache(NamedTuple):
    """What the forward keeps for the backward: each step's cache, in order."""

    flatten: tuple
    centre: tuple
    unit_norm: tuple | None  # None for kind="covariance"
    value: tuple
    value_flat: tuple
    attend: AttendCache
    unflatten: tuple
    residual: tuple


class CovarianceAttention(Module):
    """Self-attention whose energy is the covariance (or correlation) of the pixels.

    Args:
        in_dim: C, channels of the input: each pixel's number of samples, so at least 2.
        kind: "covariance" (``np.cov`` of the pixels) or "correlation" (``np.corrcoef``).
        scale: the energy is multiplied by this before the softmax (the article's step 4,
            a fixed temperature); 1.0 takes the sentence literally. Correlations lie in
            [-1, 1], so with scale 1 the softmax over N pixels stays close to uniform;
            a larger scale makes it pick out the similar pixels.
        backend: "reference", "numpy", or "numba": steps 3-5 run as the streaming kernel
            (query = key = the centred pixel vectors), so the N x N matrix is never
            formed and ``attention`` is None; the value convolution is BLAS-free.
        dtype: np.float32 or np.float64.
        seed: for PyTorch's Conv2d initialisation of the value convolution; gamma = 0.

    Shapes: x (B, C, H, W) -> y (B, C, H, W); attention (B, N, N), N = H W.
    state_dict (our design; the names BAM and DANet use for the same parts, so their
    value_conv and gamma load here): ``value_conv.weight`` (C, C, 1, 1),
    ``value_conv.bias`` (C,), ``gamma`` (1,).
    """

    step_labels = {
        "flatten_forward#1": "pixels as columns (B, C, N)",
        "centre_forward#1": "centred: each pixel minus its channel mean",
        "unit_norm_forward#1": "unit length (correlation)",
        "conv1x1_forward#1": "value",
        "flatten_forward#2": "value matrix",
        "energy_forward#1": "energy xc^T xc",
        "scale_forward#1": "scaled energy: scale * covariance (or correlation)",
        "softmax_forward#1": "attention (softmax)",
        "weighted_sum_forward#1": "weighted sum of values",
        "fused_attention_forward#1": "streaming attention",
        "unflatten_forward#1": "reshape back",
        "residual_forward#1": "gamma * out + x",
    }

    def __init__(
        self,
        in_dim,
        *,
        kind="covariance",
        scale=1.0,
        backend="numpy",
        dtype=np.float64,
        seed=None,
    ):
        super().__init__(backend=backend, dtype=dtype)
        self.in_dim = validate_positive_int(in_dim, "in_dim", minimum=2)
        self.kind = validate_choice(kind, "kind", KINDS)
        if (
            isinstance(scale, bool)
            or not isinstance(scale, numbers.Real)
            or not np.isfinite(scale)
            or scale <= 0
        ):
            raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
        self.scale = float(scale)
        params = conv_init(validate_seed(seed), self.dtype, value_conv=(in_dim, in_dim))
        self._set_params({**params, "gamma": np.zeros(1, dtype=self.dtype)})
        self.attention = None

    def __repr__(self):
        return (
            f"CovarianceAttention(in_dim={self.in_dim}, kind={self.kind!r}, scale={self.scale}, "
            f"backend={self.backend!r}, dtype={self.dtype.name})"
        )

    def _validate_inputs(self, x):
        validate_feature_map(x, self.in_dim, 1, self.dtype)

    def _pixels(self, X):
        """X (B, C, N) -> the vectors whose inner products are the energy, and the factor
        that turns those inner products into covariances (1 / (C - 1)) or correlations (1)."""
        ops = self.ops
        Xc, c_centre = ops.centre_forward(X)  # each pixel's C samples minus their mean
        if self.kind == "correlation":
            Z, c_norm = ops.unit_norm_forward(Xc)
            return Z, 1.0, (c_centre, c_norm)
        return Xc, 1.0 / (self.in_dim - 1), (c_centre, None)

    def _forward(self, x):
        ops, P = self.ops, self.params
        B, C, H, W = x.shape
        X, c_flat = ops.flatten_forward(x)  # (B, C, N)
        K, factor, c_pixels = self._pixels(X)
        value, c_v = ops.conv1x1_forward(x, P["value_conv.weight"], P["value_conv.bias"])
        V, c_vflat = ops.flatten_forward(value)
        # the covariance is K^T K * factor: attention with query = key = K
        out2, c_attend = attend_forward(ops, K, K, V, self.scale * factor)
        self.attention = c_attend.attention  # (B, N, N), or None from the fused kernel
        out, c_un = ops.unflatten_forward(out2, H, W)
        y, c_res = ops.residual_forward(x, out, P["gamma"])
        c_centre, c_norm = c_pixels
        self._cache = CovarianceCache(c_flat, c_centre, c_norm, c_v, c_vflat, c_attend, c_un, c_res)
        return y

    def _backward(self, dy):
        ops, c = self.ops, self._cache
        dx, dout, dgamma = ops.residual_backward(dy, c.residual)
        dout2 = ops.unflatten_backward(dout, c.unflatten)
        dquery, dkey, dV = attend_backward(ops, dout2, c.attend)
        dK = dquery + dkey  # K was both the query and the key
        if c.unit_norm is not None:
            dK = ops.unit_norm_backward(dK, c.unit_norm)
        dX = ops.centre_backward(dK, c.centre)
        dvalue = ops.flatten_backward(dV, c.value_flat)
        dx_v, dW, db = ops.conv1x1_backward(dvalue, c.value)
        # x reached y three ways: the residual, the energy and the value
        dx = dx + ops.flatten_backward(dX, c.flatten) + dx_v
        self.grads = {"value_conv.weight": dW, "value_conv.bias": db, "gamma": dgamma}
        return dx

    def energy(self, x):
        """The energy the softmax sees (before ``scale``): x (B, C, H, W) -> (B, N, N).

        energy[b] == np.cov(x[b].reshape(C, -1).T) for kind="covariance" and
        np.corrcoef(...) for "correlation". Forms the N x N matrix on every backend.
        """
        self._validate_inputs(x)
        X, _ = self.ops.flatten_forward(x)
        K, factor, _ = self._pixels(X)
        energy, _ = self.ops.energy_forward(K, K)
        return self.ops.scale_forward(energy, factor)[0] if factor != 1.0 else energy

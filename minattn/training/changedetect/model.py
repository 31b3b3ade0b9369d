"""STANet in miniature: features -> 1x1 projection -> CDSA -> distance map.

STANet (Chen & Shi, 2020) detects change between two photos of one place: a shared
feature extractor maps each photo to a feature map, ``CDSA`` lets every pixel of both
maps attend over the pixels of both (the pair is put side by side along the width,
attended as one image, and split again), and the change map is the per-pixel distance
between the two attended feature maps, trained with a batch-balanced contrastive loss
(``minattn.losses.contrastive_forward``): unchanged pixels pulled together, changed
ones pushed a margin apart.

Here the feature extractor is the project's fixed photo features, followed by one
learned 1x1 convolution ("proj"); ``mode=None`` removes the attention and gives the
baseline: the same projection and distance, each pixel compared only with itself.

Parameters are one flat dict with prefixed keys, ``proj.weight``, ``proj.bias``,
``cdsa.Self_Att.query_conv.weight``, ..., the live arrays of the parts (so an optimiser
stepping the model steps CDSA's own arrays), and exactly the state_dict keys of the
PyTorch port (a module with attributes ``proj`` and ``cdsa``).
"""

import numpy as np

from ...modules.base import Module
from ...modules.cdsa import CDSA, stanet_weights_init
from ...validate import validate_array, validate_choice, validate_positive_int, validate_seed

MODES = ("BAM", "PAM", "pool", None)
DISTANCE_EPS = 1e-6  # torch's pairwise_distance adds it to the difference: |a - b + eps|


# ---------------------------------------------------------------- the distance map


def distance_forward(a, b, eps=DISTANCE_EPS):
    """d[n, i, j] = || a[n, :, i, j] - b[n, :, i, j] + eps ||_2, the distance over channels.

    a, b: (B, C, H, W) -> d: (B, H, W). This is STANet's ``F.pairwise_distance(feat_A,
    feat_B, keepdim=True)`` as PyTorch 1.x computed it, over dim 1 (today's PyTorch takes
    the norm over the last dimension instead). The eps keeps d > 0, where the square root
    has a gradient.
    """
    diff = a - b + eps
    d = np.sqrt(np.einsum("bchw,bchw->bhw", diff, diff))
    return d, (diff, d)


def distance_backward(dd, cache):
    """dd: (B, H, W) -> (da, db), each (B, C, H, W): dd/da = (a - b + eps) / d = -dd/db."""
    diff, d = cache
    da = diff * (dd / d)[:, None]
    return da, -da


# ---------------------------------------------------------------- the control


class PooledContext(Module):
    """The control: CDSA(BAM) with BAM's attention replaced by the identity (mode="pool").

    [y1 | y2] = [x1 | x2] + up(value_conv(pool([x1 | x2]))): each pooled pixel "attends"
    only to itself, so the model gets BAM's pooled context (the mean of a ds x ds block)
    and its value projection, but compares no pixel with any other. What this control
    gains over the baseline is what pooling gives; what BAM gains over the control is
    what its attention weights give. Keys: ``Self_Att.value_conv.{weight,bias}``.
    """

    input_names = ("x1", "x2")
    output_names = ("y1", "y2")

    def __init__(self, in_c, ds=1, *, backend="numpy", dtype=np.float64, seed=None):
        super().__init__(backend=backend, dtype=dtype)
        self.in_c = validate_positive_int(in_c, "in_c")
        self.ds = validate_positive_int(ds, "ds")
        rng = np.random.default_rng(validate_seed(seed))
        bound = 1 / np.sqrt(in_c)  # PyTorch's Conv2d default; the weight is redrawn below
        self.params = {
            "Self_Att.value_conv.weight": rng.uniform(-bound, bound, (in_c, in_c, 1, 1)),
            "Self_Att.value_conv.bias": rng.uniform(-bound, bound, in_c),
        }
        self.params = {k: v.astype(self.dtype) for k, v in self.params.items()}
        stanet_weights_init(self, rng)  # as CDSA: the weight N(0, 0.02)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def __repr__(self):
        return f"PooledContext(in_c={self.in_c}, ds={self.ds}, dtype={self.dtype.name})"

    def _validate_inputs(self, x1, x2):
        _validate_image_pair(x1, x2, self.in_c, self.dtype)

    def _forward(self, x1, x2):
        ops, P = self.ops, self.params
        x, c_cat = ops.pair_concat_forward(x1, x2)
        pooled, c_pool = ops.avg_pool_forward(x, self.ds)
        value, c_v = ops.conv1x1_forward(
            pooled, P["Self_Att.value_conv.weight"], P["Self_Att.value_conv.bias"]
        )
        up, c_up = ops.upsample_forward(value, self.ds, "nearest")
        y, c_res = ops.residual_forward(x, up)
        (y1, y2), c_split = ops.pair_split_forward(y)
        self._cache = (c_cat, c_pool, c_v, c_up, c_res, c_split)
        return y1, y2

    def _backward(self, dy1, dy2):
        ops = self.ops
        c_cat, c_pool, c_v, c_up, c_res, c_split = self._cache
        dy = ops.pair_split_backward((dy1, dy2), c_split)
        dx, dup, _ = ops.residual_backward(dy, c_res)
        dpooled, dW, db = ops.conv1x1_backward(ops.upsample_backward(dup, c_up), c_v)
        dx = dx + ops.avg_pool_backward(dpooled, c_pool)
        self.grads = {"Self_Att.value_conv.weight": dW, "Self_Att.value_conv.bias": db}
        return ops.pair_concat_backward(dx, c_cat)


def _validate_image_pair(x1, x2, channels, dtype):
    validate_array(x1, "x1", ndim=4, dtype=dtype)
    validate_array(x2, "x2", ndim=4, dtype=dtype)
    if x1.shape != x2.shape:
        raise ValueError(
            f"x1 and x2 must have one shape (the features of the two views), got {x1.shape} "
            f"and {x2.shape}"
        )
    if x1.shape[1] != channels:
        raise ValueError(
            f"x1 and x2 have {x1.shape[1]} channels (shape {x1.shape}), expected {channels}"
        )


# ---------------------------------------------------------------- the model


class ChangeDetector(Module):
    """features (B, C, H, W) x 2 -> distance map (B, H, W); a large distance means change.

    Args:
        in_channels: C, channels of the input features.
        channels: output channels of the learned 1x1 projection (CDSA's in_c).
        mode: "BAM" or "PAM" (CDSA's attention), None for the baseline without attention,
            or "pool" for the control that keeps BAM's pooling and value projection but
            replaces its attention by the identity (``PooledContext``).
        ds: CDSA's pooling factor (BAM: H and W multiples of it; PAM: of 8 * ds).
        backend, dtype: as every minattn module (CDSA's too).
        seed: int, np.random.Generator or None. The projection gets PyTorch's Conv2d
            default initialisation; CDSA gets STANet's ``weights_init`` (convolution
            weights normal with std 0.02), so the attention branch starts small and the
            model starts close to the baseline built with the same seed (same projection).

    ``forward(x1, x2) -> distance``; ``backward(ddistance) -> (dx1, dx2)`` fills ``grads``;
    ``loss(x1, x2, changed)`` does both around the contrastive loss.
    """

    input_names = ("x1", "x2")
    output_names = ("distance",)

    def __init__(self, in_channels, channels=32, *, mode="BAM", ds=4, backend="numpy",
                 dtype=np.float64, seed=None):  # fmt: skip
        super().__init__(backend=backend, dtype=dtype)
        self.in_channels = validate_positive_int(in_channels, "in_channels")
        self.channels = validate_positive_int(channels, "channels")
        self.mode = validate_choice(mode, "mode", MODES)
        self.ds = validate_positive_int(ds, "ds")
        rng = np.random.default_rng(validate_seed(seed))
        bound = 1 / np.sqrt(in_channels)  # PyTorch's Conv2d default: U(+-1/sqrt(fan_in))
        self.params = {
            "proj.weight": rng.uniform(-bound, bound, (channels, in_channels, 1, 1)),
            "proj.bias": rng.uniform(-bound, bound, channels),
        }
        self.params = {k: v.astype(self.dtype) for k, v in self.params.items()}
        self.cdsa = None
        if mode == "pool":
            self.cdsa = PooledContext(channels, self.ds, backend=backend, dtype=dtype, seed=rng)
        elif mode is not None:
            self.cdsa = CDSA(channels, self.ds, mode, backend=backend, dtype=dtype, seed=rng)
        if self.cdsa is not None:
            self.children = [self.cdsa]
            # CDSA's own live arrays, under the PyTorch port's names
            self.params.update({"cdsa." + k: v for k, v in self.cdsa.params.items()})
            self.buffers = {"cdsa." + k: v for k, v in self.cdsa.buffers.items()}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}

    def __repr__(self):
        return (
            f"ChangeDetector(in_channels={self.in_channels}, channels={self.channels}, "
            f"mode={self.mode!r}, ds={self.ds}, backend={self.backend!r}, "
            f"dtype={self.dtype.name})"
        )

    def _validate_inputs(self, x1, x2):
        _validate_image_pair(x1, x2, self.in_channels, self.dtype)

    # ------------------------------------------------------------ forward and backward

    def _forward(self, x1, x2):
        ops, P = self.ops, self.params
        B = x1.shape[0]
        # one projection for both views (the shared feature extractor of a siamese
        # network), run once on the two stacked along the batch
        p, c_proj = ops.conv1x1_forward(np.concatenate([x1, x2]), P["proj.weight"], P["proj.bias"])
        p1, p2 = p[:B], p[B:]
        if self.cdsa is not None:
            p1, p2 = self.cdsa.forward(p1, p2)
        d, c_dist = distance_forward(p1, p2)
        self._cache = (B, c_proj, c_dist)
        return d

    def _backward(self, dd):
        B, c_proj, c_dist = self._cache
        dp1, dp2 = distance_backward(dd, c_dist)
        if self.cdsa is not None:
            dp1, dp2 = self.cdsa.backward(dp1, dp2)
        dx, dW, db = self.ops.conv1x1_backward(np.concatenate([dp1, dp2]), c_proj)
        self.grads = {"proj.weight": dW, "proj.bias": db}
        if self.cdsa is not None:
            self.grads.update({"cdsa." + k: v for k, v in self.cdsa.grads.items()})
        return dx[:B], dx[B:]

    def loss(self, x1, x2, changed, margin=2.0):
        """Forward, the contrastive loss, backward: returns the loss and fills ``grads``."""
        from ..losses import contrastive_backward, contrastive_forward

        d = self.forward(x1, x2)
        loss, cache = contrastive_forward(d, changed, margin)
        self.backward(contrastive_backward(1.0, cache))
        return loss

    # ------------------------------------------------------------ what attention looks at

    def attention_maps(self, x1, x2, queries):
        """Attention of query pixels over both views: (B, len(queries), H/ds, 2W/ds).

        queries: [(row, col), ...] in view 1 (col < W) or view 2 (col >= W) of the pair
        laid side by side. Each map is the query's attention row over the pooled pair
        (view 1 left, view 2 right). BAM: its one attention; PAM: its 1 x 1 stage, whose
        single region is the whole pair (the forward runs in eval mode and leaves the
        running statistics as they were).
        """
        if self.mode not in ("BAM", "PAM"):
            raise ValueError(f"mode={self.mode!r} has no attention to show (BAM or PAM does)")
        self._validate_inputs(x1, x2)
        B, _, H, W = x1.shape
        p = self.ops.conv1x1_forward(
            np.concatenate([x1, x2]), self.params["proj.weight"], self.params["proj.bias"]
        )[0]
        pair = np.concatenate([p[:B], p[B:]], axis=3)  # (B, C, H, 2W)
        inner = self.cdsa.Self_Att
        if self.mode == "BAM":
            return inner.attention_maps(pair, queries)
        h, w = H // self.ds, W // self.ds
        training = inner.training
        try:
            inner.eval()
            inner.forward(pair)
            stage = inner.attention[0]  # (B, n, n), n = h * w * 2, pixels (row, col, image)
        finally:
            inner.train(training)
        if stage is None:
            raise ValueError("this backend does not form PAM's attention; use backend='numpy'")
        maps = []
        for r, c in queries:
            view, c = divmod(int(c), W)
            row = stage[:, ((int(r) // self.ds) * w + c // self.ds) * 2 + view]  # (B, n)
            row = row.reshape(B, h, w, 2)
            maps.append(np.concatenate([row[..., 0], row[..., 1]], axis=2))  # (B, h, 2w)
        return np.stack(maps, axis=1)


# ---------------------------------------------------------------- flat parameters (SciPy)


def flat_params(model):
    """All parameters as one float64 vector, in ``model.params`` order."""
    return np.concatenate([p.ravel() for p in model.params.values()]).astype(np.float64)


def set_flat_params(model, theta):
    """Write a vector of ``flat_params``'s layout into the live parameter arrays."""
    if not isinstance(theta, np.ndarray) or theta.ndim != 1:
        raise TypeError(f"theta must be a 1-D numpy array, got {type(theta).__name__}")
    params = model.params
    size = sum(p.size for p in params.values())
    if theta.size != size:
        raise ValueError(f"theta has {theta.size} entries, but the model has {size} parameters")
    i = 0
    for p in params.values():
        p[...] = theta[i : i + p.size].reshape(p.shape)
        i += p.size


def flat_grads(model):
    """The gradients of the last backward, in ``flat_params``'s layout."""
    return np.concatenate([model.grads[k].ravel() for k in model.params]).astype(np.float64)

"""``PAM``, STANet's pyramid attention over an image pair, composed of step functions.

STANet (Chen and Shi, 2020) looks for changes between two images of one place. Its pair
module sees both feature maps side by side along width, x = [x1 | x2] of shape
(B, C, H, 2W), and attends at several scales. At scale s each image is cut into s x s
equal cells, and a pixel attends over the pixels of its cell *in both images*, so that
it can compare itself with the same place at the other time (`minattn.regions`). Small
cells see local context, s = 1 the whole pair. Per scale (a "stage"):

    pool by ds (shared by every stage; STANet pools in each, to the same result)
    value = f_value(x)                      1x1 conv                    (B, C, h, 2w)
    query = BatchNorm(f_query conv(x))      1x1 conv, then BatchNorm    (B, Ck, h, 2w)
    key   = BatchNorm(f_key conv(x))
    cut value, query, key into s x s regions of both images     (s*s*B, ., 2 (h/s)(w/s))
    attention within each region: energy, scale Ck ** -0.5, softmax, weighted sum
    merge the regions back                                      (B, C, h, 2w)

and then the stages are concatenated along channels, mixed by a bias-free 1x1
convolution, ``conv_bn`` (its BatchNorm is commented out in STANet), and resized back by
ds (nearest, as STANet's F.interpolate) to (B, C, H, 2W). STANet resizes each stage before
the mixing; a 1x1 convolution and a nearest resize commute (each output pixel is a copy of
one pooled pixel, mixed the same way), so mixing first gives the same output and gradients
for ds * ds times less work. There is no residual connection. The regions of one scale
are stacked on the batch axis, so steps 3-5 run once per scale on (s*s*B, ., n) arrays;
on the numba backend that is one streaming-kernel call.

BatchNorm makes PAM depend on its mode: in training mode (the default, as PyTorch) query
and key are normalised with the statistics of the batch and the running statistics move
(momentum 0.1); ``eval()`` uses the running ones.

Where STANet's original fails, PAM raises a clear error instead:
- ``in_channels != out_channels``: STANet's ``conv_bn`` expects in_channels * len(sizes)
  channels but receives out_channels * len(sizes); we keep its shapes and refuse.
- a scale that does not divide the pooled height or the pooled width of one image:
  STANet's last cells take the remainder, and concatenating cells of unequal sizes fails.
- an odd width (no pair), or H or W not multiples of ds (the resize would not come back to
  the input's size).
"""

from typing import NamedTuple

import numpy as np

from ..backend import AttendCache, attend_backward, attend_forward, attention_rows
from ..validate import validate_array, validate_choice, validate_positive_int, validate_seed
from .bam import key_channels_for, query_indices
from .base import Module


class ConvBNCache(NamedTuple):
    """f_query / f_key: a 1x1 convolution's cache, then BatchNorm's."""

    conv: tuple
    batchnorm: tuple


class StageCache(NamedTuple):
    """One scale's steps: three projections, their regions, the attention, the merge."""

    value: tuple
    query: ConvBNCache
    key: ConvBNCache
    value_regions: tuple
    query_regions: tuple
    key_regions: tuple
    attend: AttendCache
    merge: tuple


class PAMCache(NamedTuple):
    """What the forward keeps for the backward: each step's cache, in order."""

    pool: int | None  # None when ds = 1
    stages: list  # a StageCache per scale
    concat: tuple
    mix: tuple
    upsample: tuple | None  # None when ds = 1


class PAM(Module):
    """STANet's pyramid attention module over an image pair laid side by side along width.

    Args:
        in_channels: C, channels of the input.
        out_channels: channels of the output; must equal in_channels (STANet's restriction).
        sizes: the scales s, e.g. (1, 2, 4, 8): one stage of s x s regions each.
        ds: average-pool factor before attention.
        key_channels: channels of query and key; None means ``out_channels // 8`` as STANet.
        backend: "reference", "numpy" or "numba".
        dtype: np.float32 or np.float64, for parameters and computation.
        seed: int, np.random.Generator or None, for PyTorch's default initialisation.

    Shapes: x (B, C, H, 2W), image 1 in columns [0, W) and image 2 in [W, 2W)
    -> y (B, C, H, 2W). H / ds and W / ds must be multiples of every scale.
    ``attention``: after a forward, one (s*s*B, n, n) array per stage (n = 2 (h/s) (w/s)
    pixels per region, region (i*s + j)*B + b, pixels ordered row, column, image;
    see `minattn.regions`), or None on the numba backend.
    """

    def __init__(
        self,
        in_channels,
        out_channels,
        sizes=(1,),
        ds=1,
        *,
        key_channels=None,
        backend="numpy",
        dtype=np.float64,
        seed=None,
    ):
        super().__init__(backend=backend, dtype=dtype)
        self.in_channels = validate_positive_int(in_channels, "in_channels")
        self.out_channels = validate_positive_int(out_channels, "out_channels")
        if in_channels != out_channels:
            raise ValueError(
                f"in_channels={in_channels} and out_channels={out_channels} differ, but STANet's "
                f"PAM runs only with equal ones: its stages output out_channels each, while its "
                f"conv_bn is built for in_channels * len(sizes) inputs. Use out_channels="
                f"{in_channels}, and a 1x1 convolution after PAM to change the channel count"
            )
        if isinstance(sizes, int | np.integer) or not hasattr(sizes, "__iter__"):
            raise TypeError(
                f"sizes must be a list or tuple of ints, e.g. (1, 2, 4, 8); got {sizes!r}"
            )
        self.sizes = tuple(validate_positive_int(s, "each of sizes") for s in sizes)
        if not self.sizes:
            raise ValueError("sizes must name at least one scale, e.g. (1,); got an empty list")
        self.ds = validate_positive_int(ds, "ds")
        self.key_channels = key_channels_for(out_channels, key_channels, "STANet's", "out_channels")
        self.scale = self.key_channels**-0.5  # STANet: self.key_channels ** -.5

        self._set_params(
            *pam_init(
                validate_seed(seed),
                self.dtype,
                self.in_channels,
                self.key_channels,
                self.out_channels,
                len(self.sizes),
            )
        )
        self.attention = None
        self.step_labels = self._labels()

    def _labels(self):
        """Names of the forward's step calls in a trace, e.g. "stage 1 (2 x 2): query BatchNorm"."""
        n = len(self.sizes)
        labels = {} if self.ds == 1 else {"avg_pool_forward#1": "pool"}
        for i, s in enumerate(self.sizes):
            stage = f"stage {i} ({s} x {s})"
            for k, what in enumerate(("value", "query", "key")):
                labels[f"conv1x1_forward#{3 * i + k + 1}"] = f"{stage}: {what}"
                labels[f"region_split_forward#{3 * i + k + 1}"] = f"{stage}: {what} regions"
            labels[f"batchnorm_forward#{2 * i + 1}"] = f"{stage}: query BatchNorm"
            labels[f"batchnorm_forward#{2 * i + 2}"] = f"{stage}: key BatchNorm"
            for step, what in (
                ("energy_forward", "energy"),
                ("scale_forward", "scaled energy"),
                ("softmax_forward", "attention (softmax)"),
                ("weighted_sum_forward", "weighted sum"),
                ("fused_attention_forward", "streaming attention"),
                ("region_merge_forward", "regions merged"),
            ):
                labels[f"{step}#{i + 1}"] = f"{stage}: {what}"
        labels["concat_channels_forward#1"] = "the stages side by side"
        labels[f"conv1x1_forward#{3 * n + 1}"] = "conv_bn (mix the stages)"
        if self.ds != 1:
            labels["upsample_forward#1"] = "resize"
        return labels

    def __repr__(self):
        return (
            f"PAM(in_channels={self.in_channels}, out_channels={self.out_channels}, "
            f"sizes={self.sizes}, ds={self.ds}, key_channels={self.key_channels}, "
            f"backend={self.backend!r}, dtype={self.dtype.name})"
        )

    def _validate_inputs(self, x):
        validate_pair_map(x, "x", self.in_channels, self.ds, self.sizes, self.dtype, "PAM")

    # ------------------------------------------------------------ forward

    def _forward(self, x):
        ops, P = self.ops, self.params
        H, W2 = x.shape[2:]
        h, w2 = H // self.ds, W2 // self.ds
        pooled, c_pool = x, None
        if self.ds != 1:
            pooled, c_pool = ops.avg_pool_forward(x, self.ds)  # (B, C, h, 2w)

        contexts, c_stages, attention = [], [], []
        for i, s in enumerate(self.sizes):
            stage = f"stages.{i}."
            # three projections of the pooled pair: (B, C, h, 2w), (B, Ck, h, 2w) twice
            value, c_v = ops.conv1x1_forward(
                pooled, P[stage + "f_value.weight"], P[stage + "f_value.bias"]
            )
            query, c_q = self._conv_bn(pooled, stage + "f_query.")
            key, c_k = self._conv_bn(pooled, stage + "f_key.")
            # each region: one cell of both images, flattened; regions on the batch axis
            v_r, c_vr = ops.region_split_forward(value, s)  # (s*s*B, C, n)
            q_r, c_qr = ops.region_split_forward(query, s)  # (s*s*B, Ck, n)
            k_r, c_kr = ops.region_split_forward(key, s)
            out_r, c_att = attend_forward(ops, q_r, k_r, v_r, self.scale)  # steps 3-5
            attention.append(c_att.attention)  # (s*s*B, n, n), or None (fused kernel)
            context, c_merge = ops.region_merge_forward(out_r, s, h, w2)  # (B, C, h, 2w)
            contexts.append(context)
            c_stages.append(StageCache(c_v, c_q, c_k, c_vr, c_qr, c_kr, c_att, c_merge))

        stacked, c_cat = ops.concat_channels_forward(contexts)  # (B, C * len(sizes), h, 2w)
        # conv_bn: a 1x1 convolution without bias (a zero bias, whose gradient is dropped)
        zero_bias = np.zeros(self.out_channels, dtype=self.dtype)
        y, c_mix = ops.conv1x1_forward(stacked, P["conv_bn.0.weight"], zero_bias)
        c_up = None
        if self.ds != 1:  # STANet: F.interpolate(..., [h*ds, 2*w*ds]), nearest (see above)
            y, c_up = ops.upsample_forward(y, self.ds, "nearest")  # (B, C, H, 2W)

        self.attention = None if attention[0] is None else attention
        self._cache = PAMCache(c_pool, c_stages, c_cat, c_mix, c_up)
        return y

    def _conv_bn(self, x, prefix):
        """f_query / f_key: a 1x1 convolution, then BatchNorm2d (which updates its buffers)."""
        ops, P, buf = self.ops, self.params, self.buffers
        z, c_conv = ops.conv1x1_forward(x, P[prefix + "0.weight"], P[prefix + "0.bias"])
        bn = prefix + "1."
        (out, mean, var), c_bn = ops.batchnorm_forward(
            z,
            P[bn + "weight"],
            P[bn + "bias"],
            buf[bn + "running_mean"],
            buf[bn + "running_var"],
            self.training,
        )
        if self.training:  # the buffers are live arrays: write into them, never rebind
            buf[bn + "running_mean"][...] = mean
            buf[bn + "running_var"][...] = var
            buf[bn + "num_batches_tracked"][...] += 1
        return out, ConvBNCache(c_conv, c_bn)

    # ------------------------------------------------------------ backward

    def _backward(self, dy):
        ops, c = self.ops, self._cache
        grads = {}

        if c.upsample is not None:
            dy = ops.upsample_backward(dy, c.upsample)
        dstacked, grads["conv_bn.0.weight"], _ = ops.conv1x1_backward(dy, c.mix)
        dcontexts = ops.concat_channels_backward(dstacked, c.concat)
        dpooled = 0
        for i, (dcontext, st) in enumerate(zip(dcontexts, c.stages, strict=True)):
            stage = f"stages.{i}."
            dout_r = ops.region_merge_backward(dcontext, st.merge)
            dq_r, dk_r, dv_r = attend_backward(ops, dout_r, st.attend)  # steps 5, 3, 4, 3
            dvalue = ops.region_split_backward(dv_r, st.value_regions)
            dquery = ops.region_split_backward(dq_r, st.query_regions)
            dkey = ops.region_split_backward(dk_r, st.key_regions)
            dp_v, dW, db = ops.conv1x1_backward(dvalue, st.value)
            grads[stage + "f_value.weight"], grads[stage + "f_value.bias"] = dW, db
            dp_q = self._conv_bn_backward(dquery, st.query, stage + "f_query.", grads)
            dp_k = self._conv_bn_backward(dkey, st.key, stage + "f_key.", grads)
            # the pooled map fed three projections in every stage: its gradients add up
            dpooled = dpooled + dp_v + dp_q + dp_k

        dx = dpooled if c.pool is None else ops.avg_pool_backward(dpooled, c.pool)
        self.grads = {name: grads[name] for name in self.params}  # state_dict order
        return dx

    def _conv_bn_backward(self, dout, cache, prefix, grads):
        dz, grads[prefix + "1.weight"], grads[prefix + "1.bias"] = self.ops.batchnorm_backward(
            dout, cache.batchnorm
        )
        dx, grads[prefix + "0.weight"], grads[prefix + "0.bias"] = self.ops.conv1x1_backward(
            dz, cache.conv
        )
        return dx

    # ------------------------------------------------------------ visualisation

    def query_key(self, x, scale=None):
        """The query and key that one stage attends with: x (B, C, H, 2W) -> two (B, Ck, h, 2w).

        ``scale`` is one of ``sizes`` (None: the first). As in forward: pool, 1x1
        convolution, then BatchNorm in the module's mode; the running statistics are left
        as they are.
        """
        self._validate_inputs(x)
        self._validate_params()
        i = self.sizes.index(self._scale(scale))
        pooled = x if self.ds == 1 else self.ops.avg_pool_forward(x, self.ds)[0]
        P, buf, projected = self.params, self.buffers, []
        for branch in ("f_query.", "f_key."):
            conv, bn = f"stages.{i}.{branch}0.", f"stages.{i}.{branch}1."
            z, _ = self.ops.conv1x1_forward(pooled, P[conv + "weight"], P[conv + "bias"])
            (out, _, _), _ = self.ops.batchnorm_forward(
                z,
                P[bn + "weight"],
                P[bn + "bias"],
                buf[bn + "running_mean"],
                buf[bn + "running_var"],
                self.training,
            )
            projected.append(out)
        return tuple(projected)

    def attention_maps(self, x, queries, scale=None):
        """Attention rows of chosen query pixels at one scale, without forming any n x n matrix.

        x: (B, C, H, 2W); queries: [(row, col), ...] in input pixels of the pair (col < W in
        image 1, col >= W in image 2); scale: one of ``sizes`` (None: the first).
        Returns (B, len(queries), H/ds, 2W/ds): each query's weights over the pixels of its
        region (its cell in both images), zero outside the region; each map sums to 1.
        """
        query, key = self.query_key(x, scale)  # (B, Ck, h, 2w)
        B, Ck, h, w2 = query.shape
        rows = query_indices(queries, x.shape[2], x.shape[3], self.ds)
        members = region_members(self.ops, h, w2, self._scale(scale))  # (s*s, n)
        region_of = np.empty(h * w2, dtype=np.intp)
        region_of[members] = np.arange(len(members))[:, None]
        q2, k2 = query.reshape(B, Ck, h * w2), key.reshape(B, Ck, h * w2)
        maps = np.zeros((B, len(rows), h * w2), dtype=self.dtype)
        for m, row in enumerate(rows):
            region = members[region_of[row]]
            weights = attention_rows(self.ops, q2[:, :, [row]], k2[:, :, region], self.scale)
            maps[:, m, region] = weights[:, 0]  # (B, n): the query's row within its region
        return maps.reshape(B, len(rows), h, w2)

    def _scale(self, scale):
        return self.sizes[0] if scale is None else validate_choice(scale, "scale", self.sizes)


def region_members(ops, h, w2, scale):
    """Flat indices into the pooled pair (h, 2w) of each region's pixels: (scale**2, n).

    Region and pixel order are region_split's: the regions are cut from a map of indices.
    """
    index = np.arange(h * w2, dtype=np.float64).reshape(1, 1, h, w2)
    regions, _ = ops.region_split_forward(index, scale)  # (scale**2, 1, n)
    return regions[:, 0].astype(np.intp)


def pam_init(seed, dtype, in_channels, key_channels, out_channels, n_stages):
    """PyTorch's defaults: 1x1 convolutions uniform in +-1/sqrt(fan_in) (weight and bias);
    BatchNorm weight 1, bias 0, running mean 0, running variance 1, no batches tracked.

    Returns (params, buffers), keyed as STANet's ``PAM.state_dict()``.
    """
    rng = np.random.default_rng(seed)

    def uniform(fan_in, *shape):
        bound = 1.0 / np.sqrt(fan_in)
        return rng.uniform(-bound, bound, shape).astype(dtype)

    params, buffers = {}, {}
    for i in range(n_stages):
        stage = f"stages.{i}."
        for branch in ("f_key.", "f_query."):
            p = stage + branch
            params[p + "0.weight"] = uniform(in_channels, key_channels, in_channels, 1, 1)
            params[p + "0.bias"] = uniform(in_channels, key_channels)
            params[p + "1.weight"] = np.ones(key_channels, dtype)
            params[p + "1.bias"] = np.zeros(key_channels, dtype)
            buffers[p + "1.running_mean"] = np.zeros(key_channels, dtype)
            buffers[p + "1.running_var"] = np.ones(key_channels, dtype)
            buffers[p + "1.num_batches_tracked"] = np.zeros((), np.int64)
        params[stage + "f_value.weight"] = uniform(in_channels, out_channels, in_channels, 1, 1)
        params[stage + "f_value.bias"] = uniform(in_channels, out_channels)
    fan_in = in_channels * n_stages
    params["conv_bn.0.weight"] = uniform(fan_in, out_channels, fan_in, 1, 1)
    return params, buffers


def validate_pair_map(x, name, channels, ds, sizes, dtype, module):
    """x: (B, channels, H, 2W), a pair side by side, H and W multiples of ds * every scale."""
    validate_array(x, name, ndim=4, dtype=dtype)
    B, C, H, W2 = x.shape
    if C != channels:
        raise ValueError(
            f"{name} has {C} channels (shape {x.shape}) but {module} was built for {channels}; "
            f"expected shape (B, {channels}, H, 2W)"
        )
    if W2 % 2:
        raise ValueError(
            f"{name} has odd width {W2} (shape {x.shape}), but {module} takes an image pair side "
            f"by side along width, (B, C, H, 2W): the width must be even"
        )
    validate_region_sizes(f"{name} has", x.shape, H, W2 // 2, ds, sizes)
    return x


def validate_region_sizes(subject, shape, H, W, ds, sizes):
    """H and the width W of each image must be multiples of ds * s for every scale s."""
    for s in (1, *sizes):
        step = ds * s
        for axis, size in (("height H", H), ("width W of each image", W)):
            if size % step:
                lo, hi = (size // step) * step, (size // step + 1) * step
                valid = f"{lo} or {hi}" if lo > 0 else f"{hi}"
                why = (
                    f"the map pooled by ds={ds} would not resize back to the input"
                    if s == 1
                    else f"at scale {s} the pooled map (ds={ds}) must cut into {s} x {s} equal "
                    f"regions per image (STANet's PAM fails on unequal ones)"
                )
                raise ValueError(
                    f"{subject} {axis}={size} (shape {shape}), which is not a multiple of "
                    f"{step}: {why}. Use {valid} (crop or pad), or other ds / sizes"
                )

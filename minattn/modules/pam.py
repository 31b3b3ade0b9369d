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
    resize back by ds (nearest, as STANet's F.interpolate)      (B, C, H, 2W)

and then the stages are concatenated along channels and mixed by a bias-free 1x1
convolution, ``conv_bn`` (its BatchNorm is commented out in STANet). There is no residual
connection. The regions of one scale are stacked on the batch axis, so steps 3-5 run once
per scale on (s*s*B, ., n) arrays; on the numba backend that is one streaming-kernel call.

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

import numpy as np

from ..backend import attend_backward, attend_forward
from ..validate import validate_array, validate_positive_int, validate_seed
from .base import Module


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
        if key_channels is None:
            if out_channels // 8 == 0:
                raise ValueError(
                    f"out_channels={out_channels} gives out_channels // 8 = 0 query/key channels "
                    f"(STANet's default); pass key_channels=k with k >= 1, or use "
                    f"out_channels >= 8"
                )
            key_channels = out_channels // 8
        self.key_channels = validate_positive_int(key_channels, "key_channels")
        self.scale = self.key_channels**-0.5  # STANet: self.key_channels ** -.5

        self.params, self.buffers = pam_init(
            validate_seed(seed),
            self.dtype,
            self.in_channels,
            self.key_channels,
            self.out_channels,
            len(self.sizes),
        )
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
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
                ("upsample_forward", "resize"),
            ):
                labels[f"{step}#{i + 1}"] = f"{stage}: {what}"
        labels["concat_channels_forward#1"] = "the stages side by side"
        labels[f"conv1x1_forward#{3 * n + 1}"] = "conv_bn (mix the stages)"
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
            c_up = None
            if self.ds != 1:  # STANet: F.interpolate(context, [h*ds, 2*w*ds]), nearest
                context, c_up = ops.upsample_forward(context, self.ds, "nearest")
            contexts.append(context)
            c_stages.append((c_v, c_q, c_k, c_vr, c_qr, c_kr, c_att, c_merge, c_up))

        stacked, c_cat = ops.concat_channels_forward(contexts)  # (B, C * len(sizes), H, 2W)
        # conv_bn: a 1x1 convolution without bias (a zero bias, whose gradient is dropped)
        zero_bias = np.zeros(self.out_channels, dtype=self.dtype)
        y, c_mix = ops.conv1x1_forward(stacked, P["conv_bn.0.weight"], zero_bias)

        self.attention = None if attention[0] is None else attention
        self._cache = (c_pool, c_stages, c_cat, c_mix)
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
        return out, (c_conv, c_bn)

    # ------------------------------------------------------------ backward

    def _backward(self, dy):
        ops = self.ops
        c_pool, c_stages, c_cat, c_mix = self._cache
        grads = {}

        dstacked, grads["conv_bn.0.weight"], _ = ops.conv1x1_backward(dy, c_mix)
        dcontexts = ops.concat_channels_backward(dstacked, c_cat)
        dpooled = 0
        for i, (dcontext, c) in enumerate(zip(dcontexts, c_stages, strict=True)):
            stage = f"stages.{i}."
            c_v, c_q, c_k, c_vr, c_qr, c_kr, c_att, c_merge, c_up = c
            if c_up is not None:
                dcontext = ops.upsample_backward(dcontext, c_up)
            dout_r = ops.region_merge_backward(dcontext, c_merge)
            dq_r, dk_r, dv_r = attend_backward(ops, dout_r, c_att)  # steps 5, 3, 4, 3
            dvalue = ops.region_split_backward(dv_r, c_vr)
            dquery = ops.region_split_backward(dq_r, c_qr)
            dkey = ops.region_split_backward(dk_r, c_kr)
            dp_v, dW, db = ops.conv1x1_backward(dvalue, c_v)
            grads[stage + "f_value.weight"], grads[stage + "f_value.bias"] = dW, db
            dp_q = self._conv_bn_backward(dquery, c_q, stage + "f_query.", grads)
            dp_k = self._conv_bn_backward(dkey, c_k, stage + "f_key.", grads)
            # the pooled map fed three projections in every stage: its gradients add up
            dpooled = dpooled + dp_v + dp_q + dp_k

        dx = dpooled if c_pool is None else ops.avg_pool_backward(dpooled, c_pool)
        self.grads = {name: grads[name] for name in self.params}  # state_dict order
        return dx

    def _conv_bn_backward(self, dout, cache, prefix, grads):
        c_conv, c_bn = cache
        dz, grads[prefix + "1.weight"], grads[prefix + "1.bias"] = self.ops.batchnorm_backward(
            dout, c_bn
        )
        dx, grads[prefix + "0.weight"], grads[prefix + "0.bias"] = self.ops.conv1x1_backward(
            dz, c_conv
        )
        return dx


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

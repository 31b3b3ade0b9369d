"""``BAM``, the article's "Basic self-attention module", composed of the seven steps.

The forward pass reads top to bottom like the article's PyTorch ``forward``:

    pool -> step 1 (q, k, v) -> step 2 -> step 3 energy -> step 4 scale
         -> step 3 softmax -> step 5 -> step 6 -> resize -> step 7

and the backward pass walks the same list in reverse, each step's backward
consuming the cache its forward left. The three backends share this skeleton:

    "reference"  every step as literal loops (minattn.reference); slow, for checking
    "numpy"      every step vectorised (minattn.steps); holds the N x N attention
    "numba"      steps 3-5 fused into a streaming kernel (minattn.kernels) that never
                 holds the N x N matrix; ``attention`` is then None
"""

import numpy as np

from . import reference, resize, steps
from .checks import (
    check_array,
    check_choice,
    check_dtype,
    check_feature_map,
    check_positive_int,
    check_seed,
)
from .resize import INTERPOLATIONS

BACKENDS = ("reference", "numpy", "numba")


class BAM:
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
        self.in_dim = check_positive_int(in_dim, "in_dim")
        self.ds = check_positive_int(ds, "ds")
        if key_channels is None:
            if in_dim // 8 == 0:
                raise ValueError(
                    f"in_dim={in_dim} gives in_dim // 8 = 0 query/key channels (the article's "
                    f"default); pass key_channels=k with k >= 1, or use in_dim >= 8"
                )
            key_channels = in_dim // 8
        self.key_channels = check_positive_int(key_channels, "key_channels")
        self.interpolation = check_choice(interpolation, "interpolation", INTERPOLATIONS)
        if not isinstance(use_gamma, bool | np.bool_):
            raise TypeError(f"use_gamma must be True or False, got {use_gamma!r}")
        self.use_gamma = bool(use_gamma)
        self.backend = check_choice(backend, "backend", BACKENDS)
        self.dtype = check_dtype(dtype)
        self.scale = self.key_channels**-0.5  # step 4, as the article's code: not sqrt(in_dim)

        self.params = _default_init(in_dim, self.key_channels, self.dtype, check_seed(seed))
        self.grads = {name: np.zeros_like(p) for name, p in self.params.items()}
        self.attention = None
        self._cache = None

    def __repr__(self):
        return (
            f"BAM(in_dim={self.in_dim}, ds={self.ds}, key_channels={self.key_channels}, "
            f"interpolation={self.interpolation!r}, use_gamma={self.use_gamma}, "
            f"backend={self.backend!r}, dtype={self.dtype.name})"
        )

    # ------------------------------------------------------------ parameters

    def state_dict(self):
        """Copies of the parameters, keyed and shaped as the article's PyTorch module."""
        return {name: p.copy() for name, p in self.params.items()}

    def load_state_dict(self, state_dict):
        """Load parameters (strict: missing, extra or misshapen entries are errors).

        Values are copied and converted to the module's dtype, so
        ``{k: v.numpy() for k, v in torch_bam.state_dict().items()}`` loads as is.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        missing = sorted(set(self.params) - set(state_dict))
        extra = sorted(set(state_dict) - set(self.params))
        if missing or extra:
            raise ValueError(
                f"state_dict keys do not match: missing {missing}, unexpected {extra}; "
                f"expected exactly {sorted(self.params)}"
            )
        loaded = {}
        for name, p in self.params.items():
            value = np.asarray(state_dict[name])
            if value.shape != p.shape:
                raise ValueError(
                    f"state_dict[{name!r}] has shape {value.shape}, expected {p.shape} "
                    f"(in_dim={self.in_dim}, key_channels={self.key_channels})"
                )
            check_array(value, f"state_dict[{name!r}]")
            loaded[name] = value.astype(self.dtype, copy=True)
        self.params = loaded
        self._cache = None

    # ------------------------------------------------------------ forward

    def __call__(self, x, **kwargs):
        return self.forward(x, **kwargs)

    def forward(self, x, *, trace=None):
        """x: (B, C, H, W) -> y: (B, C, H, W). ``trace(name, array)``, if given, sees every step."""
        check_feature_map(x, self.in_dim, self.ds, self.dtype)
        with np.errstate(over="ignore", invalid="ignore"):
            return self._forward(x, trace)

    def _forward(self, x, trace):
        show = trace if trace is not None else (lambda name, a: None)
        S, R = (reference, reference) if self.backend == "reference" else (steps, resize)
        conv = (S.conv1x1_forward, S.conv1x1_backward)
        if self.backend == "numba":
            from . import kernels

            # the numba backend never wakes OpenBLAS, whose spinning threads would
            # hold the cores the attention kernels are about to use (docs/kernels.md)
            conv = (kernels.conv1x1_forward_numba, kernels.conv1x1_backward_numba)
        P = self.params
        B, C, H, W = x.shape
        h, w = H // self.ds, W // self.ds

        pooled, c_pool = R.avg_pool_forward(x, self.ds)  # (B, C, h, w)
        show("pool", pooled)
        # step 1: three 1x1 convolutions
        query, c_q = conv[0](pooled, P["query_conv.weight"], P["query_conv.bias"])
        key, c_k = conv[0](pooled, P["key_conv.weight"], P["key_conv.bias"])
        value, c_v = conv[0](pooled, P["value_conv.weight"], P["value_conv.bias"])
        show("step 1: query", query)
        show("step 1: key", key)
        show("step 1: value", value)
        # step 2: reshape to matrices, (B, ., h, w) -> (B, ., N)
        q2, c_q2 = S.flatten_forward(query)
        k2, c_k2 = S.flatten_forward(key)
        v2, c_v2 = S.flatten_forward(value)
        show("step 2: query matrix", q2)

        if self.backend == "numba":
            # steps 3-5 fused: the N x N matrix is never formed
            out2, lse = kernels.attention_forward(q2, k2, v2, self.scale)
            c_attn = ("numba", (q2, k2, v2, out2, lse))
            self.attention = None
            show("steps 3-5: streaming attention", out2)
        else:
            energy, c_e = S.energy_forward(q2, k2)  # step 3: (B, N, N)
            show("step 3: energy", energy)
            scaled, c_s = S.scale_forward(energy, self.scale)  # step 4
            show("step 4: scaled energy", scaled)
            attention, c_a = S.softmax_forward(scaled)  # step 3: softmax, rows sum to 1
            show("step 3: attention (softmax)", attention)
            out2, c_ws = S.weighted_sum_forward(v2, attention)  # step 5: (B, C, N)
            show("step 5: weighted sum", out2)
            c_attn = ("dense", (c_e, c_s, c_a, c_ws))
            self.attention = attention

        out, c_un = S.unflatten_forward(out2, h, w)  # step 6: (B, C, h, w)
        show("step 6: reshape back", out)
        up, c_up = R.upsample_forward(out, self.ds, self.interpolation)  # (B, C, H, W)
        show(f"resize ({self.interpolation})", up)
        gamma = P["gamma"] if self.use_gamma else None
        y, c_res = S.residual_forward(x, up, gamma)  # step 7
        show("step 7: residual", y)

        _check_finite(y, "the output y", x)
        self._cache = dict(
            ops=(S, R, conv[1]), shape=x.shape, pool=c_pool, conv=(c_q, c_k, c_v),
            flat=(c_q2, c_k2, c_v2), attn=c_attn, unflatten=c_un, resize=c_up, residual=c_res,
        )  # fmt: skip
        return y

    # ------------------------------------------------------------ backward

    def backward(self, dy):
        """dy: (B, C, H, W) = dL/dy of the last forward -> dx = dL/dx; fills ``self.grads``."""
        if self._cache is None:
            raise ValueError(
                "backward() needs the cache of a forward pass: call forward(x) first "
                "(load_state_dict() clears the cache)"
            )
        check_array(dy, "dy", ndim=4, dtype=self.dtype)
        if dy.shape != self._cache["shape"]:
            raise ValueError(
                f"dy has shape {dy.shape}, expected {self._cache['shape']}, the shape of the last "
                f"forward's output"
            )
        with np.errstate(over="ignore", invalid="ignore"):
            return self._backward(dy, self._cache)

    def _backward(self, dy, cache):
        S, R, conv_backward = cache["ops"]

        dx, dup, dgamma = S.residual_backward(dy, cache["residual"])  # step 7: dy reaches x as is
        dout = R.upsample_backward(dup, cache["resize"])
        dout2 = S.unflatten_backward(dout, cache["unflatten"])  # step 6
        kind, c = cache["attn"]
        if kind == "numba":
            from . import kernels

            q2, k2, v2, out2, lse = c
            dq2, dk2, dv2 = kernels.attention_backward(dout2, q2, k2, v2, out2, lse, self.scale)
        else:
            c_e, c_s, c_a, c_ws = c
            dv2, dattention = S.weighted_sum_backward(dout2, c_ws)  # step 5
            dscaled = S.softmax_backward(dattention, c_a)  # step 3: softmax
            denergy = S.scale_backward(dscaled, c_s)  # step 4
            dq2, dk2 = S.energy_backward(denergy, c_e)  # step 3: energy
        c_q2, c_k2, c_v2 = cache["flat"]
        dquery = S.flatten_backward(dq2, c_q2)  # step 2
        dkey = S.flatten_backward(dk2, c_k2)
        dvalue = S.flatten_backward(dv2, c_v2)
        c_q, c_k, c_v = cache["conv"]
        dp_q, dWq, dbq = conv_backward(dquery, c_q)  # step 1
        dp_k, dWk, dbk = conv_backward(dkey, c_k)
        dp_v, dWv, dbv = conv_backward(dvalue, c_v)
        # the pooled map fed all three projections, so its gradients add up
        dx = dx + R.avg_pool_backward(dp_q + dp_k + dp_v, cache["pool"])

        _check_finite(dx, "the gradient dx", dy)
        self.grads = {
            "query_conv.weight": dWq,
            "query_conv.bias": dbq,
            "key_conv.weight": dWk,
            "key_conv.bias": dbk,
            "value_conv.weight": dWv,
            "value_conv.bias": dbv,
            "gamma": np.zeros(1, self.dtype) if dgamma is None else dgamma,
        }
        return dx

    # ------------------------------------------------------------ visualisation

    def attention_maps(self, x, queries):
        """Attention rows of chosen query pixels, without forming the N x N matrix.

        x: (B, C, H, W); queries: [(row, col), ...] in input-pixel coordinates.
        Returns (B, len(queries), H/ds, W/ds): for each query, the weights its pooled
        pixel gives every pooled pixel (each map sums to 1). Same for every backend.
        """
        check_feature_map(x, self.in_dim, self.ds, self.dtype)
        B, C, H, W = x.shape
        h, w = H // self.ds, W // self.ds
        rows = _query_indices(queries, H, W, self.ds)
        P = self.params
        pooled, _ = resize.avg_pool_forward(x, self.ds)
        query, _ = steps.conv1x1_forward(pooled, P["query_conv.weight"], P["query_conv.bias"])
        key, _ = steps.conv1x1_forward(pooled, P["key_conv.weight"], P["key_conv.bias"])
        q2, k2 = query.reshape(B, -1, h * w)[:, :, rows], key.reshape(B, -1, h * w)
        energy, _ = steps.energy_forward(q2, k2)  # (B, Q, N): only the chosen rows
        scaled, _ = steps.scale_forward(energy, self.scale)
        attention, _ = steps.softmax_forward(scaled)
        return attention.reshape(B, len(rows), h, w)


def _check_finite(result, what, given):
    """Overflow (energies beyond the dtype's range) gives inf and NaN: say so, not return them."""
    if not np.isfinite(result).all():
        raise ValueError(
            f"{what} is not finite: the input's largest magnitude, {np.abs(given).max():.3g}, "
            f"overflows {result.dtype} somewhere in the attention (energies grow with its square); "
            f"rescale the input or use dtype=np.float64"
        )


def _default_init(in_dim, key_channels, dtype, seed):
    """PyTorch's Conv2d default: weight and bias uniform in +-1/sqrt(fan_in); gamma = 0."""
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(in_dim)  # fan_in of a 1x1 convolution is in_dim

    def uniform(*shape):
        return rng.uniform(-bound, bound, size=shape).astype(dtype)

    return {
        "query_conv.weight": uniform(key_channels, in_dim, 1, 1),
        "query_conv.bias": uniform(key_channels),
        "key_conv.weight": uniform(key_channels, in_dim, 1, 1),
        "key_conv.bias": uniform(key_channels),
        "value_conv.weight": uniform(in_dim, in_dim, 1, 1),
        "value_conv.bias": uniform(in_dim),
        "gamma": np.zeros(1, dtype=dtype),
    }


def _query_indices(queries, H, W, ds):
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

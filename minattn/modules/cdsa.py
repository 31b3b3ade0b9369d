"""``CDSA``, STANet's change-detection self-attention: one attention module over an image pair.

STANet extracts features from two images of the same place taken at different times,
and before comparing them lets every pixel attend over both. Its ``CDSA`` puts the two
feature maps side by side along width, runs one attention module on the pair, and cuts
the result back in two:

    x = [x1 | x2]                 pair_concat     (B, C, H, 2W)
    y = Self_Att(x)               BAM(C, ds), or PAM(C, C, sizes=(1, 2, 4, 8), ds)
    y1, y2 = y[..., :W], y[..., W:]   pair_split

With BAM every pixel attends over every pooled pixel of both images; with PAM over its
region at four scales (`minattn.pam`). The state_dict is the inner module's, under
``Self_Att.``, as in PyTorch.

Initialisation follows STANet's ``weights_init``, which CDSA applies to everything it
holds: every convolution weight normal(0, 0.02), every BatchNorm weight normal(1, 0.02)
and bias 0; convolution biases keep PyTorch's default (uniform in +-1/sqrt(fan_in)).
"""

from typing import NamedTuple

import numpy as np

from ..validate import validate_array, validate_choice, validate_positive_int, validate_seed
from .bam import BAM
from .base import Module
from .pam import PAM, validate_region_sizes

MODES = ("BAM", "PAM")
PAM_SIZES = (1, 2, 4, 8)  # STANet's CDSA


class CDSACache(NamedTuple):
    """What the forward keeps for the backward (the inner module keeps its own)."""

    concat: int
    split: int


class CDSA(Module):
    """STANet's pair wrapper: ``forward(x1, x2) -> (y1, y2)``, ``backward(dy1, dy2) -> (dx1, dx2)``.

    Args:
        in_c: C, channels of each image's feature map.
        ds: average-pool factor inside the attention module.
        mode: "BAM" (STANet's basic module: out = up(attention) + x) or "PAM" (its pyramid
            module with sizes 1, 2, 4, 8, no residual).
        backend: "reference", "numpy" or "numba", as every minattn module.
        dtype: np.float32 or np.float64.
        seed: int, np.random.Generator or None; draws STANet's initialisation.

    Shapes: x1, x2 (B, C, H, W) -> y1, y2 (B, C, H, W). BAM needs H and 2W multiples of ds,
    PAM H and W multiples of 8 * ds (8 x 8 regions of the pooled map of each image).
    ``Self_Att`` is the inner module (``Self_Att.attention`` shows its attention).
    """

    input_names = ("x1", "x2")
    output_names = ("y1", "y2")
    step_labels = {
        "pair_concat_forward#1": "the pair side by side [x1 | x2]",
        "pair_split_forward#1": "split back into y1, y2",
    }

    def __init__(self, in_c, ds=1, mode="BAM", *, backend="numpy", dtype=np.float64, seed=None):
        super().__init__(backend=backend, dtype=dtype)
        self.in_c = validate_positive_int(in_c, "in_c")
        self.ds = validate_positive_int(ds, "ds")
        self.mode = validate_choice(mode, "mode", MODES)
        rng = np.random.default_rng(validate_seed(seed))
        if mode == "BAM":
            inner = BAM(in_c, ds, backend=backend, dtype=dtype, seed=rng)
        else:
            inner = PAM(in_c, in_c, sizes=PAM_SIZES, ds=ds, backend=backend, dtype=dtype, seed=rng)
        stanet_weights_init(inner, rng)
        self.Self_Att = inner
        self.children = [inner]
        # the same live arrays as the inner module's, under STANet's names
        self.params = {"Self_Att." + k: v for k, v in inner.params.items()}
        self.buffers = {"Self_Att." + k: v for k, v in inner.buffers.items()}
        self.grads = {"Self_Att." + k: v for k, v in inner.grads.items()}

    def __repr__(self):
        return (
            f"CDSA(in_c={self.in_c}, ds={self.ds}, mode={self.mode!r}, "
            f"backend={self.backend!r}, dtype={self.dtype.name})"
        )

    def _validate_inputs(self, x1, x2):
        validate_array(x1, "x1", ndim=4, dtype=self.dtype)
        validate_array(x2, "x2", ndim=4, dtype=self.dtype)
        if x1.shape != x2.shape:
            raise ValueError(
                f"x1 has shape {x1.shape} and x2 has shape {x2.shape}, but they must have one "
                f"shape: the features of two co-registered images (B, C, H, W)"
            )
        B, C, H, W = x1.shape
        if C != self.in_c:
            raise ValueError(
                f"x1 and x2 have {C} channels (shape {x1.shape}) but CDSA was built with "
                f"in_c={self.in_c}; expected shape (B, {self.in_c}, H, W)"
            )
        if self.mode == "PAM":
            validate_region_sizes("x1 and x2 have", x1.shape, H, W, self.ds, PAM_SIZES)
            return
        for axis, size in (("height H", H), ("pair width 2W", 2 * W)):
            if size % self.ds:
                raise ValueError(
                    f"x1 and x2 have {axis}={size} (shape {x1.shape}), which is not a multiple "
                    f"of ds={self.ds}: BAM pools the pair [x1 | x2] by ds and resizes back"
                )

    # ------------------------------------------------------------ forward and backward

    def _forward(self, x1, x2):
        ops = self.ops
        x, c_cat = ops.pair_concat_forward(x1, x2)  # (B, C, H, 2W): x1 left, x2 right
        y = self.Self_Att.forward(x)  # its steps show in this module's trace too
        (y1, y2), c_split = ops.pair_split_forward(y)
        self._cache = CDSACache(c_cat, c_split)
        return y1, y2

    def _backward(self, dy1, dy2):
        ops, c = self.ops, self._cache
        dy = ops.pair_split_backward((dy1, dy2), c.split)
        dx = self.Self_Att.backward(dy)
        dx1, dx2 = ops.pair_concat_backward(dx, c.concat)
        self.grads = {"Self_Att." + k: v for k, v in self.Self_Att.grads.items()}
        return dx1, dx2


def stanet_weights_init(module, rng):
    """STANet's ``weights_init``: conv weights N(0, 0.02), BatchNorm weights N(1, 0.02), biases 0.

    Applies to the 1x1 convolutions and BatchNorms of a BAM or PAM, in place; convolution
    biases and BAM's gamma keep their values, as in STANet.
    """
    for name, p in module.params.items():
        if _is_batchnorm(name):
            p[...] = rng.normal(1.0, 0.02, p.shape) if name.endswith(".weight") else 0.0
        elif name.endswith(".weight"):  # a convolution's
            p[...] = rng.normal(0.0, 0.02, p.shape)


def _is_batchnorm(name):
    # PAM's BatchNorms are the second layer of f_key / f_query: "stages.{i}.f_key.1.weight"
    return ".f_key.1." in name or ".f_query.1." in name

"""Notebook cells whose graded functions need the notebook's own globals: a module-level
list, dict or set, a helper class, a function under ``functools.lru_cache``.

In a notebook these are plain Python. In-process (``check()`` in the student's kernel, and
the tests here) they are graded like any function. Through ``minattn grade`` they become
gradeable when the isolation helper's child runs the submission's own code cells (issue
16): today's grader rebuilds each function from a whitelist of its globals and loses
these (a NameError for a list, "must be a function written with def" for a decorated
one). `SNIPPETS` lists (notebook stem, the exercises a cell defines, the cell's source).
"""

MODES_LIST = """
import numpy as np

MODES = ["nearest", "bilinear"]  # a module-level list
REPEAT = {"rows": 2, "cols": 3}  # a module-level dict (axis numbers)


def _nearest(x, ds):
    return x.repeat(ds, axis=REPEAT["rows"]).repeat(ds, axis=REPEAT["cols"])


def bilinear_matrix(n_in, ds, dtype=np.float64):
    s = np.clip((np.arange(n_in * ds) + 0.5) / ds - 0.5, 0, n_in - 1)
    return np.maximum(0, 1 - np.abs(s[:, None] - np.arange(n_in))).astype(dtype)


def upsample_forward(x, ds, mode="nearest"):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    if mode == MODES[0]:
        return _nearest(x, ds), (ds, mode, None)
    Mh, Mw = (bilinear_matrix(n, ds, x.dtype) for n in x.shape[2:])
    return Mh @ x @ Mw.T, (ds, mode, (Mh, Mw))
"""

SOFTMAX_CLASS = '''
import numpy as np


class RowSoftmax:
    """A helper class: the stable softmax over one axis."""

    def __init__(self, axis=-1):
        self.axis = axis

    def __call__(self, energy):
        e = np.exp(energy - energy.max(axis=self.axis, keepdims=True))
        return e / e.sum(axis=self.axis, keepdims=True)


SOFTMAX = RowSoftmax()


def softmax_forward(energy):
    attention = SOFTMAX(energy)
    return attention, attention
'''

CACHED_SUBSCRIPTS = '''
import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def subscripts(batched=True):
    """The einsum of the energy, for a batch or one image: a decorated helper."""
    return "bci,bcj->bij" if batched else "ci,cj->ij"


def energy_forward(query, key):
    return np.einsum(subscripts(), query, key), (query, key)
'''

CACHED_WEIGHTS = '''
import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def _weights(n_in, ds):
    """The rows of the interpolation matrix as tuples, computed once per size."""
    rows = []
    for o in range(n_in * ds):
        s = max((o + 0.5) / ds - 0.5, 0.0)
        i0 = int(s)
        row = [0.0] * n_in
        row[i0] += 1 - (s - i0)
        row[min(i0 + 1, n_in - 1)] += s - i0
        rows.append(tuple(row))
    return tuple(rows)


def bilinear_matrix(n_in, ds, dtype=np.float64):
    return np.array(_weights(n_in, ds), dtype=dtype)
'''

AXES_DICT = """
import numpy as np

AXES = {"batch": 0, "channels": 1, "pixels": (2, 3)}  # a module-level dict


def conv1x1_backward(dout, cache):
    x, weight = cache
    summed = (AXES["batch"], *AXES["pixels"])
    dx = np.einsum("oc,bohw->bchw", weight[:, :, 0, 0], dout)
    dweight = np.tensordot(dout, x, axes=(summed, summed))[:, :, None, None]
    return dx, dweight, dout.sum(axis=summed)
"""

ROW_SETS = """
QUERY_KEY = {"query_conv.weight", "query_conv.bias", "key_conv.weight", "key_conv.bias"}
NOTHING = set()  # a module-level set


def predict_transposed():
    return QUERY_KEY | {"x"}


def predict_no_row_sum():
    return set(QUERY_KEY) | {"x"}


def predict_missing_scale():
    return (QUERY_KEY - {"key_conv.bias"}) | {"x"}


def predict_gamma_zero():
    return NOTHING
"""

CACHED_BLOCKS = '''
import functools

import numpy as np


@functools.lru_cache(maxsize=None)
def blocks(n, block):
    """(start, stop) of every block of keys: a decorated helper."""
    return tuple((j, min(j + block, n)) for j in range(0, n, block))


def online_attention_forward(query, key, value, scale, block=128):
    B, Ck, N = query.shape
    m = np.full((B, N), -np.inf, dtype=query.dtype)
    l = np.zeros((B, N), dtype=query.dtype)
    acc = np.zeros((B, value.shape[1], N), dtype=query.dtype)
    for start, stop in blocks(N, block):
        s = np.einsum("bci,bcj->bij", query, key[:, :, start:stop]) * scale
        m_new = np.maximum(m, s.max(axis=-1))
        p = np.exp(s - m_new[..., None])
        alpha = np.exp(m - m_new)
        l = alpha * l + p.sum(axis=-1)
        acc = alpha[:, None, :] * acc + np.einsum("bcj,bij->bci", value[:, :, start:stop], p)
        m = m_new
    return acc / l[:, None, :], m + np.log(l)
'''

CHANNEL_TABLE = '''
import numpy as np

ORDER = ["dout", "dgamma", "dout2", "dattention", "dX_value", "dflipped", "denergy",
         "dX_energy", "dx"]  # a module-level list: the table's order


class Grads(dict):
    """A helper class: a dict that refuses to skip a line of the table."""

    def __setitem__(self, name, value):
        assert ORDER[len(self)] == name, f"{name} out of order"
        super().__setitem__(name, value)


def channel_attention_backward(dy, fwd):
    g, X, A, gamma = Grads(), fwd["X"], fwd["attention"], fwd["gamma"]
    g["dout"] = gamma[0] * dy
    g["dgamma"] = np.array([np.vdot(dy, fwd["out"])], dtype=dy.dtype)
    g["dout2"] = g["dout"].reshape(X.shape)
    g["dattention"] = g["dout2"] @ X.transpose(0, 2, 1)
    g["dX_value"] = A.transpose(0, 2, 1) @ g["dout2"]
    g["dflipped"] = A * (g["dattention"] - (g["dattention"] * A).sum(axis=-1, keepdims=True))
    denergy = -g["dflipped"]
    b, i = np.indices(fwd["argmax"].shape)
    denergy[b, i, fwd["argmax"]] += g["dflipped"].sum(axis=-1)
    g["denergy"] = denergy
    g["dX_energy"] = (denergy + denergy.transpose(0, 2, 1)) @ X
    g["dx"] = dy + (g["dX_value"] + g["dX_energy"]).reshape(dy.shape)
    return dict(g)
'''

SNIPPETS = [
    ("02_seven_steps", ("bilinear_matrix", "upsample_forward"), MODES_LIST),
    ("02_seven_steps", ("softmax_forward",), SOFTMAX_CLASS),
    ("02_seven_steps", ("energy_forward",), CACHED_SUBSCRIPTS),
    ("02_seven_steps", ("bilinear_matrix",), CACHED_WEIGHTS),
    ("03_backward_pass", ("conv1x1_backward",), AXES_DICT),
    (
        "04_gradcheck_exercises",
        ("predict_transposed", "predict_no_row_sum", "predict_missing_scale", "predict_gamma_zero"),
        ROW_SETS,
    ),
    ("05_making_it_fast", ("online_attention_forward",), CACHED_BLOCKS),
    ("07_attention_family", ("channel_attention_backward",), CHANNEL_TABLE),
]

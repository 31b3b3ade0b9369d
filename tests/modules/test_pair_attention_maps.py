"""``PAM.attention_maps`` and ``CDSA.attention_maps``: rows of the attention a forward pass uses.

The oracle is the forward pass itself (numpy backend, which keeps every stage's attention):
a query's map must be its row of that stage's (regions, n, n) attention, scattered back onto
the pooled pair through `region_split_forward` (checked against STANet's PyTorch code in
tests/oracles). The maps must not move BatchNorm's running statistics.
"""

import numpy as np
import pytest
from helpers import randomize

from minattn import CDSA, PAM
from minattn.backend import BACKENDS
from minattn.ops.regions import region_split_forward

QUERIES = [(0, 0), (7, 15), (3, 9), (5, 2), (6, 11)]  # in both images of a (8, 16) pair


def random_pam(C, sizes, ds=1, **kwargs):
    return randomize(PAM(C, C, sizes, ds, seed=0, **kwargs))


def random_cdsa(C, ds, mode):
    return randomize(CDSA(C, ds, mode, seed=0))


def rand(*shape, seed=1):
    return np.random.default_rng(seed).standard_normal(shape)


def rows_of_forward(module, x, s_index, scale, queries, ds):
    """The queries' rows of the forward's attention at one stage, as (B, Q, h, 2w) maps."""
    module.forward(x)
    attention = module.attention[s_index]  # (s*s*B, n, n), regions region-major
    B, _, H, W2 = x.shape
    h, w2 = H // ds, W2 // ds
    index = np.arange(h * w2, dtype=np.float64).reshape(1, 1, h, w2)
    members = region_split_forward(index, scale)[0][:, 0].astype(int)  # (s*s, n)
    maps = np.zeros((B, len(queries), h * w2))
    for m, (r, c) in enumerate(queries):
        pixel = (r // ds) * w2 + c // ds
        region = next(k for k in range(scale * scale) if pixel in members[k])
        position = list(members[region]).index(pixel)
        for b in range(B):
            maps[b, m, members[region]] = attention[region * B + b, position]
    return maps.reshape(B, len(queries), h, w2)


@pytest.mark.parametrize("training", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("ds", [1, 2])
def test_pam_maps_are_rows_of_the_forward_attention(training, ds):
    sizes = (1, 2, 4) if ds == 1 else (1, 2)
    pam = random_pam(8, sizes, ds).train(training)
    x = rand(2, 8, 8, 16)
    before = {k: v.copy() for k, v in pam.buffers.items()}
    maps = {s: pam.attention_maps(x, QUERIES, scale=s) for s in sizes}
    for name, buffer in pam.buffers.items():  # untouched: the forward below sees the same
        np.testing.assert_array_equal(buffer, before[name], err_msg=name)
    assert np.array_equal(pam.attention_maps(x, QUERIES), maps[sizes[0]])  # the default
    for i, s in enumerate(sizes):
        pam.load_state_dict(pam.state_dict() | before)  # each forward starts from the same
        want = rows_of_forward(pam, x, i, s, QUERIES, ds)
        np.testing.assert_allclose(maps[s], want, rtol=1e-12, atol=1e-15)
        assert maps[s].shape == (2, len(QUERIES), 8 // ds, 16 // ds)
        np.testing.assert_allclose(maps[s].sum(axis=(2, 3)), 1.0, rtol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_pam_maps_agree_across_backends(backend, request):
    if backend == "numba":
        request.getfixturevalue("numba_kernels")
    x = rand(1, 8, 8, 16)
    want = random_pam(8, (1, 2)).eval().attention_maps(x, QUERIES, 2)
    got = random_pam(8, (1, 2), backend=backend).eval().attention_maps(x, QUERIES, 2)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("mode", ["BAM", "PAM"])
def test_cdsa_maps_are_rows_of_its_inner_attention(mode):
    ds = 1
    cdsa = random_cdsa(8, ds, mode)
    x1, x2 = rand(1, 8, 8, 8, seed=1), rand(1, 8, 8, 8, seed=2)
    maps = cdsa.attention_maps((x1, x2), QUERIES)  # queries in both images
    pair = np.concatenate([x1, x2], axis=3)
    if mode == "BAM":
        cdsa.forward(x1, x2)
        rows = [(r // ds) * 16 + c // ds for r, c in QUERIES]
        want = cdsa.Self_Att.attention[:, rows].reshape(maps.shape)
    else:
        want = rows_of_forward(cdsa.Self_Att, pair, 0, 1, QUERIES, ds)
    np.testing.assert_allclose(maps, want, rtol=1e-12, atol=1e-15)


def test_attention_maps_errors_name_what_was_given():
    pam, cdsa = random_pam(8, (1, 2)), random_cdsa(8, 1, "BAM")
    x = rand(1, 8, 8, 16)
    with pytest.raises(ValueError, match="scale must be one of 1, 2; got 4"):
        pam.attention_maps(x, QUERIES, scale=4)
    with pytest.raises(ValueError, match=r"query pixel \(row=8, col=0\) lies outside"):
        pam.attention_maps(x, [(8, 0)])
    with pytest.raises(TypeError, match="pair"):
        cdsa.attention_maps(x, QUERIES)
    with pytest.raises(ValueError, match="mode='PAM' only"):
        cdsa.attention_maps((x[..., :8], x[..., 8:]), QUERIES, scale=2)
    with pytest.raises(ValueError, match=r"lies outside the input of size H=8, W=16"):
        cdsa.attention_maps((x[..., :8], x[..., 8:]), [(0, 16)])

"""The pair and region steps (minattn.regions): which pixel goes where, finite differences,
the reference twin, STANet's own slicing in torch, no mutation (bad input:
test_ops_errors.py)."""

import numpy as np
import pytest
from helpers import rand

from minattn import numerical_gradient, regions
from minattn.ops.reference import regions as ref_regions
from minattn.validate import as_tuple

RTOL = 1e-7


def fd_check(forward, args, grad_names, backward, seed=99):
    """backward(dout, cache) against central differences of L = sum_i sum(out_i * dout_i).

    Handles steps with several outputs (pair_split) and list arguments (concat_channels,
    named "maps.<i>"). Returns the largest relative error.
    """
    rng = np.random.default_rng(seed)
    out, cache = forward(**args)
    douts = tuple(rng.standard_normal(o.shape) for o in as_tuple(out))
    grads = as_tuple(backward(douts if isinstance(out, tuple) else douts[0], cache))
    worst = 0.0
    for name, analytic in zip(grad_names, grads, strict=True):
        arg, _, index = name.partition(".")

        def loss(v, arg=arg, index=index):
            value = v
            if index:
                value = list(args[arg])
                value[int(index)] = v
            outs = as_tuple(forward(**{**args, arg: value})[0])
            return sum(np.sum(o * d) for o, d in zip(outs, douts, strict=True))

        point = args[arg][int(index)] if index else args[arg]
        numeric = numerical_gradient(loss, point)
        err = np.abs(analytic - numeric).max() / max(np.abs(numeric).max(), 1e-3)
        assert err < RTOL, f"d{name}: error {err:.2e}"
        worst = max(worst, err)
    return worst


CASES = {
    "pair_concat": (lambda: dict(x1=rand(2, 3, 2, 3), x2=rand(2, 3, 2, 3, seed=1)), ("x1", "x2")),
    "pair_split": (lambda: dict(x=rand(2, 3, 2, 6)), ("x",)),
    "region_split s=1": (lambda: dict(x=rand(2, 3, 2, 4), scale=1), ("x",)),
    "region_split s=2": (lambda: dict(x=rand(2, 3, 4, 8), scale=2), ("x",)),
    "region_split s=3": (lambda: dict(x=rand(1, 2, 3, 6), scale=3), ("x",)),
    "region_merge s=2": (
        lambda: dict(regions=rand(8, 3, 8), scale=2, height=4, width=8),
        ("regions",),
    ),
    "region_merge s=3": (
        lambda: dict(regions=rand(9, 2, 8), scale=3, height=6, width=12),
        ("regions",),
    ),
    "concat_channels": (
        lambda: dict(maps=[rand(2, 3, 2, 2), rand(2, 1, 2, 2, seed=1), rand(2, 2, 2, 2, seed=2)]),
        ("maps.0", "maps.1", "maps.2"),
    ),
}


def stem(case):
    return case.split()[0]


@pytest.mark.parametrize("case", CASES)
def test_backward_matches_finite_differences(case):
    make, names = CASES[case]
    s = stem(case)
    fd_check(getattr(regions, f"{s}_forward"), make(), names, getattr(regions, f"{s}_backward"))


@pytest.mark.parametrize("case", CASES)
def test_reference_agrees_with_vectorised(case):
    make, _ = CASES[case]
    s = stem(case)
    args = make()
    out, cache = getattr(regions, f"{s}_forward")(**args)
    ref_out, ref_cache = getattr(ref_regions, f"{s}_forward")(**args)
    for a, b in zip(as_tuple(out), as_tuple(ref_out), strict=True):
        np.testing.assert_array_equal(a, b)  # pure data movement: exactly equal
    rng = np.random.default_rng(3)
    douts = tuple(rng.standard_normal(o.shape) for o in as_tuple(out))
    dout = douts if isinstance(out, tuple) else douts[0]
    grads = as_tuple(getattr(regions, f"{s}_backward")(dout, cache))
    ref_grads = as_tuple(getattr(ref_regions, f"{s}_backward")(dout, ref_cache))
    for a, b in zip(grads, ref_grads, strict=True):
        np.testing.assert_array_equal(a, b)


def labelled_pair(B, h, w):
    """A pair map whose every value encodes where it came from: (b, image, row, col)."""
    b, image, r, c = np.meshgrid(
        np.arange(B), np.arange(2), np.arange(h), np.arange(w), indexing="ij"
    )
    code = 1000 * b + 100 * image + 10 * r + c  # (B, 2, h, w)
    return np.concatenate([code[:, 0:1], code[:, 1:2]], axis=3).astype(np.float64)  # (B, 1, h, 2w)


@pytest.mark.parametrize("s", [1, 2, 3])
def test_each_region_is_one_cell_of_both_images(s):
    # written from the definition, not from the code: region (i, j) of item b holds exactly
    # the pixels of rows [i*hs, (i+1)*hs) and columns [j*ws, (j+1)*ws) of image 1 and image 2
    B, h, w = 2, 6, 6
    x = labelled_pair(B, h, w)
    out, _ = regions.region_split_forward(x, s)
    assert out.shape == (s * s * B, 1, 2 * (h // s) * (w // s))
    hs, ws = h // s, w // s
    for i in range(s):
        for j in range(s):
            for b in range(B):
                got = sorted(out[(i * s + j) * B + b, 0].tolist())
                want = sorted(
                    1000 * b + 100 * image + 10 * r + c
                    for image in range(2)
                    for r in range(i * hs, (i + 1) * hs)
                    for c in range(j * ws, (j + 1) * ws)
                )
                assert got == want, (i, j, b)


def test_pixels_of_a_region_are_ordered_row_column_image():
    x = labelled_pair(1, 2, 4)  # one item, s = 1: the region is the whole pair
    out, _ = regions.region_split_forward(x, 1)
    expected = [100 * image + 10 * r + c for r in range(2) for c in range(4) for image in range(2)]
    np.testing.assert_array_equal(out[0, 0], expected)


@pytest.mark.parametrize("shape, s", [((2, 3, 4, 8), 2), ((1, 2, 6, 12), 3), ((3, 1, 2, 2), 1)])
def test_merge_inverts_split(shape, s):
    x = rand(*shape)
    out, _ = regions.region_split_forward(x, s)
    back, _ = regions.region_merge_forward(out, s, shape[2], shape[3])
    np.testing.assert_array_equal(back, x)
    (x1, x2), _ = regions.pair_split_forward(x)
    again, _ = regions.pair_concat_forward(x1, x2)
    np.testing.assert_array_equal(again, x)


def test_pair_concat_puts_x1_left():
    x1, x2 = rand(1, 2, 3, 2), rand(1, 2, 3, 2, seed=1)
    out, _ = regions.pair_concat_forward(x1, x2)
    np.testing.assert_array_equal(out[..., :2], x1)
    np.testing.assert_array_equal(out[..., 2:], x2)


@pytest.mark.parametrize("module", [regions, ref_regions], ids=["numpy", "reference"])
@pytest.mark.parametrize("case", CASES)
def test_inputs_are_not_modified(module, case):
    make, _ = CASES[case]
    s = stem(case)
    args = make()
    saved = {
        k: [a.copy() for a in v] if isinstance(v, list) else np.copy(v) for k, v in args.items()
    }
    out, cache = getattr(module, f"{s}_forward")(**args)
    douts = tuple(np.ones_like(o) for o in as_tuple(out))
    getattr(module, f"{s}_backward")(douts if isinstance(out, tuple) else douts[0], cache)
    for k, v in args.items():
        for a, b in zip(
            v if isinstance(v, list) else [v],
            saved[k] if isinstance(v, list) else [saved[k]],
            strict=True,
        ):
            np.testing.assert_array_equal(a, b, err_msg=k)
    for d in douts:
        np.testing.assert_array_equal(d, 1.0)
    # outputs are new arrays, not views into the inputs (writing into them cannot corrupt x)
    for o in as_tuple(out):
        for v in args.values():
            for a in v if isinstance(v, list) else [v]:
                if isinstance(a, np.ndarray):
                    assert not np.shares_memory(o, a)


# ---------------------------------------------------------------- torch: STANet's own slicing


@pytest.mark.parametrize("shape, s", [((2, 3, 4, 8), 2), ((1, 2, 8, 16), 4), ((3, 1, 3, 6), 1)])
def test_regions_match_stanet_slicing(shape, s):
    pytest.importorskip("torch", reason="torch runs STANet's own region code")
    from originals import stanet_region_merge, stanet_regions

    x = rand(*shape)
    out, _ = regions.region_split_forward(x, s)
    np.testing.assert_array_equal(out, stanet_regions(x, s))
    np.testing.assert_array_equal(
        regions.region_merge_forward(out, s, *shape[2:])[0], stanet_region_merge(out, s, *shape[2:])
    )

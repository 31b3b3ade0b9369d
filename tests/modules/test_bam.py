"""BAM as a whole: finite differences, reference vs numpy, float32, state_dict, attention."""

import itertools

import numpy as np
import pytest
from helpers import random_module

import minattn
from minattn import BAM, gradcheck, rel_error


def close(a, b, rtol):
    """max |a - b| relative to the largest entry of b (at least 1e-3: zero gradients)."""
    return np.abs(a - b).max() <= rtol * max(np.abs(b).max(), 1e-3)


CONFIGS = [
    dict(ds=ds, interpolation=interp, use_gamma=g)
    for ds, interp, g in itertools.product((1, 2, 4), ("nearest", "bilinear"), (False, True))
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_backward_matches_finite_differences(cfg):
    bam = random_module(8, key_channels=3, seed=1, **{k: v for k, v in cfg.items()})
    x = np.random.default_rng(2).standard_normal((2, 8, 8, 12))  # batch 2, H != W
    report = gradcheck(bam, x)
    assert report.ok, str(report)
    assert {r.name for r in report.rows} == {"x", *bam.params}
    assert all(r.checked == np.prod(r.shape) for r in report.rows)  # every entry checked
    assert report.max_rel < 1e-7


def test_default_key_channels_is_in_dim_over_8():
    bam = random_module(16, ds=2, seed=3)
    assert bam.key_channels == 2
    assert bam.state_dict()["query_conv.weight"].shape == (2, 16, 1, 1)
    x = np.random.default_rng(0).standard_normal((1, 16, 4, 6))
    report = gradcheck(bam, x)
    assert report.ok, str(report)


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: "-".join(map(str, c.values())))
def test_reference_and_numpy_backends_agree(cfg):
    rng = np.random.default_rng(4)
    fast = random_module(8, key_channels=3, seed=5, **cfg)
    slow = random_module(8, key_channels=3, seed=5, backend="reference", **cfg)
    x = rng.standard_normal((2, 8, 4, 8))
    y_fast, y_slow = fast.forward(x), slow.forward(x)
    assert close(y_fast, y_slow, 1e-10)
    assert close(fast.attention, slow.attention, 1e-10)
    dy = rng.standard_normal(x.shape)
    assert close(fast.backward(dy), slow.backward(dy), 1e-10)
    for name in fast.grads:
        assert close(fast.grads[name], slow.grads[name], 1e-10), name


def test_float32_forward_agrees_with_float64():
    x64 = np.random.default_rng(6).standard_normal((2, 16, 8, 8))
    m64 = random_module(16, 2, seed=7)
    m32 = BAM(16, 2, dtype=np.float32)
    m32.load_state_dict(m64.state_dict())
    y64, y32 = m64.forward(x64), m32.forward(x64.astype(np.float32))
    assert y32.dtype == np.float32
    assert all(p.dtype == np.float32 for p in m32.params.values())
    assert np.abs(y32 - y64).max() / np.abs(y64).max() < 1e-5
    dy = np.random.default_rng(8).standard_normal(x64.shape)
    dx64, dx32 = m64.backward(dy), m32.backward(dy.astype(np.float32))
    assert np.abs(dx32 - dx64).max() / np.abs(dx64).max() < 1e-5


def test_gamma_scales_the_attention_branch():
    x = np.random.default_rng(9).standard_normal((1, 8, 4, 4))
    plain = random_module(8, 2, seed=1)
    gated = random_module(8, 2, seed=1, use_gamma=True, gamma=0.25)
    branch = plain.forward(x) - x
    np.testing.assert_allclose(gated.forward(x) - x, 0.25 * branch, rtol=1e-12, atol=1e-14)


def test_state_dict_names_shapes_and_copies():
    bam = BAM(16, 4, key_channels=3, seed=0)
    sd = bam.state_dict()
    assert {k: v.shape for k, v in sd.items()} == {
        "query_conv.weight": (3, 16, 1, 1),
        "query_conv.bias": (3,),
        "key_conv.weight": (3, 16, 1, 1),
        "key_conv.bias": (3,),
        "value_conv.weight": (16, 16, 1, 1),
        "value_conv.bias": (16,),
        "gamma": (1,),
    }
    sd["value_conv.bias"][:] = 123.0  # a copy: the module must not change
    assert not np.any(bam.params["value_conv.bias"] == 123.0)
    other = BAM(16, 4, key_channels=3, seed=1)
    other.load_state_dict(bam.state_dict())
    x = np.random.default_rng(0).standard_normal((1, 16, 8, 8))
    np.testing.assert_array_equal(other.forward(x), bam.forward(x))


def test_default_init_follows_pytorch_conv2d():
    C = 64
    sd = BAM(C, seed=0).state_dict()
    bound = 1 / np.sqrt(C)
    for name in ("query_conv.weight", "key_conv.weight", "value_conv.weight", "value_conv.bias"):
        v = sd[name]
        assert np.abs(v).max() <= bound
        # uniform on [-b, b]: the standard deviation is b / sqrt(3)
        assert abs(v.std() - bound / np.sqrt(3)) < 0.1 * bound
    assert sd["gamma"].tolist() == [0.0]


def test_same_seed_same_parameters():
    a, b, c = BAM(16, seed=3), BAM(16, seed=3), BAM(16, seed=4)
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
    assert not np.array_equal(a.params["value_conv.weight"], c.params["value_conv.weight"])


def test_attention_rows_sum_to_one_and_match_attention_maps():
    bam = random_module(8, 2, seed=2)
    x = np.random.default_rng(1).standard_normal((2, 8, 6, 8))
    bam.forward(x)
    A = bam.attention
    assert A.shape == (2, 12, 12)
    np.testing.assert_allclose(A.sum(-1), 1.0)
    queries = [(0, 0), (5, 7), (3, 2)]
    maps = bam.attention_maps(x, queries)
    assert maps.shape == (2, 3, 3, 4)
    for q, (r, c) in enumerate(queries):
        row = (r // 2) * 4 + c // 2
        np.testing.assert_allclose(maps[:, q].reshape(2, -1), A[:, row], rtol=1e-12)


def test_call_is_forward_and_inputs_are_not_modified():
    bam = random_module(8, 2, seed=0)
    x = np.random.default_rng(0).standard_normal((1, 8, 4, 4))
    x_copy = x.copy()
    y = bam(x)
    dy = np.ones_like(y)
    dy_copy = dy.copy()
    bam.backward(dy)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(dy, dy_copy)


def test_trace_sees_every_step_in_order():
    names = []
    random_module(8, 2).forward(np.zeros((1, 8, 4, 4)), trace=lambda n, a: names.append(n))
    steps = [n.split(":")[0] for n in names if n.startswith("step")]
    assert steps == ["step 1"] * 3 + ["step 2"] * 3 + ["step 3", "step 4", "step 3", "step 5"] + [
        "step 6",
        "step 7",
    ]
    assert names[0] == "x" and names[1].startswith("pool") and names[-1] == "y"
    assert names[-3] == "resize (upsample_forward#1)"
    # every step's name carries its function's name, for compare_steps
    assert names[8] == "step 3: energy (energy_forward#1)"


def test_trace_of_the_numba_backend_names_the_fused_kernel(numba_kernels):
    names = []
    bam = random_module(8, 2, backend="numba")
    bam.forward(np.zeros((1, 8, 4, 4)), trace=lambda n, a: names.append(n))
    assert "steps 3-5: streaming attention (fused_attention_forward#1)" in names
    assert not any("softmax" in n for n in names)


def test_rel_error_definition():
    assert rel_error(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert rel_error(np.array([1.0]), np.array([3.0])) == pytest.approx(0.5)
    assert rel_error(np.array([0.0]), np.array([0.0])) == 0.0


def test_public_api():
    for name in ("BAM", "gradcheck", "numerical_gradient", "rel_error"):
        assert hasattr(minattn, name)

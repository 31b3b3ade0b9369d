"""Properties of BAM over random shapes, ds, dtypes, modes and backends (hypothesis).

The "ci" profile (the default) runs a fixed number of derandomised examples, so CI
time is bounded and a failure reproduces; HYPOTHESIS_PROFILE=dev explores more.
"""

import os

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minattn import BAM, gradcheck
from minattn.backend import BACKENDS, FAST_BACKENDS

settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@st.composite
def configs(draw, dtypes=(np.float32, np.float64), ds_choices=(1, 2, 3)):
    """A random module configuration and a matching input x."""
    ds = draw(st.sampled_from(ds_choices))
    C = draw(st.sampled_from((8, 12, 16)))
    cfg = dict(
        in_dim=C,
        ds=ds,
        key_channels=draw(st.sampled_from((None, 1, 3))),
        interpolation=draw(st.sampled_from(("nearest", "bilinear"))),
        use_gamma=draw(st.booleans()),
        dtype=draw(st.sampled_from(dtypes)),
        seed=draw(st.integers(0, 2**16)),
    )
    B, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    rng = np.random.default_rng(cfg["seed"])
    x = rng.standard_normal((B, C, h * ds, w * ds)).astype(cfg["dtype"])
    gamma = draw(st.floats(0.2, 1.5))
    return cfg, x, gamma


def build(cfg, gamma, backend="numpy"):
    bam = BAM(**cfg, backend=backend)
    bam.params["gamma"] = np.array([gamma], dtype=bam.dtype)  # non-zero: the branch is live
    return bam


def scale_of(a):
    return max(float(np.abs(a).max()), 1e-3)


@given(configs())
def test_output_shape_dtype_and_all_backends_agree(case):
    cfg, x, gamma = case
    tol = 1e-10 if cfg["dtype"] == np.float64 else 2e-5
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(x.dtype)
    results = []
    for backend in BACKENDS:
        bam = build(cfg, gamma, backend)
        y = bam.forward(x)
        assert y.shape == x.shape and y.dtype == x.dtype
        dx = bam.backward(dy)
        assert dx.shape == x.shape and dx.dtype == x.dtype
        results.append((y, dx, bam.grads))
    y0, dx0, g0 = results[1]  # numpy
    for y, dx, g in results[::2]:  # reference and numba
        assert np.abs(y - y0).max() <= tol * scale_of(y0)
        assert np.abs(dx - dx0).max() <= tol * scale_of(dx0)
        for k in g0:
            assert np.abs(g[k] - g0[k]).max() <= tol * max(scale_of(g0[k]), scale_of(dx0)), k


@given(configs(dtypes=(np.float64,)), st.sampled_from(FAST_BACKENDS))
def test_gradients_match_finite_differences(case, backend):
    cfg, x, gamma = case
    report = gradcheck(build(cfg, gamma, backend), x, max_elements=12)
    assert report.ok, str(report)


@given(configs(dtypes=(np.float64,), ds_choices=(1,)), st.sampled_from(FAST_BACKENDS))
def test_permuting_pixels_permutes_the_output(case, backend):
    """With ds = 1 every pixel is a token: attention does not know where pixels are."""
    cfg, x, gamma = case
    B, C, H, W = x.shape
    perm = np.random.default_rng(cfg["seed"]).permutation(H * W)

    def permute(a):
        return a.reshape(B, C, H * W)[:, :, perm].reshape(B, C, H, W)

    bam = build(cfg, gamma, backend)
    np.testing.assert_allclose(bam.forward(permute(x)), permute(bam.forward(x)), rtol=1e-10)


@given(configs(dtypes=(np.float64,)), st.sampled_from(BACKENDS[1:]))
def test_gamma_zero_gives_identity_and_no_parameter_gradients(case, backend):
    cfg, x, _ = case
    cfg = {**cfg, "use_gamma": True}
    bam = build(cfg, 0.0, backend)
    np.testing.assert_array_equal(bam.forward(x), x)
    dy = np.random.default_rng(2).standard_normal(x.shape)
    np.testing.assert_array_equal(bam.backward(dy), dy)
    for name, g in bam.grads.items():
        if name != "gamma":
            assert not g.any(), name
    assert bam.grads["gamma"].any()  # gamma itself still learns


@given(configs(dtypes=(np.float64,)), st.floats(-3, 3), st.sampled_from(BACKENDS[1:]))
def test_shifting_every_key_changes_nothing(case, shift, backend):
    """Adding c to each key bias adds q_i . c to row i of the energy: the softmax ignores it."""
    cfg, x, gamma = case
    bam = build(cfg, gamma, backend)
    y = bam.forward(x)
    bam.backward(np.random.default_rng(3).standard_normal(x.shape))
    dx_scale = scale_of(bam.grads["query_conv.weight"]) + 1.0
    assert np.abs(bam.grads["key_conv.bias"]).max() <= 1e-12 * dx_scale
    shifted = bam.state_dict()
    shifted["key_conv.bias"] = shifted["key_conv.bias"] + shift
    bam.load_state_dict(shifted)
    np.testing.assert_allclose(bam.forward(x), y, rtol=1e-9, atol=1e-9 * scale_of(y))


@given(configs(), st.floats(-4, 4).filter(lambda c: abs(c) > 1e-3), st.sampled_from(BACKENDS[1:]))
def test_gradients_are_linear_in_the_upstream_gradient(case, c, backend):
    cfg, x, gamma = case
    tol = 1e-12 if cfg["dtype"] == np.float64 else 1e-5
    bam = build(cfg, gamma, backend)
    bam.forward(x)
    dy = np.random.default_rng(4).standard_normal(x.shape).astype(x.dtype)
    dx1 = bam.backward(dy)
    g1 = {k: v.copy() for k, v in bam.grads.items()}
    dx2 = bam.backward((c * dy).astype(x.dtype))
    assert np.abs(dx2 - c * dx1).max() <= tol * scale_of(c * dx1)
    for k in g1:
        assert np.abs(bam.grads[k] - c * g1[k]).max() <= tol * max(scale_of(c * g1[k]), 1), k

"""gradcheck itself: it passes correct modules, and it catches plausible bugs."""

import warnings

import numpy as np
import pytest

from minattn import BAM, gradcheck, numerical_gradient, steps


def module(**kwargs):
    bam = BAM(8, 2, key_channels=2, seed=0, **kwargs)
    bam.params["gamma"] = np.array([0.6])
    return bam


X = np.random.default_rng(0).standard_normal((2, 8, 4, 6))


def test_numerical_gradient_of_a_known_function():
    x = np.array([[0.3, -1.2], [2.0, 0.5]])
    g = numerical_gradient(lambda v: np.sum(np.sin(v) * v), x)
    np.testing.assert_allclose(g, np.cos(x) * x + np.sin(x), rtol=1e-7, atol=1e-9)
    assert x.tolist() == [[0.3, -1.2], [2.0, 0.5]]  # not modified


def test_numerical_gradient_subset_leaves_nan_elsewhere():
    g = numerical_gradient(lambda v: np.sum(v**2), np.ones(4), indices=[1, 3])
    assert np.isnan(g[0]) and np.isnan(g[2])
    np.testing.assert_allclose(g[[1, 3]], 2.0)


def test_report_table_names_every_array():
    report = gradcheck(module(), X)
    text = str(report)
    assert report.ok and "overall: PASS" in text
    for name in ("x", "query_conv.weight", "key_conv.bias", "value_conv.weight", "gamma"):
        assert name in text
    assert "zero upstream gradient" in text and "second backward" in text


def test_max_elements_samples_entries():
    report = gradcheck(module(), X, max_elements=10)
    assert {r.name: r.checked for r in report.rows}["x"] == 10
    assert report.ok


def test_float32_warns_and_is_inconclusive_not_a_pass(monkeypatch):
    """In float32 a step of 1e-6 is below the rounding of the output: the check can't pass."""
    monkeypatch.setattr(steps, "scale_backward", lambda dout, cache: dout)  # a real bug
    bam = BAM(8, 2, key_channels=2, seed=0, dtype=np.float32)
    with pytest.warns(UserWarning, match="float64"):
        report = gradcheck(bam, X.astype(np.float32), max_elements=3)
    assert not report.ok
    assert "FAIL  finite differences resolve the gradients" in str(report)


# Each bug is a plausible mistake in one step's backward; gradcheck must flag it.
_residual_backward = steps.residual_backward

BUGS = {
    "softmax without the row-sum term": (
        "softmax_backward",
        lambda dout, cache: cache * dout,
    ),
    "energy gradient transposed": (
        "energy_backward",
        lambda dout, cache: (cache[1] @ dout, cache[0] @ dout.transpose(0, 2, 1)),
    ),
    "scale forgotten in backward": ("scale_backward", lambda dout, cache: dout),
    "residual path forgotten": (
        "residual_backward",
        lambda dout, cache: (np.zeros_like(dout),) + _residual_backward(dout, cache)[1:],
    ),
}


@pytest.mark.parametrize("bug", BUGS)
def test_gradcheck_catches_bug(bug, monkeypatch):
    name, wrong = BUGS[bug]
    monkeypatch.setattr(steps, name, wrong)
    report = gradcheck(module(use_gamma=True), X)
    assert not report.ok, f"gradcheck missed: {bug}\n{report}"


def test_gradcheck_catches_a_broken_backward_state():
    """A backward that accumulates into stale gradients fails the second-backward check."""
    bam = module()
    original = bam.backward
    calls = []

    def leaky_backward(dy):
        dx = original(dy)
        calls.append(1)
        return dx * len(calls)

    bam.backward = leaky_backward
    report = gradcheck(bam, X, max_elements=5)
    assert not report.ok


def test_gamma_zero_makes_the_check_vacuous_for_the_branch():
    """With gamma = 0 the attention branch is cut off: its parameter gradients are all zero,
    so even a broken branch 'passes'. This is why checks use random non-zero gamma."""
    bam = BAM(8, 2, key_channels=2, seed=0, use_gamma=True)  # gamma starts at 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = gradcheck(bam, X)
    rows = {r.name: r for r in report.rows}
    assert report.ok
    assert rows["query_conv.weight"].analytic == 0.0 and rows["value_conv.weight"].analytic == 0.0
    assert "query_conv.weight" in report.vacuous and "key_conv.bias" in report.vacuous
    assert "gamma" not in report.vacuous and "x" not in report.vacuous
    assert "proves nothing" in str(report)


def test_a_live_module_has_no_vacuous_rows():
    """The key bias gradient is zero in theory, but its numeric estimate is noise, not 0."""
    assert module(use_gamma=True).params["gamma"][0] != 0
    assert gradcheck(module(use_gamma=True), X).vacuous == []


def test_large_loss_does_not_swamp_the_check():
    """x from default_rng(0), as users write it, and a large output: the loss sum(y * dy) is
    ~1e6, whose rounding would exceed the resolution without the centring on y0."""
    bam = BAM(64, 8, seed=0)
    x = 10 * np.random.default_rng(0).standard_normal((2, 64, 32, 32))
    report = gradcheck(bam, x, max_elements=20)
    assert report.ok, str(report)

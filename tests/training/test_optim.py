"""minattn.optim: SGD and Adam against torch.optim, by hand, in place, and their errors.

Against torch.optim: 25 steps on BAM (two configurations) and on DANet's position and
channel modules, from the same weights and data; every step's loss and the final
parameters agree to 1e-9 relative (float64).
"""

import numpy as np
import pytest
from helpers import random_module

import minattn
from minattn import losses, optim

STEPS = 25
RTOL = 1e-9


class Quadratic:
    """L = 0.5 * sum(a * p^2): gradient a * p, the smallest module there is."""

    def __init__(self, p, a, dtype=np.float64):
        self.params = {"p": np.array(p, dtype=dtype)}
        self.a = np.array(a, dtype=dtype)
        self.grads = {}

    def loss(self):
        p = self.params["p"]
        self.grads = {"p": self.a * p}
        return 0.5 * float(np.sum(self.a * p * p))


# ---------------------------------------------------------------- by hand, no torch


def test_sgd_momentum_by_hand():
    # p0 = 1, gradient p: the buffer starts at the first gradient (not at zero), then
    # b <- 0.5 b + g; p <- p - 0.1 b
    q = Quadratic([1.0], [1.0])
    opt = optim.SGD(q, lr=0.1, momentum=0.5)
    q.loss()
    opt.step()  # b = 1, p = 0.9
    assert q.params["p"][0] == pytest.approx(0.9, abs=1e-15)
    q.loss()
    opt.step()  # b = 0.5 + 0.9 = 1.4, p = 0.9 - 0.14 = 0.76
    assert q.params["p"][0] == pytest.approx(0.76, abs=1e-15)


def test_adam_first_step_is_lr_times_sign():
    # after bias correction, m / sqrt(v) = g / |g| at step 1, whatever the gradient's size
    q = Quadratic([3.0, -2.0, 1e-3], [1.0, 10.0, 1.0])
    opt = optim.Adam(q, lr=0.01, eps=0.0)
    q.loss()
    opt.step()
    np.testing.assert_allclose(q.params["p"], [2.99, -1.99, 1e-3 - 0.01], rtol=1e-12)


def test_weight_decay_is_added_to_the_gradient():
    # with a zero gradient, SGD's weight decay alone shrinks p by lr * wd * p
    q = Quadratic([2.0], [0.0])
    opt = optim.SGD(q, lr=0.5, weight_decay=0.1)
    q.loss()
    opt.step()
    assert q.params["p"][0] == pytest.approx(2.0 - 0.5 * 0.1 * 2.0, abs=1e-15)


def test_updates_in_place_and_leaves_grads_alone():
    bam = random_module(C=8, ds=2, seed=3)
    live = dict(bam.params)  # the same array objects
    x = np.random.default_rng(0).standard_normal((1, 8, 4, 4))
    for opt in (optim.SGD(bam, lr=0.1, momentum=0.9, weight_decay=0.01), optim.Adam(bam)):
        before = {k: v.copy() for k, v in live.items()}
        bam.backward(bam.forward(x))  # L = 0.5 |y|^2
        grads = {k: v.copy() for k, v in bam.grads.items()}
        opt.step()
        for k in live:
            assert bam.params[k] is live[k], f"{k} was rebound, not updated in place"
            np.testing.assert_array_equal(bam.grads[k], grads[k])
        assert any(not np.array_equal(live[k], before[k]) for k in live)


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam])
def test_float32_parameters_stay_float32(cls):
    q = Quadratic([1.0, 2.0], [1.0, 3.0], dtype=np.float32)
    opt = cls(q, lr=0.1, weight_decay=0.01)
    for _ in range(3):
        q.loss()
        opt.step()
    assert q.params["p"].dtype == np.float32
    assert all(s[k].dtype == np.float32 for s in opt.state.values() for k in s if k != "step")


def test_a_none_gradient_is_skipped_as_torch_does():
    q = Quadratic([1.0], [1.0])
    opt = optim.SGD(q, lr=0.1, weight_decay=0.5)
    q.grads = {"p": None}
    opt.step()
    assert q.params["p"][0] == 1.0


# ---------------------------------------------------------------- against torch.optim


def module_pair(kind, torch):
    """(minattn module, torch module) with the same random non-zero weights, float64."""
    from article_bam import ArticleBAM, GammaBAM, with_key_channels
    from originals import DANetChannelAttention, DANetPositionAttention

    if kind == "BAM":  # the article's BAM: gamma unused, left at its initial 0
        ours = random_module(C=16, ds=2, seed=1, gamma=0.0)
        theirs = ArticleBAM(16, 2)
    elif kind == "BAM(use_gamma, key_channels=3)":
        ours = random_module(C=16, ds=2, seed=2, gamma=0.7, key_channels=3, use_gamma=True)
        theirs = with_key_channels(GammaBAM(16, 2), 3)
    elif kind == "PositionAttention":
        ours, theirs = minattn.PositionAttention(16, seed=3), DANetPositionAttention(16)
    elif kind == "ChannelAttention":
        ours, theirs = minattn.ChannelAttention(16), DANetChannelAttention(16)
    else:
        raise ValueError(kind)
    if kind in ("PositionAttention", "ChannelAttention"):
        # gamma starts at 0, which would cut the attention branch off the loss
        ours.params["gamma"][...] = 0.3
    theirs = theirs.double()
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    return ours, theirs


OPTIMISERS = {
    "SGD": dict(lr=0.05),
    "SGD(momentum, weight_decay)": dict(lr=0.05, momentum=0.9, weight_decay=1e-2),
    "SGD(nesterov)": dict(lr=0.05, momentum=0.8, nesterov=True),
    "SGD(dampening)": dict(lr=0.05, momentum=0.9, dampening=0.3),
    "Adam": dict(lr=1e-2),
    "Adam(betas, eps, weight_decay)": dict(lr=3e-2, betas=(0.8, 0.95), eps=1e-3, weight_decay=1e-2),
}


MODULES = ["BAM", "BAM(use_gamma, key_channels=3)", "PositionAttention", "ChannelAttention"]
# every module with the two optimisers in full; BAM also with every other variant
CASES = [(kind, opt) for kind in MODULES for opt in OPTIMISERS if "weight_decay" in opt] + [
    ("BAM", opt) for opt in OPTIMISERS if "weight_decay" not in opt
]


@pytest.mark.parametrize("kind,opt_name", CASES)
def test_matches_torch_optim_for_25_steps(kind, opt_name):
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle")
    import torch.nn.functional as F

    ours, theirs = module_pair(kind, torch)
    kwargs = OPTIMISERS[opt_name]
    name = opt_name.split("(")[0]
    opt = getattr(optim, name)(ours, **kwargs)
    topt = getattr(torch.optim, name)(theirs.parameters(), **kwargs)
    rng = np.random.default_rng(5)
    # ChannelAttention's energies sum over all pixels: keep x small enough that its softmax
    # is not one-hot, or gamma's gradient would be all there is to compare
    x = rng.standard_normal((2, 16, 8, 8)) * (0.1 if kind == "ChannelAttention" else 1.0)
    target = rng.standard_normal((2, 16, 8, 8))
    xt, tt = torch.from_numpy(x), torch.from_numpy(target)
    history = []
    for step in range(STEPS):
        loss, dy = losses.mse_loss(ours.forward(x), target)
        ours.backward(dy)
        opt.step()
        topt.zero_grad()
        tloss = F.mse_loss(theirs(xt), tt)
        tloss.backward()
        topt.step()
        assert abs(loss - tloss.item()) <= RTOL * abs(tloss.item()), f"loss at step {step}"
        history.append(loss)
    assert history[-1] < history[0]  # it learns, so the comparison is not of two idle runs
    for k, p in theirs.state_dict().items():
        p = p.numpy()
        err = np.abs(ours.params[k] - p).max() / max(np.abs(p).max(), 1e-12)
        assert err <= RTOL, f"{k}: relative error {err:.1e} after {STEPS} steps"


def test_float32_follows_torch_float32():
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle")
    import torch.nn.functional as F
    from article_bam import ArticleBAM

    ours = minattn.BAM(16, 2, seed=4, dtype=np.float32)
    theirs = ArticleBAM(16, 2)
    theirs.load_state_dict({k: torch.from_numpy(v) for k, v in ours.state_dict().items()})
    opt, topt = optim.Adam(ours, lr=1e-2), torch.optim.Adam(theirs.parameters(), lr=1e-2)
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    target = rng.standard_normal((2, 16, 8, 8)).astype(np.float32)
    for _ in range(5):
        ours.backward(losses.mse_loss(ours.forward(x), target)[1])
        opt.step()
        topt.zero_grad()
        F.mse_loss(theirs(torch.from_numpy(x)), torch.from_numpy(target)).backward()
        topt.step()
    for k, p in theirs.state_dict().items():
        assert ours.params[k].dtype == np.float32
        if k == "key_conv.bias":
            # its gradient is zero in exact arithmetic (softmax ignores a constant added to a
            # row of energies); in float32 its rounding noise is ~1e-8, the size of eps, and
            # Adam divides it by its own size: both libraries take steps of random sign
            continue
        np.testing.assert_allclose(ours.params[k], p.numpy(), rtol=1e-4, atol=1e-5, err_msg=k)


# ---------------------------------------------------------------- errors


def test_errors_name_the_argument():
    q = Quadratic([1.0], [1.0])
    with pytest.raises(TypeError, match="module must have a dict attribute 'params'"):
        optim.SGD(object())
    with pytest.raises(TypeError, match="lr must be a finite number"):
        optim.SGD(q, lr="0.1")
    with pytest.raises(ValueError, match="lr must be in >= 0"):
        optim.Adam(q, lr=-1.0)
    with pytest.raises(ValueError, match=r"betas\[1\] must be in \[0.0, 1.0\)"):
        optim.Adam(q, betas=(0.9, 1.0))
    with pytest.raises(TypeError, match="betas must be a pair"):
        optim.Adam(q, betas=0.9)
    with pytest.raises(ValueError, match="nesterov=True needs momentum > 0"):
        optim.SGD(q, nesterov=True)
    opt = optim.SGD(q)
    with pytest.raises(ValueError, match=r"module.grads has no entry for \['p'\]"):
        opt.step()
    q.grads = {"p": np.ones(3)}
    with pytest.raises(ValueError, match=r"grads\['p'\] must be an array of shape \(1,\)"):
        opt.step()
    q.grads = {"p": np.ones(1, np.float32)}
    with pytest.raises(TypeError, match="expected the parameter's float64"):
        opt.step()
    q.params["extra"] = np.ones(1)
    with pytest.raises(ValueError, match="parameters changed since the optimiser was built"):
        opt.step()

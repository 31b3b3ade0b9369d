"""minattn against the article's PyTorch module (tests/oracles/article_bam.py), in float64.

Weights go both ways through state_dict: torch -> minattn and minattn -> torch.
Skipped, with the reason shown, only when torch is not installed (CI installs it).
"""

import numpy as np
import pytest

import minattn

torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle is optional")
from article_bam import ArticleBAM, BilinearBAM, GammaBAM, with_key_channels  # noqa: E402

RTOL = 1e-10


def assert_close(ours, theirs, name):
    theirs = theirs.detach().numpy() if hasattr(theirs, "detach") else theirs
    scale = max(np.abs(theirs).max(), 1e-3)  # zero gradients (key bias) compare absolutely
    err = np.abs(ours - theirs).max() / scale
    assert err < RTOL, f"{name}: max error {err:.2e} relative to {scale:.2e}"


def torch_module(cls, C, ds, key_channels=None, seed=0, gamma=0.0):
    torch.manual_seed(seed)
    module = cls(C, ds).double()
    if key_channels is not None:
        with_key_channels(module, key_channels)
    with torch.no_grad():
        for p in module.parameters():  # random non-zero everywhere, biases included
            p.uniform_(-0.6, 0.6)
        module.gamma.fill_(gamma)
    return module


def compare(tmod, ours, x, seed=1):
    """Forward, dx and every parameter gradient of ``tmod`` and ``ours`` on x."""
    dy = np.random.default_rng(seed).standard_normal(x.shape)
    xt = torch.tensor(x, requires_grad=True)
    yt = tmod(xt)
    yt.backward(torch.tensor(dy))
    y = ours.forward(x)
    dx = ours.backward(dy)
    assert_close(y, yt, "output")
    assert_close(dx, xt.grad, "dx")
    grads = dict(tmod.named_parameters())
    assert set(grads) == set(ours.grads)
    for name, p in grads.items():
        if p.grad is None:  # unused by torch's graph (the article's gamma): ours must be zero
            assert not ours.grads[name].any(), name
        else:
            assert_close(ours.grads[name], p.grad, f"grad {name}")


SHAPES = [(1, 16, 8, 8, 1), (2, 16, 8, 12, 2), (2, 32, 16, 16, 4), (1, 16, 16, 24, 8)]


@pytest.mark.parametrize("backend", ["numpy", "reference"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_article_module_torch_to_minattn(shape, backend):
    B, C, H, W, ds = shape
    if backend == "reference" and (H // ds) * (W // ds) * C > 1024:
        shape = (1, 16, 8, 8, ds)  # the reference is slow; keep it small but same ds
        B, C, H, W, ds = shape
    tmod = torch_module(ArticleBAM, C, ds)
    ours = minattn.BAM(C, ds, backend=backend)
    ours.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((B, C, H, W))
    compare(tmod, ours, x)


def test_article_module_minattn_to_torch():
    ours = minattn.BAM(16, 2, seed=3)
    sd = ours.state_dict()
    for v in sd.values():
        v += np.random.default_rng(0).uniform(-0.3, 0.3, v.shape)  # biases non-zero too
    ours.load_state_dict(sd)
    tmod = ArticleBAM(16, 2).double()
    tmod.load_state_dict({k: torch.tensor(v) for k, v in ours.state_dict().items()})
    compare(tmod, ours, np.random.default_rng(1).standard_normal((2, 16, 6, 10)))


@pytest.mark.parametrize("ds", [1, 2, 4])
def test_bilinear_matches_interpolate_align_corners_false(ds):
    tmod = torch_module(BilinearBAM, 16, ds, seed=2)
    ours = minattn.BAM(16, ds, interpolation="bilinear")
    ours.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    compare(tmod, ours, np.random.default_rng(2).standard_normal((2, 16, 8, 12)))


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_resize_matches_interpolate_directly(interpolation):
    import torch.nn.functional as F

    from minattn import resize

    x = np.random.default_rng(3).standard_normal((2, 3, 5, 7))
    for ds in (2, 3, 8):
        ours, _ = resize.upsample_forward(x, ds, interpolation)
        kwargs = {"mode": "bilinear", "align_corners": False} if interpolation == "bilinear" else {}
        theirs = F.interpolate(torch.tensor(x), [5 * ds, 7 * ds], **kwargs)
        assert_close(ours, theirs, f"{interpolation} ds={ds}")


def test_gamma_mode_matches_sagan_style():
    tmod = torch_module(GammaBAM, 16, 2, seed=4, gamma=0.7)
    ours = minattn.BAM(16, 2, use_gamma=True)
    ours.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    compare(tmod, ours, np.random.default_rng(4).standard_normal((2, 16, 8, 8)))


def test_key_channels_other_than_in_dim_over_8():
    tmod = torch_module(ArticleBAM, 16, 2, key_channels=5, seed=5)
    ours = minattn.BAM(16, 2, key_channels=5)
    ours.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    compare(tmod, ours, np.random.default_rng(5).standard_normal((2, 16, 4, 8)))


def test_default_init_has_pytorch_bounds_and_the_article_attention():
    tmod = ArticleBAM(32, 4).double()
    ours = minattn.BAM(32, 4, seed=0)
    for name, p in tmod.state_dict().items():
        assert p.shape == ours.params[name].shape, name
        if name != "gamma":  # same distribution: both fill +-1/sqrt(fan_in)
            bound = 1 / np.sqrt(32)
            assert abs(p.abs().max().item()) <= bound and np.abs(ours.params[name]).max() <= bound
    ours.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
    x = np.random.default_rng(6).standard_normal((1, 32, 16, 16))
    ours.forward(x)
    with torch.no_grad():
        xt = tmod.pool(torch.tensor(x))
        q = tmod.query_conv(xt).flatten(2).permute(0, 2, 1)
        k = tmod.key_conv(xt).flatten(2)
        attention = torch.softmax(tmod.key_channel**-0.5 * torch.bmm(q, k), dim=-1)
    assert_close(ours.attention, attention, "attention")

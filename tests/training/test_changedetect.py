"""Change detection: the data set, the model's gradients, parity with PyTorch, training."""

import json

import numpy as np
import pytest

import minattn
from minattn.apps.cli import main
from minattn.training.changedetect import (
    attention,
    controls,
    data,
    experiment,
    loop,
    metrics,
    model,
    weights,
)
from minattn.training.changedetect.config import Config
from minattn.training.changedetect.model import ChangeDetector

# ---------------------------------------------------------------- the data set


def test_generator_is_deterministic_and_seeded():
    a = data.make_pairs(3, seed=5, size=32)
    b = data.make_pairs(3, seed=5, size=32)
    c = data.make_pairs(3, seed=6, size=32)
    for field in ("image1", "image2", "mask", "season"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.photos == b.photos
    assert not np.array_equal(a.image1, c.image1)
    assert a.image1.shape == (3, 32, 32, 3) and a.mask.shape == (3, 32, 32)
    assert a.mask.dtype == bool and 0 <= a.image1.min() and a.image2.max() <= 1


def test_train_and_heldout_come_from_different_photographs():
    assert not set(data.TRAIN_PHOTOS) & set(data.HELDOUT_PHOTOS)
    train_pairs = data.make_pairs(12, split="train", seed=0, size=32)
    held = data.make_pairs(12, split="heldout", seed=0, size=32)
    assert set(train_pairs.photos) <= set(data.TRAIN_PHOTOS)
    assert set(held.photos) <= set(data.HELDOUT_PHOTOS)


def test_outside_the_changes_view_2_is_the_season_of_view_1():
    # without noise, unchanged pixels follow the pair's one colour transform exactly; changed
    # pixels follow another one, which moves their colours visibly
    p = data.make_pairs(6, seed=1, size=48, noise=(0.0, 0.0))
    for i in range(len(p)):
        gain, offset = p.season[i]
        seasonal = np.clip(p.image1[i] * gain + offset, 0, 1)
        unchanged, changed = ~p.mask[i], p.mask[i]
        np.testing.assert_allclose(p.image2[i][unchanged], seasonal[unchanged], atol=1e-12)
        assert changed.mean() > 0.05  # every pair has a large change
        assert np.abs(p.image2[i] - seasonal).max(axis=-1)[changed].mean() > 0.05


def test_a_change_looks_locally_like_the_season():
    # the colour shift inside a change is as large as the season's: its size alone cannot
    # tell a changed pixel from an unchanged one
    p = data.make_pairs(64, seed=2, size=48)
    shift = np.abs(p.image2 - p.image1).mean(axis=-1)
    inside, outside = shift[p.mask].mean(), shift[~p.mask].mean()
    assert 0.7 < inside / outside < 1.4, (inside, outside)


def test_deciders_are_the_unchanged_pixels_of_the_own_view():
    p = data.make_pairs(2, seed=3, size=32)
    for view in (0, 1):
        d = p.deciders(1, view)
        assert d.shape == (32, 64)
        np.testing.assert_array_equal(d[:, 32 * view : 32 * (view + 1)], ~p.mask[1])
        assert not d[:, 32 * (1 - view) : 32 * (2 - view)].any()


def test_features_are_local_with_a_time_channel():
    p = data.make_pairs(2, seed=0, size=32)
    f1, f2 = p.features(channels=8)
    assert f1.shape == f2.shape == (2, 8, 32, 32)
    assert np.all(f1[:, -1] == 1) and np.all(f2[:, -1] == -1)
    np.testing.assert_array_equal(f2[1], data.view_features(p.image2[1], 1, 8))
    # a change in one corner leaves the features of the far corner exactly as they were
    # (the smoothing reaches a few pixels: a CNN's first layer, not a global statistic)
    image = p.image1[0].copy()
    image[:4, :4] = 1 - image[:4, :4]
    far = data.view_features(image, 0, 8)[:, 16:, 16:]
    np.testing.assert_allclose(far, f1[0][:, 16:, 16:], atol=1e-6)


# ---------------------------------------------------------------- the model


def randomised(m, seed=0):
    """Random non-zero parameters everywhere (STANet's 0.02 weights would hide errors)."""
    rng = np.random.default_rng(seed)
    for v in m.params.values():
        v[...] = rng.uniform(-0.8, 0.8, v.shape)
    return m


MODES = [(None, 2, 8), ("pool", 2, 8), ("local", 2, 8), ("BAM", 2, 8), ("PAM", 1, 8)]


@pytest.mark.parametrize("mode,ds,H", MODES, ids=lambda v: str(v))
def test_model_gradients_by_finite_differences(mode, ds, H):
    m = randomised(ChangeDetector(4, 8, mode=mode, ds=ds, seed=1))
    x1, x2 = np.random.default_rng(2).standard_normal((2, 2, 4, H, H))
    report = minattn.gradcheck(m, (x1, x2), max_elements=40 if mode == "PAM" else None)
    assert report.ok, str(report)


def test_convolution_matches_torch_conv2d():
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle")
    import torch.nn.functional as F

    rng = np.random.default_rng(12)
    x, w, b = (
        rng.standard_normal((2, 3, 5, 6)),
        rng.standard_normal((4, 3, 3, 3)),
        rng.standard_normal(4),
    )
    dout = rng.standard_normal((2, 4, 5, 6))
    out, cache = controls.conv_forward(x, w, b)
    dx, dw, db = controls.conv_backward(dout, cache)
    tx, tw, tb = (torch.tensor(v, requires_grad=True) for v in (x, w, b))
    tout = F.conv2d(tx, tw, tb, padding=1)
    tout.backward(torch.from_numpy(dout))
    for ours, theirs in ((out, tout), (dx, tx.grad), (dw, tw.grad), (db, tb.grad)):
        np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)


def test_local_control_sees_its_window_and_nothing_further():
    m = randomised(ChangeDetector(4, 8, mode="local", ds=2, seed=1))
    x1, x2 = np.random.default_rng(13).standard_normal((2, 1, 4, 16, 16))
    d = m.forward(x1, x2)
    far = x1.copy()
    far[..., :2, :2] += 1.0  # pooled pixel (0, 0): a 3 x 3 window reaches pooled pixel (1, 1)
    changed = m.forward(far, x2) != d
    assert changed[0, :4, :4].all() and not changed[0, 4:, :].any() and not changed[0, :, 4:].any()
    p1, p2 = np.random.default_rng(14).standard_normal((2, 1, 8, 16, 16))  # CDSA's input
    other = p2 + 1.0  # view 2 changed everywhere: view 1's context must not see it
    np.testing.assert_array_equal(m.cdsa.forward(p1, other)[0], m.cdsa.forward(p1, p2)[0])


def test_distance_is_torch_pairwise_distance_over_channels():
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle")
    import torch.nn.functional as F

    a, b = np.random.default_rng(3).standard_normal((2, 2, 5, 3, 4))
    d, _ = model.distance_forward(a, b)
    # PyTorch's pairwise_distance works on the last dimension today: move channels there
    ta, tb = (torch.from_numpy(v).permute(0, 2, 3, 1) for v in (a, b))
    np.testing.assert_allclose(d, F.pairwise_distance(ta, tb).numpy(), rtol=1e-14)


@pytest.mark.parametrize("mode,ds,H", [m for m in MODES if m[0] in ("BAM", "PAM", None)],
                         ids=lambda v: str(v))  # fmt: skip
def test_model_matches_pytorch_port(mode, ds, H):
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle")
    from torch_ports import ChangeDetector as TorchChangeDetector
    from torch_ports import from_numpy_state

    m = randomised(ChangeDetector(4, 8, mode=mode, ds=ds, seed=1))
    tm = from_numpy_state(TorchChangeDetector(4, 8, mode=mode, ds=ds), m.state_dict())
    rng = np.random.default_rng(4)
    x1, x2 = rng.standard_normal((2, 2, 4, H, H))
    dd = rng.standard_normal((2, H, H))
    t1, t2 = (torch.tensor(v, requires_grad=True) for v in (x1, x2))
    dt = tm(t1, t2)
    dt.backward(torch.from_numpy(dd))
    d = m.forward(x1, x2)
    dx1, dx2 = m.backward(dd)

    def close(ours, theirs, what):
        theirs = theirs.detach().numpy()
        err = np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-3)
        assert err < 1e-10, f"{what}: {err:.1e}"

    close(d, dt, "distance")
    close(dx1, t1.grad, "dx1")
    close(dx2, t2.grad, "dx2")
    for k, p in tm.named_parameters():
        if p.grad is None:  # BAM's gamma takes no part: ours must be zero
            assert not m.grads[k].any(), k
        else:
            close(m.grads[k], p.grad, f"grads[{k}]")
    for k, b in tm.state_dict().items():  # PAM's running statistics moved the same way
        close(m.state_dict()[k], b, k)


def test_attention_maps_are_rows_of_the_attention():
    m = randomised(ChangeDetector(4, 8, mode="BAM", ds=2, seed=1), seed=5)
    x1, x2 = np.random.default_rng(6).standard_normal((2, 1, 4, 8, 8))
    maps = m.attention_maps(x1, x2, [(0, 0), (5, 11)])  # (1, 2, 4, 8): view 2 at col 11
    m.forward(x1, x2)
    A = m.cdsa.Self_Att.attention[0]  # (N, N) over the pooled pair (4 x 8)
    np.testing.assert_allclose(maps[0, 0].ravel(), A[0], rtol=1e-12)
    np.testing.assert_allclose(maps[0, 1].ravel(), A[2 * 8 + 5], rtol=1e-12)


class _LooksAtOneView:
    """A stand-in model whose every attention row is uniform over one view of the pair."""

    mode, backend, ds = "BAM", "numpy", 2

    def __init__(self, looks_at_own):
        self.looks_at_own = looks_at_own

    def attention_maps(self, x1, x2, queries):
        h, w = x1.shape[2] // self.ds, x1.shape[3] // self.ds
        maps = np.zeros((1, len(queries), h, 2 * w))
        for q, (_, c) in enumerate(queries):
            view = c // x1.shape[3] if self.looks_at_own else 1 - c // x1.shape[3]
            maps[0, q, :, view * w : (view + 1) * w] = 1 / (h * w)
        return maps


def test_attention_mass_on_the_own_or_the_other_view():
    pairs = data.make_pairs(3, size=16, seed=4)
    x1, x2 = pairs.features(8)
    for looks_at_own in (True, False):
        m = _LooksAtOneView(looks_at_own)
        own, uniform = attention.attention_mass(m, pairs, x1, x2)
        other, uniform_other = attention.attention_mass(m, pairs, x1, x2, view="other")
        # all of a row on one view, evenly: twice the uniform share there, none on the other
        looked, ignored = (own, other) if looks_at_own else (other, own)
        assert looked == pytest.approx(2 * uniform, rel=1e-12) and ignored == 0
        assert uniform_other == pytest.approx(uniform, rel=1e-12)
    # a real model with query and key at zero attends uniformly: both shares are chance's
    bam = ChangeDetector(8, 8, mode="BAM", ds=2, seed=1)
    for name in ("query_conv", "key_conv"):
        for p in ("weight", "bias"):
            bam.params[f"cdsa.Self_Att.{name}.{p}"][...] = 0.0
    for view in attention.VIEWS:
        share, uniform = attention.attention_mass(bam, pairs, x1, x2, view=view)
        assert share == pytest.approx(uniform, rel=1e-12) and 0.1 < uniform < 0.5
    with pytest.raises(ValueError, match="view must be one of 'own', 'other'; got 'both'"):
        attention.attention_mass(bam, pairs, x1, x2, view="both")


def test_pam_attention_maps_follow_the_pair_layout():
    # recompute PAM's 1 x 1 stage by hand on the side-by-side pair (eval mode BatchNorm)
    m = randomised(ChangeDetector(4, 8, mode="PAM", ds=1, seed=1), seed=7)
    for k, v in m.buffers.items():
        if k.endswith("running_var"):
            v[...] = 1.5
    x1, x2 = np.random.default_rng(8).standard_normal((2, 1, 4, 8, 8))
    before = {k: v.copy() for k, v in m.buffers.items()}
    maps = m.attention_maps(x1, x2, [(1, 2), (6, 13)])
    for k, v in before.items():
        np.testing.assert_array_equal(m.buffers[k], v)
    P, buf = m.params, m.buffers
    W, b = P["proj.weight"][:, :, 0, 0], P["proj.bias"]
    pair = np.concatenate([x1, x2], axis=3)[0]  # (4, 8, 16)
    feats = np.einsum("oc,chw->ohw", W, pair) + b[:, None, None]

    def conv_bn(name):
        s = "cdsa.Self_Att.stages.0." + name
        z = np.einsum("oc,chw->ohw", P[s + ".0.weight"][:, :, 0, 0], feats)
        z = z + P[s + ".0.bias"][:, None, None]
        mean, var = buf[s + ".1.running_mean"], buf[s + ".1.running_var"]
        z = (z - mean[:, None, None]) / np.sqrt(var[:, None, None] + 1e-5)
        return z * P[s + ".1.weight"][:, None, None] + P[s + ".1.bias"][:, None, None]

    q, k = conv_bn("f_query"), conv_bn("f_key")
    for i, (r, c) in enumerate([(1, 2), (6, 13)]):
        e = np.einsum("c,chw->hw", q[:, r, c], k) * q.shape[0] ** -0.5
        expected = np.exp(e - e.max()) / np.exp(e - e.max()).sum()
        np.testing.assert_allclose(maps[0, i], expected, rtol=1e-10)


def test_state_dict_round_trip_through_npz_and_into_torch(tmp_path):
    m = randomised(ChangeDetector(4, 8, mode="BAM", ds=2, seed=1))
    path = weights.save_weights(m, tmp_path / "w.npz")
    back = weights.load_weights(path, ds=2)
    x1, x2 = np.random.default_rng(9).standard_normal((2, 1, 4, 8, 8))
    np.testing.assert_array_equal(back.forward(x1, x2), m.forward(x1, x2))
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle")
    from torch_ports import ChangeDetector as TorchChangeDetector

    tm = TorchChangeDetector(4, 8, mode="BAM", ds=2).double()
    with np.load(path) as f:
        tm.load_state_dict({k: torch.from_numpy(f[k]) for k in f.files})  # strict
    d = tm(torch.from_numpy(x1), torch.from_numpy(x2)).detach().numpy()
    np.testing.assert_allclose(d, m.forward(x1, x2), rtol=1e-12)


def test_optimisers_step_the_submodules_own_arrays():
    m = ChangeDetector(4, 8, mode="BAM", ds=2, seed=1)
    inner = m.cdsa.Self_Att.params["query_conv.weight"]
    assert m.params["cdsa.Self_Att.query_conv.weight"] is inner
    before = inner.copy()
    x1, x2 = np.random.default_rng(10).standard_normal((2, 2, 4, 8, 8))
    changed = np.zeros((2, 8, 8), bool)
    changed[:, 2:5, 3:6] = True
    opt = minattn.optim.Adam(m, lr=0.1)
    m.loss(x1, x2, changed)
    opt.step()
    assert m.params["cdsa.Self_Att.query_conv.weight"] is inner
    assert not np.array_equal(inner, before)


# ---------------------------------------------------------------- training parity


@pytest.mark.parametrize("mode", ["BAM", "PAM", None])
def test_training_matches_pytorch_for_20_steps(mode):
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle")
    from torch_ports import BCL, from_numpy_state, stanet_label
    from torch_ports import ChangeDetector as TorchChangeDetector

    pairs = data.make_pairs(4, seed=3, size=32)
    x1, x2 = pairs.features(channels=8)
    m = ChangeDetector(8, 8, mode=mode, ds=4, seed=4)  # PAM: 8 x 8 regions of 1 x 1 pixels
    tm = from_numpy_state(TorchChangeDetector(8, 8, mode=mode, ds=4), m.state_dict())
    opt = minattn.optim.Adam(m, lr=1e-2)
    topt = torch.optim.Adam(tm.parameters(), lr=1e-2)
    bcl = BCL(loop.MARGIN)
    rng = np.random.default_rng(5)
    ours, theirs = [], []
    for _ in range(20):
        idx = rng.choice(4, size=2, replace=False)
        ours.append(m.loss(x1[idx], x2[idx], pairs.mask[idx], loop.MARGIN))
        opt.step()
        topt.zero_grad()
        t1, t2 = torch.from_numpy(x1[idx]), torch.from_numpy(x2[idx])
        loss = bcl(tm(t1, t2), stanet_label(pairs.mask[idx]))
        loss.backward()
        topt.step()
        theirs.append(loss.item())
    ours, theirs = np.array(ours), np.array(theirs)
    assert np.all(np.abs(ours - theirs) <= 1e-8 * np.abs(theirs)), np.abs(ours / theirs - 1).max()
    assert ours[-5:].mean() < ours[:5].mean()  # it learned something: not two idle runs


# ---------------------------------------------------------------- a short training run


def test_threshold_choice_and_scores_by_hand():
    d = np.array([0.1, 0.9, 0.4, 0.8, 0.3])
    mask = np.array([False, True, False, True, True])
    t, f1 = metrics.choose_threshold(d, mask)
    # calling the top k changed (0.9 0.8 0.4 0.3 0.1 are T T F T F): F1 = 2 tp / (k + 3) is
    # 2/4, 4/5, 4/6, 6/7, 6/8 for k = 1..5; the best cut is between 0.3 and 0.1
    assert 0.1 < t < 0.3 and f1 == pytest.approx(6 / 7)
    # tied distances cannot be cut apart: "the top 2" (F1 1 on paper) is not a threshold;
    # the choices are the top 1 (F1 2/3) or the top 3 (F1 4/5)
    tied, tied_mask = np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0], bool)
    t, f1 = metrics.choose_threshold(tied, tied_mask)
    assert 0.1 < t < 0.5 and f1 == pytest.approx(0.8) == metrics.scores(tied, tied_mask, t)["f1"]
    s = metrics.scores(d, mask, 0.35)  # predicts 0.9, 0.4, 0.8: tp 2 of 3, recall 2 / 3
    assert s == pytest.approx(dict(f1=2 / 3, precision=2 / 3, recall=2 / 3))


# the default experiment made small (seconds): the pipeline, not the targets, which
# benchmarks/train_targets.py measures over three seeds at the full budget
SHORT = dict(steps=60, n_train=32, n_heldout=8, channels=16)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    summary = experiment.run(Config(**SHORT), out=folder / "run.png", progress=False,
                             log=lambda s: None, save=folder / "attention.npz")  # fmt: skip
    return summary, folder


def test_short_training_run_learns(short_run):
    s, _ = short_run
    assert s["loss_last"] < 0.9 * s["loss_first"]
    assert s["baseline_loss_last"] < s["baseline_loss_first"]
    assert set(s["controls_f1"]) == {"baseline", "pool", "local"}
    assert s["controls_f1"]["baseline"] == s["baseline_f1"]
    assert 0 <= s["attention_mass_uniform"] <= 1 and 0 <= s["attention_mass"] <= 1


def test_short_run_writes_figure_and_loadable_weights(short_run):
    s, folder = short_run
    with open(folder / "run.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    m = weights.load_weights(s["weights"]["BAM"], ds=Config.ds)
    assert m.mode == "BAM" and m.channels == SHORT["channels"]
    for name, mode in (("baseline", None), ("pool", "pool"), ("local", "local")):
        assert weights.load_weights(s["weights"][name]).mode == mode


def test_saved_attention_loads_into_cdsa_and_gives_the_models_attention(short_run):
    s, folder = short_run
    trained = weights.load_weights(s["weights"]["BAM"], ds=Config.ds)
    cdsa = minattn.CDSA(SHORT["channels"], Config.ds, "BAM")
    with np.load(folder / "attention.npz") as f:
        cdsa.load_state_dict({k: f[k] for k in f.files})  # strict: exactly CDSA's keys
    x1, x2 = np.random.default_rng(11).standard_normal((2, 1, SHORT["channels"], 8, 8))
    for a, b in zip(cdsa.forward(x1, x2), trained.cdsa.forward(x1, x2), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


# ---------------------------------------------------------------- command line and errors


def test_cli_train_ends_with_one_json_line(tmp_path, capsys):
    out, save = tmp_path / "t.png", tmp_path / "attention.npz"
    argv = [
        "train",
        "--steps",
        "4",
        "--seed",
        "1",
        "--out",
        str(out),
        "--json",
        "--save",
        str(save),
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in ("loss_first", "loss_last", "f1", "baseline_f1"):
        assert isinstance(summary[key], float)
    assert sorted(summary["controls_f1"]) == ["baseline", "local", "pool"]
    assert all(isinstance(v, float) for v in summary["controls_f1"].values())
    assert any(line.startswith("epoch   1/") for line in lines)
    assert (
        out.exists() and (tmp_path / "t-BAM.npz").exists() and (tmp_path / "t-local.npz").exists()
    )
    with np.load(save) as f:
        assert sorted(f.files) == sorted(minattn.CDSA(32, Config.ds, "BAM").state_dict())


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--steps", "0"], "steps must be >= 1"),
        (["train", "--seed", "-1"], "seed must be >= 0"),
        (["train", "--out", "/no/such/folder/t.png"], "does not exist"),
        (["train", "--save", "/no/such/folder/a.npz"], "does not exist"),
    ],
)
def test_cli_train_bad_arguments(argv, message, capsys):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_train_rejects_an_unknown_mode(capsys):
    with pytest.raises(SystemExit) as info:
        main(["train", "--mode", "XYZ"])
    assert info.value.code == 2
    assert "invalid choice: 'XYZ'" in capsys.readouterr().err


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="split must be one of 'train', 'heldout'"):
        data.make_pairs(2, split="test")
    with pytest.raises(TypeError, match="seed must be an int"):
        data.make_pairs(2, seed=None)
    with pytest.raises(ValueError, match="changes must have lo >= 1"):
        data.make_pairs(2, changes=(0, 2))
    with pytest.raises(ValueError, match="radius must lie in"):
        data.make_pairs(2, size=32, radius=(0.1, 0.6))
    with pytest.raises(ValueError, match="gain must be a number in"):
        data.make_pairs(2, gain=0.0)
    with pytest.raises(ValueError, match="mode must be one of"):
        ChangeDetector(4, 8, mode="SE")
    m = ChangeDetector(4, 8, mode="BAM", ds=2)
    x = np.zeros((1, 4, 8, 8))
    with pytest.raises(ValueError, match="x1 and x2 must have one shape"):
        m.forward(x, np.zeros((1, 4, 8, 6)))
    with pytest.raises(ValueError, match="have 4 channels"):
        ChangeDetector(3, 8, mode=None).forward(x, x)
    with pytest.raises(ValueError, match="state_dict keys do not match"):
        m.load_state_dict({"proj.weight": np.zeros((8, 4, 1, 1))})
    with pytest.raises(ValueError, match="batch=9 is larger than the training set"):
        Config(batch=9, n_train=8)
    with pytest.raises(ValueError, match="mode=None has no attention"):
        ChangeDetector(4, 8, mode=None).attention_maps(x, x, [(0, 0)])
    with pytest.raises(ValueError, match="mode='pool' has no attention module to save"):
        weights.save_attention(ChangeDetector(4, 8, mode="pool"), "never.npz")
    with pytest.raises(ValueError, match="kernel must be odd"):
        controls.LocalContext(4, 2, kernel=2)
    with pytest.raises(ValueError, match="size=40 must be a multiple of 8 \\* ds = 16"):
        Config(size=40)

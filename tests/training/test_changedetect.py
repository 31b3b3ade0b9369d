"""Change detection: the data set, the model's gradients, parity with PyTorch, training."""

import json

import numpy as np
import pytest

import minattn
from minattn.apps.cli import main
from minattn.training.changedetect import data, model, train
from minattn.training.changedetect.model import ChangeDetector

# ---------------------------------------------------------------- the data set


def test_generator_is_deterministic_and_seeded():
    a = data.make_pairs(3, seed=5, size=32)
    b = data.make_pairs(3, seed=5, size=32)
    c = data.make_pairs(3, seed=6, size=32)
    for field in ("image1", "image2", "mask", "shifts"):
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


def test_mask_marks_exactly_what_changed_without_nuisances():
    # with every nuisance off, the views agree outside the mask (static objects included)
    # and differ inside it, where an object appeared, disappeared or moved
    quiet = dict(max_shift=0.0, gain=0.0, cast=0.0, ramp=0.0, noise=(0.0, 0.0))
    p = data.make_pairs(6, seed=1, size=48, static=(1, 2), **quiet)
    same = np.all(p.image1 == p.image2, axis=-1)
    assert np.all(same[~p.mask])
    assert p.mask.any(axis=(1, 2)).all()  # every pair has a change
    assert (~same[p.mask]).mean() > 0.8  # a pasted patch can match its background here and there


def test_nuisances_change_unchanged_pixels_too():
    p = data.make_pairs(4, seed=2, size=48)
    unchanged = ~p.mask
    assert np.abs(p.image1 - p.image2).max(axis=-1)[unchanged].mean() > 0.02
    assert np.all(np.abs(p.shifts) <= 2.0) and np.abs(p.shifts).max() > 0.1


def test_features_are_one_fixed_extractor():
    p = data.make_pairs(2, seed=0, size=32)
    f1, f2 = p.features(channels=8)
    assert f1.shape == f2.shape == (2, 8, 32, 32)
    from minattn.features import photo_features

    np.testing.assert_array_equal(f2[1], photo_features(p.image2[1], 8, 0)[0])


# ---------------------------------------------------------------- the model


def randomised(m, seed=0):
    """Random non-zero parameters everywhere (STANet's 0.02 weights would hide errors)."""
    rng = np.random.default_rng(seed)
    for v in m.params.values():
        v[...] = rng.uniform(-0.8, 0.8, v.shape)
    return m


MODES = [(None, 2, 8), ("pool", 2, 8), ("BAM", 2, 8), ("PAM", 1, 8)]


@pytest.mark.parametrize("mode,ds,H", MODES, ids=lambda v: str(v))
def test_model_gradients_by_finite_differences(mode, ds, H):
    m = randomised(ChangeDetector(4, 8, mode=mode, ds=ds, seed=1))
    x1, x2 = np.random.default_rng(2).standard_normal((2, 2, 4, H, H))
    report = minattn.gradcheck(m, (x1, x2), max_elements=40 if mode == "PAM" else None)
    assert report.ok, str(report)


def test_distance_is_torch_pairwise_distance_over_channels():
    torch = pytest.importorskip("torch", reason="torch not installed: the PyTorch oracle")
    import torch.nn.functional as F

    a, b = np.random.default_rng(3).standard_normal((2, 2, 5, 3, 4))
    d, _ = model.distance_forward(a, b)
    # PyTorch's pairwise_distance works on the last dimension today: move channels there
    ta, tb = (torch.from_numpy(v).permute(0, 2, 3, 1) for v in (a, b))
    np.testing.assert_allclose(d, F.pairwise_distance(ta, tb).numpy(), rtol=1e-14)


@pytest.mark.parametrize("mode,ds,H", [m for m in MODES if m[0] != "pool"], ids=lambda v: str(v))
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
    path = train.save_weights(m, tmp_path / "w.npz")
    back = train.load_weights(path, ds=2)
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
    bcl = BCL(train.MARGIN)
    rng = np.random.default_rng(5)
    ours, theirs = [], []
    for _ in range(20):
        idx = rng.choice(4, size=2, replace=False)
        ours.append(m.loss(x1[idx], x2[idx], pairs.mask[idx], train.MARGIN))
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
    t, f1 = train.choose_threshold(d, mask)
    # calling the top k changed (0.9 0.8 0.4 0.3 0.1 are T T F T F): F1 = 2 tp / (k + 3) is
    # 2/4, 4/5, 4/6, 6/7, 6/8 for k = 1..5; the best cut is between 0.3 and 0.1
    assert 0.1 < t < 0.3 and f1 == pytest.approx(6 / 7)
    # tied distances cannot be cut apart: "the top 2" (F1 1 on paper) is not a threshold;
    # the choices are the top 1 (F1 2/3) or the top 3 (F1 4/5)
    tied, tied_mask = np.array([0.9, 0.5, 0.5, 0.1]), np.array([1, 1, 0, 0], bool)
    t, f1 = train.choose_threshold(tied, tied_mask)
    assert 0.1 < t < 0.5 and f1 == pytest.approx(0.8) == train.scores(tied, tied_mask, t)["f1"]
    s = train.scores(d, mask, 0.35)  # predicts 0.9, 0.4, 0.8: tp 2 of 3, recall 2 / 3
    assert s == pytest.approx(dict(f1=2 / 3, precision=2 / 3, recall=2 / 3))


# the default experiment made small: 32 training pairs, 80 steps, 16 channels (seconds).
# Measured for seeds 0-3: attention ahead of the baseline by 0.065, 0.067, 0.036, 0.037
SHORT = dict(steps=80, n_train=32, n_heldout=16, channels=16)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run.png"
    return train.run(train.Config(**SHORT), out=out, progress=False, log=lambda s: None)


def test_short_training_run_learns_and_beats_the_baseline(short_run):
    s = short_run
    assert s["loss_last"] < 0.8 * s["loss_first"]
    assert s["baseline_loss_last"] < s["baseline_loss_first"]
    assert s["f1"] > s["baseline_f1"], (s["f1"], s["baseline_f1"])


def test_short_run_writes_figure_and_loadable_weights(short_run):
    s = short_run
    with open(s["figure"], "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    m = train.load_weights(s["weights"], ds=train.Config.ds)
    assert m.mode == "BAM" and m.channels == SHORT["channels"]
    assert train.load_weights(s["baseline_weights"]).mode is None


# ---------------------------------------------------------------- command line and errors


def test_cli_train_ends_with_one_json_line(tmp_path, capsys):
    out = tmp_path / "t.png"
    assert main(["train", "--steps", "4", "--seed", "1", "--out", str(out), "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    for key in ("loss_first", "loss_last", "f1", "baseline_f1"):
        assert isinstance(summary[key], float)
    assert any(line.startswith("epoch   1/") for line in lines)
    assert out.exists() and (tmp_path / "t.npz").exists() and (tmp_path / "t-baseline.npz").exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["train", "--steps", "0"], "steps must be >= 1"),
        (["train", "--seed", "-1"], "seed must be >= 0"),
        (["train", "--out", "/no/such/folder/t.png"], "does not exist"),
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
    with pytest.raises(ValueError, match="events must have lo >= 1"):
        data.make_pairs(2, events=(0, 2))
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
        train.Config(batch=9, n_train=8)
    with pytest.raises(ValueError, match="mode=None has no attention"):
        ChangeDetector(4, 8, mode=None).attention_maps(x, x, [(0, 0)])

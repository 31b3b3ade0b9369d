"""The experiment ``minattn train`` runs: the attention model against three controls.

Draw training pairs from one set of photographs and held-out pairs from another
(`data.make_pairs`), compute the fixed features once, then train, from the same
projection and step for step on the same mini-batches (`loop.train_models`):

    attention model   features -> proj -> CDSA(BAM or PAM)   -> distance
    baseline          features -> proj                       -> distance
    pool              features -> proj -> ds x ds block mean -> distance   (no attention)
    local             features -> proj -> k x k convolution  -> distance   (no attention)

A pixel is called changed when its distance exceeds a threshold, chosen for each model as
the one with the best F1 on the *training* pairs; F1, precision and recall are then
measured on the held-out pairs. The attention's mass on the pixels that decide a changed
pixel (`attention.attention_mass`) is measured before and after training.
"""

import time
from dataclasses import asdict
from pathlib import Path

from ...blas import one_blas_thread
from .attention import attention_mass
from .config import CONTROLS, Config
from .data import make_pairs
from .figure import draw
from .loop import train_models
from .metrics import choose_threshold, dataset_loss, predict, scores
from .model import ChangeDetector
from .weights import save_attention, save_weights

SHOW = 3  # held-out pairs drawn in the figure


def prepare(config, **task):
    """Training and held-out pairs with their features: a dict of arrays.

    ``task``: more arguments of `make_pairs` (``changes``, ``radius``, ...) for another task.
    """
    kw = dict(size=config.size, seed=config.seed, **task)
    train = make_pairs(config.n_train, split="train", **kw)
    held = make_pairs(config.n_heldout, split="heldout", **kw)
    # one fixed feature extractor for everything (its own seed, not the experiment's)
    x1, x2 = train.features(config.features, seed=0)
    h1, h2 = held.features(config.features, seed=0)
    return dict(train=train, heldout=held, x1=x1, x2=x2, h1=h1, h2=h2)


def build_models(config):
    """{name: ChangeDetector}: the attention model first, then the controls, one seed."""
    kw = dict(ds=config.ds, seed=config.seed, backend=config.backend)
    modes = {config.mode: config.mode, "baseline": None, "pool": "pool", "local": "local"}
    return {
        name: ChangeDetector(config.features, config.channels, mode=mode, **kw)
        for name, mode in modes.items()
    }


def evaluate(model, data):
    """Threshold from the training pairs; scores on both; the held-out distance maps."""
    model.eval()
    d_train = predict(model, data["x1"], data["x2"])
    threshold, _ = choose_threshold(d_train, data["train"].mask)
    d_held = predict(model, data["h1"], data["h2"])
    return dict(
        threshold=threshold,
        train=scores(d_train, data["train"].mask, threshold),
        heldout=scores(d_held, data["heldout"].mask, threshold),
        loss_last=dataset_loss(model, data["x1"], data["x2"], data["train"].mask),
        distance=d_held[:SHOW],
    )


def mass(model, data):
    """attention_mass on the held-out pairs: (share on the own view's deciding pixels,
    uniform's share there, share on the other view's)."""
    args = model, data["heldout"], data["h1"], data["h2"]
    own, uniform = attention_mass(*args)
    return own, uniform, attention_mass(*args, view="other")[0]


def run(config=None, out="minattn-train.png", progress=True, log=print, save=None):
    """The whole experiment; returns the summary dict (what ``--json`` prints).

    Writes the figure to ``out``, every model's weights beside it (``<out>-<name>.npz``),
    and with ``save`` the attention module's state_dict to that file (`save_attention`).
    """
    config = Config() if config is None else config
    out = Path(out)
    for path in (out, save):
        if path is not None and not Path(path).resolve().parent.is_dir():
            raise ValueError(f"{path!s}: the folder {str(Path(path).parent)!r} does not exist")
    with one_blas_thread():
        return _run(config, out, progress, log, save)


def _run(config, out, progress, log, save):
    t0 = time.perf_counter()
    data = prepare(config)
    log(
        f"data: {config.n_train} training pairs, {config.n_heldout} held-out pairs of "
        f"{config.size}x{config.size} pixels; {data['train'].mask.mean():.1%} and "
        f"{data['heldout'].mask.mean():.1%} of pixels changed"
    )
    models = build_models(config)
    attn = models[config.mode]
    log("models: " + "\n        ".join(repr(m) for m in models.values()))
    first = {
        n: dataset_loss(m, data["x1"], data["x2"], data["train"].mask) for n, m in models.items()
    }
    mass_before = mass(attn, data)
    t_train = time.perf_counter()
    losses = train_models(models, data, config, progress, log)
    t_train = time.perf_counter() - t_train
    results = {name: evaluate(model, data) for name, model in models.items()}
    mass_after = mass(attn, data)
    files = _save(models, config, out, save)
    draw(out, config, losses, data, results, attn, (mass_before, mass_after))
    for name, r in results.items():
        h = r["heldout"]
        log(f"{name:>8}: held-out F1 {h['f1']:.3f} (precision {h['precision']:.3f}, recall "
            f"{h['recall']:.3f}); threshold {r['threshold']:.3f} from the training pairs "
            f"(training F1 {r['train']['f1']:.3f})")  # fmt: skip
    log(f"attention on the deciding pixels: {mass_before[0]:.3f} before training, "
        f"{mass_after[0]:.3f} after ({mass_after[1]:.3f} if uniform); on the other view's "
        f"unchanged pixels {mass_before[2]:.3f} before, {mass_after[2]:.3f} after")  # fmt: skip
    summary = _summary(config, first, results, (mass_before, mass_after), files)
    summary.update(train_seconds=t_train, total_seconds=time.perf_counter() - t0)
    log(f"training took {t_train:.1f} s; everything {summary['total_seconds']:.1f} s")
    log(f"figure: {out}\nweights: " + ", ".join(files.values()))
    return summary


def _save(models, config, out, save):
    """Every model's weights beside the figure, and the attention module's if asked."""
    files = {}
    for name, model in models.items():
        files[name] = str(save_weights(model, out.with_name(f"{out.stem}-{name}.npz")))
    if save is not None:
        files["attention"] = str(save_attention(models[config.mode], save))
    return files


def _summary(config, first, results, masses, files):
    a, b = results[config.mode], results["baseline"]
    (before, uniform, other_before), (after, _, other_after) = masses
    return dict(
        mode=config.mode,
        seed=config.seed,
        steps=config.steps,
        loss_first=first[config.mode],
        loss_last=a["loss_last"],
        baseline_loss_first=first["baseline"],
        baseline_loss_last=b["loss_last"],
        f1=a["heldout"]["f1"],
        precision=a["heldout"]["precision"],
        recall=a["heldout"]["recall"],
        threshold=a["threshold"],
        train_f1=a["train"]["f1"],
        baseline_f1=b["heldout"]["f1"],
        controls_f1={name: results[name]["heldout"]["f1"] for name in CONTROLS},
        attention_mass=after,
        attention_mass_random=before,
        attention_mass_uniform=uniform,
        attention_mass_other_view=other_after,
        attention_mass_other_view_random=other_before,
        weights=files,
        config=asdict(config),
    )

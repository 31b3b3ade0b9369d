"""Accuracy figures: gradient checks over the configuration grid, and agreement with PyTorch.

    .venv/bin/python benchmarks/accuracy.py

Table 1: `minattn.gradcheck` (float64, eps 1e-6, every entry) over ds, interpolation,
gamma and backend, with random non-zero parameters. Table 2, if torch is installed:
the largest difference between minattn and the article's PyTorch module
(tests/oracles/article_bam.py), relative to the largest entry, over output and all gradients.
"""

import itertools
import sys
from pathlib import Path

import numpy as np

import minattn


def gradcheck_table():
    print("gradcheck, float64, B=2, C=8, Ck=3, H x W = 8 x 12")
    print(f"{'backend':8s} {'ds':>3s} {'interpolation':14s} {'gamma':6s} {'max rel err':>12s} ok")
    worst = 0.0
    grid = itertools.product(("numpy", "numba"), (1, 2, 4), ("nearest", "bilinear"), (False, True))
    for backend, ds, interp, g in grid:
        bam = minattn.BAM(
            8, ds, key_channels=3, interpolation=interp, use_gamma=g, backend=backend, seed=1
        )
        bam.params["gamma"] = np.array([0.8])
        x = np.random.default_rng(2).standard_normal((2, 8, 8, 12))
        report = minattn.gradcheck(bam, x)
        worst = max(worst, report.max_rel)
        print(f"{backend:8s} {ds:3d} {interp:14s} {g!s:6s} {report.max_rel:12.2e} {report.ok}")
    print(f"worst: {worst:.2e}\n")


def torch_table():
    try:
        import torch
    except ImportError:
        print("torch not installed: no comparison with the article's module")
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "oracles"))
    from article_bam import ArticleBAM, BilinearBAM, GammaBAM

    print("minattn (numpy backend) against the article's PyTorch module, float64")
    print(f"{'B, C, H, W, ds':18s} {'module':12s} {'max rel diff':>12s}")
    worst = 0.0
    shapes = [(1, 16, 8, 8, 1), (2, 16, 8, 12, 2), (2, 32, 16, 16, 4), (2, 64, 64, 64, 8)]
    for (B, C, H, W, ds), cls in itertools.product(shapes, (ArticleBAM, BilinearBAM, GammaBAM)):
        torch.manual_seed(0)
        tmod = cls(C, ds).double()
        with torch.no_grad():
            for p in tmod.parameters():
                p.uniform_(-0.6, 0.6)
        ours = minattn.BAM(
            C,
            ds,
            interpolation="bilinear" if cls is BilinearBAM else "nearest",
            use_gamma=cls is GammaBAM,
        )
        ours.load_state_dict({k: v.numpy() for k, v in tmod.state_dict().items()})
        rng = np.random.default_rng(1)
        x, dy = rng.standard_normal((B, C, H, W)), rng.standard_normal((B, C, H, W))
        xt = torch.tensor(x, requires_grad=True)
        yt = tmod(xt)
        yt.backward(torch.tensor(dy))
        pairs = [(ours.forward(x), yt.detach().numpy()), (ours.backward(dy), xt.grad.numpy())]
        pairs += [
            (ours.grads[k], p.grad.numpy())
            for k, p in tmod.named_parameters()
            if p.grad is not None
        ]
        diff = max(np.abs(a - b).max() / max(np.abs(b).max(), 1e-3) for a, b in pairs)
        worst = max(worst, diff)
        print(f"{f'{B}, {C}, {H}, {W}, {ds}':18s} {cls.__name__:12s} {diff:12.2e}")
    print(f"worst: {worst:.2e}")


if __name__ == "__main__":
    gradcheck_table()
    torch_table()

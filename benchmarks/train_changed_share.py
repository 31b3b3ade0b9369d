"""How much of the scene changes, against where BAM's attention learns to look.

The attention-mass measure of ``minattn train`` (`attention.attention_mass`) is the share
of a changed pixel's attention on the unchanged pixels of its own view. A uniform row puts
half the unchanged share of the pixels there, (1 - p) / 2 for a changed share p, and no row
can put more than 1: the ratio learned / random is at most 2 / (1 - p). With the default
task (p about 0.18) it cannot pass 2.4. This script trains BAM and its three controls on
tasks with larger changes (``make_pairs``'s ``changes`` and ``radius``), the same budget
and seeds otherwise, and prints per run the held-out F1 of every model and the attention
of changed pixels on the unchanged pixels of their own view and of the other one, learned
and with the initial random weights.

    .venv/bin/python benchmarks/train_changed_share.py            # 3 tasks x seeds 0-2
    .venv/bin/python benchmarks/train_changed_share.py --tasks "2,4,0.2,0.3" --steps 900
    .venv/bin/python benchmarks/train_changed_share.py --tasks "1,2,0.16,0.25" \
        --seeds 0,1,2,3,4,5,6,7,8 --lr 0.01            # the default task, 9 seeds

Nothing is asserted. Each run takes about 35 s (600 steps) on one core.
"""

import argparse
import os
import sys
import time

from minattn.blas import one_blas_thread
from minattn.training.changedetect import experiment
from minattn.training.changedetect.config import Config
from minattn.training.changedetect.loop import train_models

# changes (lo, hi) and semi-axes (lo, hi): the default task, then two with larger changes
TASKS = "1,2,0.16,0.25;2,4,0.2,0.3;3,5,0.2,0.3"
MODELS = ("BAM", "baseline", "pool", "local")


def run(config, changes, radius):
    """(held-out share of changed pixels, F1 per model, BAM's (own, uniform, other) attention
    shares before training, the same after): `experiment.mass`."""
    data = experiment.prepare(config, changes=changes, radius=radius)
    models = experiment.build_models(config)
    before = experiment.mass(models["BAM"], data)
    train_models(models, data, config, progress=False, log=lambda line: None)
    f1 = {name: experiment.evaluate(m, data)["heldout"]["f1"] for name, m in models.items()}
    return data["heldout"].mask.mean(), f1, before, experiment.mass(models["BAM"], data)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=TASKS, help="';'-separated changes_lo,hi,radius_lo,hi")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    p.add_argument("--steps", type=int, default=None, help="Adam steps (default: BAM's)")
    p.add_argument("--lr", type=float, default=None, help="Adam's learning rate (default: BAM's)")
    args = p.parse_args(argv)
    print(f"BAM against the share of changed pixels, lr {args.lr or Config().lr}, "
          f"{time.strftime('%Y-%m-%d %H:%M %Z')}, "
          f"load average {os.getloadavg()[0]:.2f} at the start")  # fmt: skip
    print(f"{'changes':>9} {'radius':>10} {'seed':>4} {'p':>5}  "
          + " ".join(f"{m:>8}" for m in MODELS)
          + "   own view: learned random ratio   other view: learned random")  # fmt: skip
    for task in args.tasks.split(";"):
        lo, hi, r_lo, r_hi = task.split(",")
        changes, radius = (int(lo), int(hi)), (float(r_lo), float(r_hi))
        for seed in (int(s) for s in args.seeds.split(",")):
            config = Config(seed=seed, steps=args.steps, lr=args.lr)  # None: BAM's budget
            with one_blas_thread():
                p_changed, f1, before, after = run(config, changes, radius)
            print(f"{lo + '-' + hi:>9} {r_lo + '-' + r_hi:>10} {seed:>4} {p_changed:5.2f}  "
                  + " ".join(f"{f1[m]:8.3f}" for m in MODELS)
                  + f"   {after[0]:17.3f} {before[0]:6.3f} {after[0] / before[0]:5.2f}"
                  f"   {after[2]:19.3f} {before[2]:6.3f}", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``minattn`` command line: ``demo``, ``gradcheck``, ``bench``, ``exercises``, ``grade``.

Bad arguments end in a one-line message and exit status 2, never a traceback.
"""

import argparse
import sys

import numpy as np


def _demo(args):
    from .demo import run

    run(
        photo=args.photo,
        size=args.size,
        channels=args.channels,
        ds=args.ds,
        out=args.out,
        image=args.image,
    )
    return 0


def _gradcheck(args):
    from ..checking.gradcheck import gradcheck
    from ..modules.bam import BAM

    bam = BAM(
        args.channels,
        args.ds,
        key_channels=args.key_channels,
        interpolation=args.interpolation,
        use_gamma=args.use_gamma,
        backend=args.backend,
        seed=args.seed,
    )
    rng = np.random.default_rng(args.seed)
    if args.use_gamma:  # gamma starts at 0, which would make the check vacuous
        bam.params["gamma"] = rng.uniform(0.5, 1.5, size=1)
    x = rng.standard_normal((args.batch, args.channels, args.height, args.width))
    print(f"{bam}\nx: {x.shape}, random normal; upstream gradient random normal\n")
    report = gradcheck(bam, x, eps=args.eps, max_elements=args.max_elements, seed=args.seed)
    print(report)
    return 0 if report.ok else 1


def _train(args):
    import json

    from ..training.changedetect.train import Config, run

    config = Config(steps=args.steps, seed=args.seed, mode=args.mode)
    summary = run(config, out=args.out, progress=not args.no_progress)
    if args.json:
        print(json.dumps(summary))
    return 0


def build_parser():
    p = argparse.ArgumentParser(prog="minattn", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="BAM on a photograph, step by step, checked and drawn")
    d.add_argument("--photo", default="astronaut", help="a scikit-image photo (default astronaut)")
    d.add_argument("--image", metavar="PATH", help="your own picture (PNG, JPEG, ...) instead")
    d.add_argument("--size", type=int, default=128, help="resize the photo to SIZE x SIZE")
    d.add_argument("--channels", type=int, default=32, help="channels of the feature map")
    d.add_argument("--ds", type=int, default=4, help="pooling factor before attention")
    d.add_argument("--out", default="minattn-demo.png", help="where to write the figure")
    d.set_defaults(func=_demo)

    g = sub.add_parser("gradcheck", help="finite-difference check of BAM's backward pass")
    g.add_argument("--channels", type=int, default=16)
    g.add_argument("--key-channels", type=int, default=None)
    g.add_argument("--ds", type=int, default=2)
    g.add_argument("--batch", type=int, default=2)
    g.add_argument("--height", type=int, default=8)
    g.add_argument("--width", type=int, default=12)
    g.add_argument("--interpolation", default="nearest", help="nearest or bilinear")
    g.add_argument("--use-gamma", action="store_true", help="gamma * up(attn) + x")
    g.add_argument("--backend", default="numpy", help="reference, numpy or numba")
    g.add_argument("--eps", type=float, default=1e-6)
    g.add_argument("--max-elements", type=int, default=None, help="check at most this many")
    g.add_argument("--seed", type=int, default=0)
    g.set_defaults(func=_gradcheck)

    t = sub.add_parser("train", help="learn change detection (STANet in miniature) with attention")
    t.add_argument("--steps", type=int, default=300, help="Adam steps of each model")
    t.add_argument("--seed", type=int, default=0, help="data, initialisation and batch order")
    t.add_argument("--mode", default="BAM", choices=["BAM", "PAM"], help="CDSA's attention")
    t.add_argument("--out", default="minattn-train.png", help="figure; weights go beside it")
    t.add_argument("--json", action="store_true", help="end with one JSON line of results")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    t.set_defaults(func=_train)

    # these own their options: main() hands them the rest of the command line
    sub.add_parser(
        "bench",
        help="timing table: backends vs NumPy matmul and PyTorch (minattn bench --help)",
        add_help=False,
    )
    sub.add_parser("exercises", help="write the student version of the exercises", add_help=False)
    sub.add_parser("grade", help="grade a student's exercise notebook", add_help=False)
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    command = argv[0] if argv else None
    try:
        if command == "bench":
            from . import bench

            return bench.main(argv[1:])
        if command == "exercises":
            from ..course import exercises

            return exercises.main(argv[1:])
        if command == "grade":
            from ..course.grading import runner

            return runner.main(argv[1:])
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (ValueError, TypeError, OSError) as e:
        print(f"minattn {command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""``minattn gradescope NOTEBOOK... --out autograder.zip``: the bundle a teacher uploads.

What the zip holds, at its root (Gradescope's autograder format):

    setup.sh                       run once, as root, when Gradescope builds the image:
                                   Python, a virtual environment, the wheel below with its
                                   dependencies, the unprivileged user of student code
    run_autograder                 run for every submission (`autograder`): grades the
                                   notebook in /autograder/submission, writes
                                   /autograder/results/results.json
    minattn-VERSION-py3-none-any.whl   the package that built the bundle, so the hidden
                                   tests are the ones ``minattn grade`` runs here
    minattn-gradescope.json        the exercise notebooks graded, the seed, the time limits

The wheel is made here from the installed package's own files (a checkout or an installed
wheel alike), without the course notebooks: the grader never reads them, and they hold
the solutions. Nothing else in the zip is Python.
"""

import argparse
import base64
import hashlib
import importlib.metadata
import io
import json
import sys
import zipfile
from pathlib import Path

import minattn

from ..grading import batch, runner
from ..grading.registry import for_notebook, notebooks
from ..grading.sandbox import USER

CONFIG = "minattn-gradescope.json"
HERE = Path(__file__).resolve().parent
PACKAGE = Path(minattn.__file__).resolve().parent
LEFT_OUT = ("course", "notebooks")  # the solutions: not in the bundle's wheel
VISIBILITY = ("visible", "after_due_date", "after_published")  # Gradescope's, but "hidden"
MARGIN = 60.0  # seconds for the grader's own start and the notebooks' kernels
DATE = (1980, 1, 1, 0, 0, 0)  # every file's date in the zips: the same input, the same bytes


def assignment(notebook):
    """The exercise notebook (its stem) that ``notebook`` names: a path to a version of
    it, or its name ("02_seven_steps"); ValueError if neither."""
    path = Path(notebook)
    if not path.exists() and path.stem in notebooks():
        return path.stem
    _, stem = runner.load(path)
    return stem


def configuration(stems, *, seed=0, cell_timeout, total_timeout, exercise_timeout,
                  time_limit=None, visibility="visible"):  # fmt: skip
    """What run_autograder reads: the notebooks, the grader's options, the time limit.

    The default time limit is what an honest submission can take at most: each notebook's
    run (``total_timeout``) and every exercise's budget (``exercise_timeout``, or by default
    the exercise's own time limit), plus a margin.
    """
    if visibility not in VISIBILITY:
        raise ValueError(f"visibility must be one of {', '.join(VISIBILITY)}, got {visibility!r}")
    budgets = sum(exercise_timeout or e.time_limit for s in stems for e in for_notebook(s))
    worst = len(stems) * total_timeout + budgets + MARGIN
    return {
        "assignments": list(stems),
        "options": {
            "seed": seed,
            "cell_timeout": cell_timeout,
            "total_timeout": total_timeout,
            "exercise_timeout": exercise_timeout,
        },  # fmt: skip
        "time_limit": round(float(time_limit or worst)),
        "visibility": visibility,
        "minattn": minattn.__version__,
    }


def build(stems, out, **options):
    """Write the bundle for the exercise notebooks ``stems`` to ``out``; its configuration."""
    config = configuration(stems, **options)
    wheel_name, wheel = wheel_bytes()
    scripts = {
        name: (HERE / name)
        .read_text(encoding="utf-8")
        .replace("@TIME_LIMIT@", str(config["time_limit"]))
        .replace("@USER@", USER)
        for name in ("setup.sh", "run_autograder")
    }
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in scripts.items():
            _add(z, name, text.encode(), mode=0o755)
        _add(z, wheel_name, wheel)
        _add(z, CONFIG, (json.dumps(config, indent=2) + "\n").encode())
    return config


def _add(z, name, data, mode=0o644):
    info = zipfile.ZipInfo(name, DATE)
    info.external_attr = (0o100000 | mode) << 16  # a regular file and its mode, as unzip reads it
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


# ---------------------------------------------------------------- the wheel


def wheel_bytes():
    """(file name, bytes) of a wheel of the installed minattn, course notebooks left out."""
    dist = importlib.metadata.distribution("minattn")
    info = f"minattn-{dist.version}.dist-info"
    files = {}
    for path in sorted(PACKAGE.rglob("*")):
        relative = path.relative_to(PACKAGE)
        left_out = relative.parts[: len(LEFT_OUT)] == LEFT_OUT
        cache = "__pycache__" in relative.parts or path.suffix == ".pyc"
        if path.is_file() and not left_out and not cache:
            files[f"minattn/{relative.as_posix()}"] = path.read_bytes()
    files[f"{info}/METADATA"] = _metadata(dist).encode()
    files[f"{info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: minattn gradescope\nRoot-Is-Purelib: true\n"
        b"Tag: py3-none-any\n"
    )
    files[f"{info}/entry_points.txt"] = (dist.read_text("entry_points.txt") or "").encode()
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in files.items()]
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,", ""]).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in files.items():
            _add(z, name, data)
    return f"minattn-{dist.version}-py3-none-any.whl", buffer.getvalue()


def _metadata(dist):
    """The core metadata pip needs: name, version, Python and the dependencies."""
    meta = dist.metadata
    lines = ["Metadata-Version: 2.1", f"Name: {meta['Name']}", f"Version: {dist.version}"]
    for key in ("Summary", "Requires-Python"):
        if meta[key]:
            lines.append(f"{key}: {meta[key]}")
    lines += [f"Provides-Extra: {extra}" for extra in meta.get_all("Provides-Extra") or []]
    lines += [f"Requires-Dist: {r}" for r in dist.requires or []]
    return "\n".join(lines) + "\n"


def _digest(data):
    raw = hashlib.sha256(data).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# ---------------------------------------------------------------- command line


def build_parser():
    p = argparse.ArgumentParser(
        prog="minattn gradescope",
        description="Build a Gradescope autograder (a zip to upload) that grades the exercise "
        "notebooks named with minattn's hidden tests, as `minattn grade` does.",
    )
    p.add_argument("notebooks", nargs="+", metavar="NOTEBOOK",
                   help="exercise notebooks (a path to a version of one, or its name)")  # fmt: skip
    p.add_argument("--out", default="autograder.zip", help="the zip to write (autograder.zip)")
    batch.add_grading_options(p)
    p.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="stop grading a submission after S seconds in all (default: the "
                   "longest an honest one can take, from the limits above)")  # fmt: skip
    p.add_argument("--visibility", default="visible", choices=VISIBILITY,
                   help="when students see their results (default visible)")  # fmt: skip
    return p


def main(argv=None):
    """Entry point of ``minattn gradescope``; 0, or 2 for bad arguments."""
    args = build_parser().parse_args(argv)
    try:
        options = batch.grading_options(args)
        if args.time_limit is not None and not args.time_limit > 0:
            raise ValueError("--time-limit must be > 0")
        stems = list(dict.fromkeys(assignment(n) for n in args.notebooks))
        config = build(stems, args.out, time_limit=args.time_limit,
                       visibility=args.visibility, **options)  # fmt: skip
    except (ValueError, OSError) as e:
        print(f"minattn gradescope: error: {e}", file=sys.stderr)
        return 2
    print(describe(config, Path(args.out)))
    return 0


def describe(config, out):
    """What was written, and the Gradescope settings it needs."""
    exercises = [e for s in config["assignments"] for e in for_notebook(s)]
    points = sum(e.points for e in exercises)
    minutes = -(-(config["time_limit"] + MARGIN) // 60)  # rounded up
    return (
        f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): {len(exercises)} exercises, "
        f"{points:g} points, from {', '.join(config['assignments'])}\n"
        f"on Gradescope: upload it as the autograder (base image Ubuntu 22.04 or newer), and "
        f"set the autograder timeout to at least {minutes:g} minutes (it stops itself after "
        f"{config['time_limit']} s) and its memory to at least 2 GB (teachers' page: On Gradescope)"
    )

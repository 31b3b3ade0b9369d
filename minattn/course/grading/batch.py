"""``minattn grade PATH... [--jobs N] [--csv FILE] [--json]``: a class at once.

Each notebook is one submission, named by its path; a folder stands for every notebook
under it. Submissions are graded ``--jobs`` at a time (each in its own worker process, its
student code in its own sandboxes), with a progress bar. A notebook that hangs or kills
its kernel costs that notebook only: its time is bounded (``--timeout``).

Before the first notebook the grader takes a snapshot of its own files, and checks it
again before each notebook and after the last (`manifest`): if they changed, it stops.
"""

import argparse
import csv
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from . import manifest, runner
from .registry import EXERCISES


def submissions(paths):
    """The notebooks that ``paths`` (files and folders) name, in order, each once."""
    found = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(f for f in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in f.parts)
        else:
            found.append(p)  # a missing file is that submission's error, reported later
    return list(dict.fromkeys(found))


def _grade_one(path, expected, options):
    """Grade one submission (in a worker): a Report, or the error's message."""
    manifest.verify(expected, after="the previous submission")
    try:
        return runner.grade(path, **options)
    except (ValueError, OSError) as e:
        return str(e)


def grade_many(paths, *, jobs=None, progress=True, **options):
    """[(path, Report or error message), ...] for every submission, in the order given.

    Raises `manifest.Tampered` if the grader's own files change while it runs.
    """
    paths = submissions(paths)
    expected = manifest.snapshot()
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(paths)))
    if jobs == 1:
        done = {p: _grade_one(p, expected, options) for p in _bar(paths, progress, paths)}
    else:
        with ProcessPoolExecutor(jobs) as pool:
            futures = {pool.submit(_grade_one, p, expected, options): p for p in paths}
            done = {futures[f]: f.result() for f in _bar(as_completed(futures), progress, paths)}
    manifest.verify(expected, after="the last submission")
    return [(p, done[p]) for p in paths]


def _bar(items, progress, paths):
    if not progress or len(paths) < 2:
        return items
    from tqdm import tqdm

    return tqdm(items, total=len(paths), desc="grading", unit="notebook", file=sys.stderr)


def write_gradebook(graded, path):
    """One row per submission: ``submission,total,max`` then one column per exercise id."""
    ids = [e for e in EXERCISES if any(_points(r).get(e) is not None for _, r in graded)]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["submission", "total", "max", *ids])
        for name, report in graded:
            points = _points(report)
            if isinstance(report, str):
                writer.writerow([str(name), 0, "", *["" for _ in ids]])
                continue
            row = [str(name), _num(report.total), _num(report.max)]
            writer.writerow(row + [_num(points[e]) if e in points else "" for e in ids])


def _points(report):
    return {} if isinstance(report, str) else {r.id: r.points for r in report.results}


def _num(x):
    return f"{x:g}"


# ---------------------------------------------------------------- command line


def build_parser():
    p = argparse.ArgumentParser(
        prog="minattn grade",
        description="Grade students' exercise notebooks: run each in a sandbox, then run the "
        "hidden tests of every exercise on the student's functions, run in isolation.",
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="notebooks, or folders of them")
    p.add_argument(
        "--json", action="store_true", help="one JSON line per submission (total, max, exercises)"
    )
    p.add_argument("--csv", metavar="FILE", help="write a gradebook (one row per submission)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="grade N submissions at a time (default: the number of cores)")  # fmt: skip
    add_grading_options(p)
    return p


def add_grading_options(p):
    """--seed and the time limits, as ``minattn grade`` and ``minattn gradescope`` take them."""
    p.add_argument("--seed", type=int, default=0, help="seed of the hidden tests (default 0)")
    for flag, key, help_text in (
        ("--cell-timeout", "cell_timeout", "interrupt a cell after S seconds"),
        ("--timeout", "total_timeout", "stop a notebook after S seconds in all"),
        ("--exercise-timeout", "exercise_timeout",
         "an exercise whose functions run longer in all gets 0"),
    ):  # fmt: skip
        default = runner.DEFAULTS[key]
        shown = f"{default:g}" if default else "each exercise's time limit, stated in its notebook"
        p.add_argument(flag, type=float, default=default, metavar="S",
                       help=f"{help_text} (default {shown})")  # fmt: skip
    return p


def grading_options(args):
    """The options of `grade_many` from parsed arguments; ValueError if a limit is not > 0."""
    for name in ("cell_timeout", "timeout", "exercise_timeout", "jobs"):
        value = getattr(args, name, None)
        if value is not None and not value > 0:
            raise ValueError(f"--{name.replace('_', '-')} must be > 0")
    return {
        "seed": args.seed,
        "cell_timeout": args.cell_timeout,
        "total_timeout": args.timeout,
        "exercise_timeout": args.exercise_timeout,
    }


def main(argv=None):
    """Entry point of ``minattn grade``; returns the exit status.

    0: every submission graded; 1: some could not be (not a notebook of the course); 2: bad
    arguments, a single bad notebook, or the grader's own files changed.
    """
    args = build_parser().parse_args(argv)
    try:
        options = grading_options(args)
    except ValueError as e:
        print(f"minattn grade: error: {e}", file=sys.stderr)
        return 2
    try:
        graded = grade_many(args.paths, jobs=args.jobs, **options)
    except manifest.Tampered as e:
        print(f"minattn grade: error: {e}", file=sys.stderr)
        return 2
    if len(graded) == 1 and isinstance(graded[0][1], str):
        print(f"minattn grade: error: {graded[0][1]}", file=sys.stderr)
        return 2
    _print(graded, args.json)
    if args.csv:
        write_gradebook(graded, args.csv)
    return 1 if any(isinstance(r, str) for _, r in graded) else 0


def _print(graded, as_json):
    single = len(graded) == 1
    for name, report in graded:
        if isinstance(report, str):
            print(f"minattn grade: error: {report}", file=sys.stderr)
            continue
        if single:
            print(report.table())
        elif not as_json:
            print(f"{name}: {_num(report.total)} / {_num(report.max)}")
        if as_json:
            doc = report.as_json()
            print(json.dumps(doc if single else {"submission": str(name), **doc}))

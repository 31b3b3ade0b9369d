"""Grading a class: 100 submissions of notebook 2 with ``--jobs 2``, and what isolation costs.

    python benchmarks/grade_batch.py                        # 100 submissions, --jobs 2
    python benchmarks/grade_batch.py --n 20 --jobs 1
    python benchmarks/grade_batch.py --per-notebook 3 --baseline OLD_CHECKOUT

1. Makes ``--n`` submissions of notebook 2 in a temporary folder, from the solution and the
   student version, with planted slips: every solution, the untouched student version, a
   softmax computed in float64 (loses the float32 part), a scale off by 0.1%, a transposed
   energy, a deleted cell.
2. Times ``minattn grade FOLDER --jobs J --csv FILE`` (wall clock, one run) and prints the
   time per submission, the score of each kind and the first rows of the gradebook.
3. With ``--per-notebook R``: grades one notebook R times each way, alternating, in fresh
   processes: bubblewrap (the default), without bubblewrap (MINATTN_GRADE_BWRAP=0), and,
   with ``--baseline DIR``, the grader of an older checkout (``python -m minattn grade``
   with DIR first on PYTHONPATH). Prints medians and ratios to the first.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEM = "02_seven_steps"
SLIPS = {  # kind -> (text in the solution, replacement); None: a kind made otherwise
    "full": None,
    "student": None,
    "softmax_float64": ("e = np.exp(energy - energy.max(axis=-1, keepdims=True))",
                        "e = np.exp((energy - energy.max(axis=-1, keepdims=True)).astype(float))"),
    "scale_off": ("scaled = energy * scale", "scaled = energy * scale * 1.001"),
    "energy_transposed": ("energy = query.transpose(0, 2, 1) @ key",
                          "energy = key.transpose(0, 2, 1) @ query"),
    "flatten_deleted": None,
}  # fmt: skip


def make_submissions(folder, n):
    """n notebooks in ``folder``, the kinds in turn; {file name: kind}."""
    from minattn.course.exercises import student_notebook

    solution = json.loads((ROOT / "notebooks" / f"{STEM}.ipynb").read_text(encoding="utf-8"))
    student = student_notebook(solution, name=f"{STEM}.ipynb")
    kinds, made = list(SLIPS), {}
    for i in range(n):
        kind = kinds[i % len(kinds)]
        nb = json.loads(json.dumps(student if kind == "student" else solution))
        if kind == "flatten_deleted":
            nb["cells"] = [c for c in nb["cells"] if "def flatten_forward(" not in _src(c)]
        elif SLIPS[kind]:
            old, new = SLIPS[kind]
            for cell in nb["cells"]:
                cell["source"] = _src(cell).replace(old, new)
        name = f"student_{i:03d}.ipynb"
        (folder / name).write_text(json.dumps(nb), encoding="utf-8")
        made[name] = kind
    return made


def _src(cell):
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def batch(n, jobs):
    with tempfile.TemporaryDirectory(prefix="minattn-class-") as tmp:
        folder = Path(tmp) / "class"
        folder.mkdir()
        kinds = make_submissions(folder, n)
        gradebook = Path(tmp) / "grades.csv"
        start = time.monotonic()
        subprocess.run([str(Path(sys.executable).parent / "minattn"), "grade", str(folder),
                        "--jobs", str(jobs), "--csv", str(gradebook)],
                       check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        seconds = time.monotonic() - start
        rows = gradebook.read_text(encoding="utf-8").splitlines()
    print(f"{n} submissions of {STEM}, --jobs {jobs}: {seconds:.0f} s in all, "
          f"{seconds / n:.2f} s per submission")  # fmt: skip
    totals = {}
    for row in rows[1:]:
        name, total = row.split(",")[:2]
        totals.setdefault(kinds[Path(name).name], set()).add(total)
    print("\nkind                 total / 18")
    for kind, values in totals.items():
        print(f"{kind:20s} {', '.join(sorted(values))}")
    print("\ngradebook (first rows):")
    print("\n".join(rows[:4]))


def per_notebook(repeats, baseline):
    path = ROOT / "notebooks" / f"{STEM}.ipynb"
    minattn = str(Path(sys.executable).parent / "minattn")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ways = {
        "isolated (bubblewrap)": ([minattn, "grade", str(path)], env),
        "isolated, no bubblewrap": ([minattn, "grade", str(path)],
                                    {**env, "MINATTN_GRADE_BWRAP": "0"}),
    }  # fmt: skip
    if shutil.which("bwrap") is None:
        del ways["isolated (bubblewrap)"]
    if baseline:
        ways["baseline checkout"] = (
            [sys.executable, "-m", "minattn", "grade", str(path)],
            {**env, "PYTHONPATH": str(Path(baseline).resolve())},
        )
    times = {way: [] for way in ways}
    for _ in range(repeats):
        for way, (argv, way_env) in ways.items():
            start = time.monotonic()
            subprocess.run(argv, env=way_env, check=True, stdout=subprocess.DEVNULL,
                           cwd=tempfile.gettempdir())  # fmt: skip
            times[way].append(time.monotonic() - start)
    first = statistics.median(next(iter(times.values())))
    print(f"\none notebook ({STEM}), {repeats} runs each, alternating:")
    print(f"{'grader':28s} {'median s':>9s} {'ratio':>6s}")
    for way, values in times.items():
        median = statistics.median(values)
        print(f"{way:28s} {median:9.2f} {median / first:6.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=100, help="submissions (default 100)")
    p.add_argument("--jobs", type=int, default=2, help="--jobs of minattn grade (default 2)")
    p.add_argument("--per-notebook", type=int, default=0, metavar="R",
                   help="also time one notebook R times each way")  # fmt: skip
    p.add_argument("--baseline", metavar="DIR", help="an older checkout to compare with")
    p.add_argument("--no-batch", action="store_true", help="only the per-notebook table")
    args = p.parse_args()
    if not args.no_batch:
        batch(args.n, args.jobs)
    if args.per_notebook:
        per_notebook(args.per_notebook, args.baseline)


if __name__ == "__main__":
    main()

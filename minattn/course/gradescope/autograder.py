"""What ``run_autograder`` runs for every submission, inside Gradescope's container.

    python -m minattn.course.gradescope.autograder [--root /autograder]

1. Before anything else it writes a results.json that gives 0 and says grading did not
   finish, so a grader stopped at its time limit still leaves a valid one.
2. It finds the notebooks in ``submission/`` and matches them to the bundle's exercise
   notebooks the way ``minattn grade`` recognises one (the notebook's metadata, its file
   name, its cells' nbgrader ids). No notebook, the wrong one, several of one, or a file
   that is not a notebook: each gets a message the student can act on, and 0.
3. It grades what it matched with `batch.grade_many`, the code of ``minattn grade``
   itself (the same sandboxes, hidden tests, feedback and check of the grader's own
   files), and writes results.json in Gradescope's format: one test per exercise, named
   by its id, its feedback as the test's output. The teacher's view (the sandbox used,
   the full tables) goes to stdout, which Gradescope shows to instructors only.
"""

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

import minattn

from ..grading import batch, runner
from ..grading.registry import for_notebook
from ..grading.sandbox import Sandbox
from .bundle import CONFIG

ROOT = Path("/autograder")
IGNORED = (".ipynb_checkpoints", "__MACOSX")  # folders that editors and zip tools leave


def main(argv=None):
    p = argparse.ArgumentParser(prog="run_autograder", description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=ROOT, help="Gradescope's folder (/autograder)")
    root = p.parse_args(argv).root
    start = time.monotonic()
    config = json.loads((root / "source" / CONFIG).read_text(encoding="utf-8"))
    out = root / "results" / "results.json"
    write_json(out, unfinished(config))
    try:
        doc, log = grade_folder(root / "submission", config)
    except Exception as e:  # the grader itself failed (its files changed, a bug): say so
        traceback.print_exc()
        doc = failed(config, f"The autograder failed ({type(e).__name__}: {e}); please tell "
                     "your teacher.")  # fmt: skip
        log = []
    doc["execution_time"] = round(time.monotonic() - start)
    write_json(out, doc)
    print("\n".join(log), flush=True)
    return 0


def grade_folder(folder, config):
    """(results.json's document, lines for the teacher) for the submission in ``folder``."""
    sandbox = Sandbox.here()
    log = [f"minattn {minattn.__version__}; student code runs under {sandbox.describe()}"]
    log += [f"note: {sandbox.weaker}"] if sandbox.weaker else []
    chosen, lines = match(folder, config["assignments"])
    paths = list(chosen.values())
    graded = dict(batch.grade_many(paths, jobs=1, progress=False, **config["options"]))
    tests, score = [], 0.0
    for stem in config["assignments"]:
        report = graded.get(chosen.get(stem))
        if isinstance(report, runner.Report):
            name = chosen[stem].relative_to(folder).as_posix()
            lines.append(f"{stem} (your {name}): {_num(report.total)} / {_num(report.max)} points")
            lines += report.run_notes(leave_out=[sandbox.weaker])
            tests += [_test(r.as_json()) for r in report.results]
            score += report.total
            log.append(report.table())
        else:  # an error message, or nothing of this notebook in the submission
            tests += _zeros(stem, f"not graded: {report or f'no notebook of {stem} (see above)'}")
    return document(config, tests, lines, score), log


# ---------------------------------------------------------------- which notebook is which


def match(folder, assignments):
    """({exercise notebook: the submitted file}, [messages]) for the files in ``folder``;
    a file is taken when it is the only one of its exercise notebook."""
    found, others = submitted(folder)
    wanted = " and ".join(f"{s}.ipynb" for s in assignments)
    if not found:
        held = f": it holds {', '.join(others[:10])}" if others else " (it is empty)"
        return {}, [f"Your submission holds no notebook (.ipynb file){held}. Submit {wanted}."]
    by_stem, messages = {}, []
    for path in found:
        name = path.relative_to(folder).as_posix()
        try:
            _, stem = runner.load(path)
        except ValueError as e:
            messages.append(str(e).replace(str(path), name))
            continue
        if stem in assignments:
            by_stem.setdefault(stem, []).append(path)
        else:
            messages.append(f"{name} holds the exercises of {stem}, which this assignment does "
                            f"not grade: submit {wanted}.")  # fmt: skip
    chosen = {}
    for stem, paths in by_stem.items():
        if len(paths) == 1:
            chosen[stem] = paths[0]
        else:
            names = ", ".join(p.relative_to(folder).as_posix() for p in paths)
            messages.append(f"{names} all hold the exercises of {stem}: submit only one of "
                            "them (none was graded).")  # fmt: skip
    return chosen, messages


def submitted(folder):
    """([notebook paths], [names of the other files]) under ``folder``, in order; links,
    hidden files and editors' checkpoints left out."""
    notebooks, others = [], []
    for path in sorted(Path(folder).rglob("*")):
        parts = path.relative_to(folder).parts
        if any(p in IGNORED or p.startswith(".") for p in parts):
            continue
        if path.is_symlink() or not path.is_file():
            continue
        if path.suffix.lower() == ".ipynb":
            notebooks.append(path)
        else:
            others.append(Path(*parts).as_posix())
    return notebooks, others


# ---------------------------------------------------------------- results.json


def document(config, tests, lines, score):
    """results.json in Gradescope's format (its fields: their autograder specification)."""
    return {
        "score": round(float(score), 4),
        "output": "\n".join(lines),
        "output_format": "text",
        "test_output_format": "text",
        "visibility": config["visibility"],
        "stdout_visibility": "hidden",
        "tests": tests,
    }


def unfinished(config):
    """What results.json says until grading is done: 0, and why."""
    limit = config["time_limit"]
    doc = failed(config, f"Grading did not finish within its time limit ({limit} s) or ran out "
                 "of memory, so nothing was graded: does a cell or a function of your notebook "
                 "run forever, or fill the memory?")  # fmt: skip
    doc["execution_time"] = limit
    return doc


def failed(config, message):
    tests = [t for s in config["assignments"] for t in _zeros(s, f"not graded: {message}")]
    return document(config, tests, [message], 0.0)


def _test(result):
    """One Gradescope test from one exercise's result (`catalog.Result.as_json`)."""
    passed = result["points"] >= result["max_points"]
    return {
        "name": result["id"],
        "score": result["points"],
        "max_score": result["max_points"],
        "status": "passed" if passed else "failed",
        "output": result["feedback"],
    }


def _zeros(stem, why):
    return [
        {
            "name": e.id,
            "score": 0.0,
            "max_score": float(e.points),
            "status": "failed",
            "output": why,
        }  # fmt: skip
        for e in for_notebook(stem)
    ]


def write_json(path, doc):
    """Write ``doc`` to ``path`` whole or not at all (a rename), never half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    os.replace(part, path)


def _num(x):
    return f"{x:g}"


if __name__ == "__main__":
    sys.exit(main())

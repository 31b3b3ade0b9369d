"""The grading worker: rebuilds a student's functions and runs the hidden tests on them.

Run by the grader as ``python -m minattn.course.grading.worker``: it reads one job (JSON) on
stdin, grades the listed exercises in order and writes one JSON line per exercise on
its result channel (the original stdout; the student's prints go to /dev/null). The
grader kills it when an exercise takes too long, and starts a new one for the rest.

Each exercise gets a fresh namespace holding only what its functions need (from the
collected descriptions, see `minattn.course.grading.collect`), so one exercise's code cannot
affect another's grading.
"""

import ast
import builtins
import importlib
import json
import os
import sys

import numpy as np

from .catalog import Result, grade_exercise


def closure(functions, names):
    """Every collected name that ``functions`` reach through their references."""
    seen, todo = set(), list(functions)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo += names.get(name, {}).get("refs", [])
    return seen


def package_use(exercise, names):
    """What of minattn the exercise's code uses (a description), or None."""
    allowed = set(getattr(exercise, "may_use", ()))
    for name in sorted(closure(exercise.functions, names)):
        d = names.get(name, {})
        kind = d.get("kind")
        if kind == "minattn" and d.get("what") not in allowed:
            return f"{d['what']} (as {name!r})"
        if kind == "module" and d["module"].split(".")[0] == "minattn":
            return f"the module {d['module']} (as {name!r})"
        if kind == "def":
            for module in d.get("imports", []):
                if module.split(".")[0] == "minattn":
                    return f"an import of {module} in {name}"
            mention = _mentions_minattn(d["source"])
            if mention:
                return f"{mention} in {name}"
    return None


def _mentions_minattn(source):
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "minattn":
            return "the name minattn"
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if "minattn" in node.value:
                return f"the string {node.value[:40]!r}"
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [a.name for a in node.names] + [getattr(node, "module", None) or ""]
            if any(m.split(".")[0] == "minattn" for m in modules):
                return "an import of minattn"
    return None


def build_namespace(needed, names):
    """A fresh module namespace with the ``needed`` names rebuilt; and why some could not be."""
    ns = {"__name__": "__student__", "__builtins__": builtins}
    problems = {}
    defs = []
    for name in sorted(needed):
        d = names.get(name, {"kind": "missing"})
        kind = d.get("kind")
        try:
            if kind == "module":
                ns[name] = importlib.import_module(d["module"])
            elif kind == "import":
                value = importlib.import_module(d["module"])
                for part in d["qualname"].split("."):
                    value = getattr(value, part)
                ns[name] = value
            elif kind == "value":
                ns[name] = ast.literal_eval(d["repr"])
            elif kind == "array":
                ns[name] = np.array(d["data"], dtype=d["dtype"])
            elif kind == "def":
                defs.append(name)
            else:
                problems[name] = d.get("type") or kind
        except Exception as e:
            problems[name] = f"{type(e).__name__}: {e}"
    # definitions may need each other at definition time (decorators, defaults): retry
    for _ in range(len(defs) + 1):
        failed = []
        for name in defs:
            try:
                exec(compile(names[name]["source"], f"<your {name}>", "exec"), ns)
            except NameError:
                failed.append(name)
            except Exception as e:
                problems[name] = f"defining it raised {type(e).__name__}: {e}"
        if not failed or len(failed) == len(defs):
            for name in failed:
                problems[name] = "defining it raised NameError"
            break
        defs = failed
    return ns, problems


def grade_one(exercise, names, seed):
    """Grade one exercise from the collected ``names``; returns a `Result`."""
    for fn in exercise.functions:
        d = names.get(fn, {"kind": "missing"})
        if d.get("kind") == "missing":
            return Result(
                exercise.id,
                0.0,
                exercise.points,
                f"{fn} is not defined after running the notebook",
                parts={p.name: None for p in exercise.parts},
            )
        if d.get("kind") not in ("def", "minattn"):
            return Result(
                exercise.id,
                0.0,
                exercise.points,
                f"{fn} must be a function written with def in the notebook, "
                f"got {d.get('type') or d.get('kind')}",
                parts={p.name: None for p in exercise.parts},
            )
    used = package_use(exercise, names)
    if used:
        return Result(
            exercise.id,
            0.0,
            exercise.points,
            f"flagged: your code uses the package's own implementation ({used}); "
            "write it yourself with NumPy",
            flagged=True,
            parts={p.name: False for p in exercise.parts},
        )
    ns, problems = build_namespace(closure(exercise.functions, names), names)
    functions = {fn: ns.get(fn) for fn in exercise.functions}
    result = grade_exercise(exercise, functions, seed=seed)
    for name, why in problems.items():
        if f"name '{name}' is not defined" in result.feedback:
            result.feedback += f" (the grader could not rebuild the global {name!r}: {why})"
    return result


def main():
    from .registry import EXERCISES

    job = json.loads(sys.stdin.read())
    results = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # the student's prints, Python's or C's, go nowhere
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 -- for the life of the process
    np.seterr(all="ignore")
    for exercise_id in job["exercises"]:
        results.write(json.dumps({"start": exercise_id}) + "\n")
        result = grade_one(EXERCISES[exercise_id], job["names"], job.get("seed", 0))
        line = {**result.as_json(), "flagged": result.flagged, "parts": result.parts}
        results.write(json.dumps(line) + "\n")
    results.close()


if __name__ == "__main__":
    main()

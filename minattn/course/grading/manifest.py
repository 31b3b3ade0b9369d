"""The grader checks its own files before it trusts itself.

A snapshot of the installed package (the SHA-256 of every file under ``minattn/``) is taken
when a batch starts, and checked again before each notebook and after the last: if any
file changed, appeared or disappeared, the grader refuses to go on, since every grade
after the change could have been computed by a student's code. With bubblewrap no
student process can write there (its file system is read-only); without it, this is what
still catches a submission that rewrote the grader.
"""

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2]  # the minattn folder


class Tampered(RuntimeError):
    """The grader's files changed since the snapshot."""


def snapshot(root=PACKAGE):
    """{relative path: sha256} of every file under ``root`` (bytecode caches left out)."""
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            found[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def verify(expected, root=PACKAGE, *, after=None):
    """Raise `Tampered`, naming what changed, if ``root`` differs from ``expected``."""
    now = snapshot(root)
    if now == expected:
        return
    changed = sorted(p for p in expected.keys() & now.keys() if expected[p] != now[p])
    added, removed = sorted(now.keys() - expected.keys()), sorted(expected.keys() - now.keys())
    what = "; ".join(
        f"{label}: {', '.join(paths[:5])}"
        for label, paths in (("changed", changed), ("added", added), ("removed", removed))
        if paths
    )
    when = f" after grading {after}" if after else ""
    raise Tampered(f"the grader's own files in {root} changed{when} ({what}); refusing to grade")

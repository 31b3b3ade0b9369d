"""The grader's side of the isolated process: proxies for a student's functions.

`Session` holds one submission's code and the isolated process (``child.py``) that runs it.
For each exercise it hands `catalog.grade_exercise` a `Proxy` per function: calling one
sends the arguments to the isolated process, runs the student's function there and
returns its result as plain data (``wire.py``); an exception there comes back as
`tools.StudentError`. The hidden tests, the expected values and the points stay here,
in the grader's process, with the grader's own NumPy.

Time: each exercise has a `Budget` of seconds spent inside the student's functions (round
trips measured here); a call that would overrun it kills the process and raises
`tools.OutOfTime`, and the next exercise gets a fresh process. Memory: `Proxy.
with_memory_cap` runs one call in a fresh process whose address space the kernel limits.
"""

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import wire
from .sandbox import environment
from .tools import OutOfTime, StudentError

HERE = Path(__file__).resolve().parent


class Handle:
    """An object that a student's function returned and that stays in the isolated process."""

    def __init__(self, owner, key, type_name):
        self.owner, self.key, self.type_name = owner, key, type_name

    def __repr__(self):
        return f"<{self.type_name} object in the isolated process>"


@dataclass
class Budget:
    """Seconds a student's functions may run for one exercise."""

    seconds: float
    spent: float = 0.0

    def remaining(self):
        return self.seconds - self.spent


@dataclass
class Ready:
    """What the isolated process reported after running the code (untrusted: notes only)."""

    failed: list  # [cell, line, "Type: message"]
    kinds: dict  # requested name -> "function", "missing" or a type name


MAX_KILLED = 3  # statements that may kill the process before the code counts as unloadable


class DiedAt(Exception):  # noqa: N818 -- it is an event, not a programming error
    """The process died (``os._exit``, a signal) while running one statement of the code."""

    def __init__(self, cell, line):
        super().__init__(f"cell {cell}, line {line}")
        self.cell, self.line = cell, line


class Process:
    """One isolated process: started, loaded with the code, then answering calls."""

    def __init__(self, sandbox, load):
        self.sandbox, self.load = sandbox, load
        self.proc = None
        self.seq = 0

    def start(self, deadline):
        self.folder = Path(tempfile.mkdtemp(prefix="minattn-child-"))
        for name in ("child.py", "wire.py"):
            shutil.copyfile(HERE / name, self.folder / name)
        self.folder.chmod(0o755)
        to_child, self.w = os.pipe()
        self.r, from_child = os.pipe()
        try:
            self.proc = subprocess.Popen(
                self.sandbox.functions(self.folder, (to_child, from_child)),
                pass_fds=(to_child, from_child),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=environment("/tmp"),
                cwd=self.folder,
                start_new_session=True,
            )
        finally:
            os.close(to_child)
            os.close(from_child)
        self.reader = wire.Reader(self.r)
        wire.write_with_deadline(self.w, wire.frame(self.load), deadline)
        running = None  # the statement the code is running: (cell, line)
        while True:
            try:
                message, _ = self.reader.read(deadline)
            except wire.Closed:
                if running is None:
                    raise
                raise DiedAt(*running) from None
            if not _is_running(message):
                return _ready(message)
            running = (message["cell"], message["line"])

    def call(self, name, args, kwargs, deadline):
        self.seq += 1
        encoder = wire.Encoder(self.encode_object)
        request = {"op": "call", "seq": self.seq, "name": name,
                   "args": encoder(tuple(args)), "kwargs": encoder(dict(kwargs))}  # fmt: skip
        wire.write_with_deadline(self.w, wire.frame(request, encoder.buffers), deadline)
        message, buffers = self.reader.read(deadline)
        if not isinstance(message, dict) or message.get("seq") != self.seq:
            raise wire.Malformed("an answer to another question")
        if set(message) == {"seq", "error"}:
            error = message["error"]
            if not (
                isinstance(error, list)
                and len(error) == 2
                and all(isinstance(e, str) for e in error)
            ):
                raise wire.Malformed("a malformed error")
            raise StudentError(error[0][:80], error[1][:400])
        if set(message) != {"seq", "value", "wrote"}:
            raise wire.Malformed("an answer without a value")
        decode = wire.Decoder(buffers, handle=self.decode_handle)
        value = decode(message["value"])
        for entry in wire._list(message["wrote"]):
            if not (isinstance(entry, list) and len(entry) == 2):
                raise wire.Malformed("a malformed report of written inputs")
            index = wire._int(entry[0])
            if not 0 <= index < len(encoder.sources):
                raise wire.Malformed("a written input that was not sent")
            _write_back(encoder.sources[index], decode(entry[1]))
        return value

    def encode_object(self, value, depth, encoder):
        if isinstance(value, Handle):
            if value.owner is not self:
                raise StudentError(
                    "ValueError", f"a {value.type_name} from an earlier run of your code"
                )
            return {"t": "handle", "id": value.key, "type": value.type_name}
        return record(value, depth, encoder)

    def decode_handle(self, node, depth):
        if set(node) != {"t", "id", "type"}:
            raise wire.Malformed("a malformed handle")
        return Handle(self, wire._int(node["id"]), str(node["type"])[:80])

    def python_pid(self):
        """The pid of the isolated Python (below bwrap and its pid-namespace init)."""
        pids, found = [self.proc.pid], []
        while pids:
            pid = pids.pop(0)
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    text = Path(f"/proc/{pid}/task/{task}/children").read_text()
                    pids += [int(p) for p in text.split()]
        return [p for p in found if _is_python(p)]

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.kill()
            self.proc.wait()
            self.reader.close()
            for fd in (self.r, self.w):
                with contextlib.suppress(OSError):
                    os.close(fd)
            shutil.rmtree(self.folder, ignore_errors=True)
            self.proc = None


def _is_running(message):
    """A report of which statement the code starts: {"op": "running", "cell", "line"}."""
    if not (isinstance(message, dict) and message.get("op") == "running"):
        return False
    if set(message) != {"op", "cell", "line"}:
        raise wire.Malformed("a malformed progress report")
    wire._int(message["cell"]), wire._int(message["line"])
    return True


def _without(cells, cell, line):
    """The code without one statement (the one that killed the process)."""
    return [
        [c, [s for s in statements if not (c == cell and s[0] == line)]] for c, statements in cells
    ]


def _ready(message):
    if not isinstance(message, dict) or set(message) != {"op", "failed", "kinds"}:
        raise wire.Malformed("not a ready message")
    failed = [
        [wire._int(c), wire._int(line), str(error)[:300]]
        for c, line, error in wire._list(message["failed"])
    ]
    kinds = message["kinds"]
    if not isinstance(kinds, dict) or not all(isinstance(v, str) for v in kinds.values()):
        raise wire.Malformed("a malformed list of names")
    return Ready(failed, kinds)


def _is_python(pid):
    try:
        return Path(os.readlink(f"/proc/{pid}/exe")).name.startswith("python")
    except OSError:
        return False


def _write_back(original, written):
    """Copy what the student's function wrote into an input back into the grader's array,
    so the hidden test sees the input changed, as it would after a local call."""
    if not isinstance(original, __import__("numpy").ndarray) or written.shape != original.shape:
        return
    readonly = not original.flags.writeable
    try:
        if readonly:
            original.flags.writeable = True
        original[...] = written
    except ValueError:
        return
    finally:
        if readonly:
            original.flags.writeable = False


def record(value, depth, encoder):
    """A record node: the public attributes of one of the grader's objects (a report, a
    module), so a student's function can read them; methods do not travel."""
    if depth > 6:
        return None
    attrs = {}
    names = [n for n in vars(value) if not n.startswith("_")] if hasattr(value, "__dict__") else []
    names += [n for n, v in vars(type(value)).items() if isinstance(v, property)]
    for name in names:
        try:
            attrs[name] = encoder(getattr(value, name), depth + 1)
        except Exception:  # an attribute that is not data (a function table): left out
            continue
    return {"t": "record", "type": type(value).__name__, "attrs": attrs}


class Session:
    """One submission's code and the isolated process that runs it, restarted when needed.

    cells: [[cell index, [[line, source], ...]], ...] as `collect.Submission.program` gives;
    names: the functions the exercises ask for; package_names: top-level names the code
    binds by importing minattn (a call that needs one gets feedback saying so).
    """

    def __init__(self, sandbox, cells, names, *, package_names=(), setup_timeout=120.0,
                 statement_timeout=30.0):  # fmt: skip
        self.sandbox = sandbox
        self.load = {"op": "load", "cells": cells, "names": list(names),
                     "statement_timeout": statement_timeout}  # fmt: skip
        self.package_names = set(package_names)
        self.setup_timeout = setup_timeout
        self.process = None
        self.ready = None  # the first run's report: what failed, what each name is
        self.baseline = None  # its address space, bytes, with the code loaded
        self.problem = None  # why the code could not be loaded at all
        self.killed = []  # [cell, line, why] of statements that killed the process
        self.budget = Budget(float("inf"))

    def start(self, sandbox=None):
        """A fresh process with the code loaded; returns it, or None (see ``problem``).

        A statement that kills the process (``os._exit``, a signal) is left out and the code
        loaded again, up to ``MAX_KILLED`` times; each one is reported as a failed statement.
        """
        for _ in range(MAX_KILLED + 1):
            process = Process(sandbox or self.sandbox, self.load)
            try:
                ready = process.start(time.monotonic() + self.setup_timeout)
            except DiedAt as died:
                process.kill()
                self.load["cells"] = _without(self.load["cells"], died.cell, died.line)
                self.killed.append([died.cell, died.line, "the process died here: skipped"])
                continue
            except wire.Timeout:
                limit = self.setup_timeout
                self.problem = f"running your notebook's code took longer than {limit:g} s"
            except (wire.Closed, wire.Malformed, OSError) as e:
                self.problem = f"the process running your notebook's code failed ({e})"
            else:
                if self.ready is None:
                    ready.failed = sorted(ready.failed + self.killed)
                    self.ready = ready
                    self.baseline = max((_vm_size(p) for p in process.python_pid()), default=None)
                return process
            process.kill()
            return None
        self.problem = f"your notebook's code killed the process {MAX_KILLED + 1} times"
        return None

    def functions(self, exercise, budget):
        """{name: Proxy or None} for one exercise, with its time ``budget``."""
        self.budget = budget
        if self.process is None or not self.process.alive():
            self.process = self.start()
        kinds = self.ready.kinds if self.ready else {}
        return {
            fn: Proxy(self, fn) if self.process and kinds.get(fn) == "function" else None
            for fn in exercise.functions
        }

    def call(self, name, args, kwargs, process=None):
        process = process or self.process
        if process is None or not process.alive():
            raise StudentError("RuntimeError", "the process running your code is gone")
        start = time.monotonic()
        deadline = start + max(0.0, self.budget.remaining())
        try:
            return process.call(name, args, kwargs, deadline)
        except wire.Timeout:
            process.kill()
            raise OutOfTime(name) from None
        except wire.Closed:
            try:
                code = process.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                code = None
            process.kill()
            raise StudentError("ProcessDied", _death(code)) from None
        except wire.Malformed as e:
            process.kill()
            raise StudentError("MalformedAnswer", f"its answer is not plain data ({e})") from None
        except StudentError as e:
            raise self._explained(e) from None
        finally:
            self.budget.spent += time.monotonic() - start

    def _explained(self, e):
        """Say it plainly when the student's function needs minattn, which is not here."""
        message = e.message
        needs = "No module named 'minattn" in message or any(
            f"name '{n}' is not defined" in message for n in self.package_names
        )
        if needs:
            message += (
                " (graded functions run where minattn is not installed: only NumPy, SciPy "
                "and the standard library; write this with them)"
            )
        return StudentError(e.type_name, message)

    def call_with_memory_cap(self, name, args, cap_bytes):
        """One call in a fresh process whose address space may grow by ``cap_bytes`` only.

        The kernel enforces it from the start (``prlimit`` before the student's code runs):
        the limit is the size of a process with this code loaded, measured on the first
        one, plus the cap.
        """
        if self.baseline is None:
            raise StudentError("RuntimeError", self.problem or "your code could not be loaded")
        sandbox = self.sandbox.with_memory(self.baseline + int(cap_bytes))
        process = self.start(sandbox)
        if process is None:
            raise StudentError("MemoryError", self.problem)
        try:
            return self.call(name, args, {}, process)
        finally:
            process.kill()

    def close(self):
        if self.process is not None:
            self.process.kill()
            self.process = None


class Proxy:
    """Stands for a student's function: calling it runs the function in the isolated process."""

    def __init__(self, session, name):
        self.session, self.__name__ = session, name

    def __call__(self, *args, **kwargs):
        return self.session.call(self.__name__, args, kwargs)

    def with_memory_cap(self, cap_bytes):
        return lambda *args: self.session.call_with_memory_cap(self.__name__, args, cap_bytes)

    def __repr__(self):
        return f"<your {self.__name__}, run in isolation>"


def _vm_size(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    raise OSError(f"no VmSize for process {pid}")


def _death(code):
    if code is not None and code < 0:
        return f"the process running it was killed by signal {-code} (out of memory or CPU time?)"
    return f"the process running it exited with status {code}"

"""The isolated process that runs a student's functions for the grader (stdlib and NumPy only).

Started by `minattn.course.grading.isolated` as ``python -I -S child.py IN OUT SITE`` inside
the sandbox, where minattn cannot be imported: its files are not in the sandbox at all.
This file and ``wire.py`` are copied (or bound) next to it; SITE holds only NumPy and SciPy.

1. It receives the submission's code: every statement of every code cell (IPython syntax
   already turned into Python by the grader, check cells left out). It runs them in
   order in one namespace, as a notebook would; a statement that raises, or runs longer
   than the statement limit, is recorded and skipped, and the rest still run. Before each
   statement it says which one it starts, so that if the statement kills the process
   (``os._exit``, a signal) the grader can start a new one without it.
2. It answers "ready" with the failures and what each requested name turned out to be.
3. Then it serves calls: a function name and arguments in, the result (or the exception's
   type and message) out, as data (see ``wire.py``). What it says is never trusted: the
   grader compares it with values it computes itself.
"""

import builtins
import os
import signal
import sys
import types


class StatementTimeout(BaseException):
    """A top-level statement ran longer than the grader allows."""


class Record(types.SimpleNamespace):
    """One of the grader's objects (a gradcheck report, a module), as its attributes."""

    def __init__(self, type_name, **attrs):
        super().__init__(**attrs)
        self.__dict__["_record_of"] = type_name

    def __repr__(self):
        shown = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if k != "_record_of")
        return f"{self._record_of}({shown})"


class _IPython:
    """What ``get_ipython()`` returns here: magics and shell lines do nothing."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


def run_statements(cells, ns, limit, starting=lambda cell, line: None):
    """Execute [[cell, [[line, source], ...]], ...] in ``ns``; the failures, recorded.

    ``starting(cell, line)`` is called before each statement runs.
    """
    failed = []

    def alarm(signum, frame):
        raise StatementTimeout

    signal.signal(signal.SIGALRM, alarm)
    for cell, statements in cells:
        for line, source in statements:
            starting(cell, line)
            try:
                code = compile("\n" * (line - 1) + source, f"<cell {cell}>", "exec")
                signal.setitimer(signal.ITIMER_REAL, limit)
                try:
                    exec(code, ns)
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except StatementTimeout:
                failed.append([cell, line, f"Timeout: ran longer than {limit:g} s"])
            except BaseException as e:  # SystemExit and KeyboardInterrupt too: skip, go on
                failed.append([cell, line, describe(e)])
    return failed


def describe(e):
    message = str(e).splitlines()[0][:300] if str(e) else ""
    return f"{type(e).__name__}: {message}".rstrip(": ")


def kind_of(value):
    if value is None:
        return "missing"
    if callable(value):
        return "function"
    return type(value).__name__


class Server:
    def __init__(self, wire, fd_in, fd_out):
        self.wire, self.fd_in, self.fd_out = wire, fd_in, fd_out
        self.objects = {}  # handle id -> object the grader holds a handle to

    def send(self, message, buffers=()):
        self.wire.write_blocking(self.fd_out, self.wire.frame(message, buffers))

    def handle(self, value, depth, encoder):
        key = len(self.objects) + 1
        self.objects[key] = value
        return {"t": "handle", "id": key, "type": type(value).__name__}

    def lookup(self, node, depth):
        if set(node) != {"t", "id", "type"} or node["id"] not in self.objects:
            raise self.wire.Malformed("a handle to an object this process does not hold")
        return self.objects[node["id"]]

    def record(self, node, depth):
        if set(node) != {"t", "type", "attrs"} or not isinstance(node["attrs"], dict):
            raise self.wire.Malformed("a malformed record")
        decode = self.decoder
        attrs = {str(k): decode(v, depth + 1) for k, v in node["attrs"].items()}
        return Record(str(node["type"]), **attrs)

    def call(self, ns, message, buffers):
        self.decoder = self.wire.Decoder(
            buffers, handle=self.lookup, record=self.record, layout=True
        )
        args = self.decoder(message["args"])
        kwargs = self.decoder(message["kwargs"])
        function = ns.get(message["name"])
        if not callable(function):
            raise NameError(f"name {message['name']!r} is not defined")
        result = function(*args, **kwargs)
        encoder = self.wire.Encoder(self.handle)
        value = encoder(result)
        wrote = [
            [index, encoder.array(a)]
            for a, index in self.decoder.arrays
            if a.tobytes() != bytes(buffers[index])
        ]
        return {"value": value, "wrote": wrote}, encoder.buffers

    def serve(self, ns):
        while True:
            try:
                message, buffers = self.wire.read_blocking(self.fd_in)
            except self.wire.Closed:
                return
            seq = message.get("seq")
            try:
                reply, out = self.call(ns, message, buffers)
                self.send({"seq": seq, **reply}, out)
            except BaseException as e:  # the student's exception, whatever it is
                message = str(e).splitlines()[0][:300] if str(e) else ""
                self.send({"seq": seq, "error": [type(e).__name__, message]})


def main(argv):
    fd_in, fd_out, site = int(argv[1]), int(argv[2]), argv[3]
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:0] = [here, site]
    import numpy as np
    import wire

    np.ones((64, 64)) @ np.ones((64, 64))  # BLAS sets up its buffers now, not in a capped call
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    server = Server(wire, fd_in, fd_out)
    load, _ = wire.read_blocking(fd_in)
    ns = {"__name__": "__main__", "__builtins__": builtins, "get_ipython": _IPython}

    def starting(cell, line):
        server.send({"op": "running", "cell": cell, "line": line})

    failed = run_statements(load["cells"], ns, load["statement_timeout"], starting)
    kinds = {name: kind_of(ns.get(name)) for name in load["names"]}
    server.send({"op": "ready", "failed": failed, "kinds": kinds})
    server.serve(ns)


if __name__ == "__main__":
    main(sys.argv)

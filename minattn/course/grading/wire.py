"""The channel between the grader and the isolated process that runs a student's functions.

One message is one frame: a fixed header (magic, JSON length, data length), a JSON
document, then the raw bytes of every array it holds. Values travel as a tree of tagged
nodes, never as pickles:

    None, bool, int, float, str         as themselves
    {"t": "tuple" | "list" | "set" | "frozenset", "v": [...]}
    {"t": "dict", "k": [...], "v": [...]}
    {"t": "nd", "b": buffer, "dtype": "<f8", "shape": [...], "strides": [...], "w": writeable}
    {"t": "np", "b": buffer, "dtype": "<f8"}                     a NumPy scalar
    {"t": "complex", "re": 1.0, "im": 2.0}
    {"t": "dtype", "dtype": "<f4", "type": true}  np.float32 (false: np.dtype("float32"))
    {"t": "pytype", "name": "float"}              one of bool, int, float, complex, str
    {"t": "handle", "id": 3, "type": "MyCache"}   an object that stays in the isolated process
    {"t": "record", "type": "GradcheckReport", "attrs": {...}}  the attributes of one of the
                                                  grader's objects (grader -> isolated only)

`decode` is strict: an unknown tag, a missing or extra key, a dtype that is not a number
(object arrays never travel), a buffer whose length does not match its shape, a tree too
deep: each is a `Malformed` error, which costs the exercise being graded and can never
become a score. A stray ``print`` cannot desynchronise the channel: it is a pipe of its
own, and anything written into it that is not a frame is `Malformed` at once.

This file is imported by the grader and copied, alone, next to the isolated process, so it
uses only the standard library and NumPy.
"""

import json
import os
import re
import selectors
import struct
import time

import numpy as np

MAGIC = b"MNAT"
HEADER = struct.Struct(">4sIQ")  # magic, JSON length, data length
MAX_JSON = 64 << 20
MAX_DATA = 4 << 30
MAX_DEPTH = 40
DTYPE = re.compile(r"^[<>|=]?[biufc][0-9]{1,2}$")
CONTAINERS = {"tuple": tuple, "list": list, "set": set, "frozenset": frozenset}
PYTYPES = {t.__name__: t for t in (bool, int, float, complex, str)}


class Malformed(Exception):
    """The other side sent something that is not a well-formed message."""


class Closed(Exception):
    """The other side closed the channel (the process exited)."""


class Timeout(Exception):
    """No complete message arrived before the deadline."""


# ---------------------------------------------------------------- values <-> nodes


class Encoder:
    """Turns a value into a JSON-able node tree plus a list of byte buffers.

    handle(value, depth, encoder) is called for what is not plain data and returns its node; the
    isolated process keeps such objects and sends a handle, the grader sends a record.
    """

    def __init__(self, handle):
        self.handle = handle
        self.buffers = []
        self.sources = []  # the array each buffer was made from

    def __call__(self, value, depth=0):
        if depth > MAX_DEPTH:
            raise Malformed(f"nested deeper than {MAX_DEPTH} levels")
        if value is None or isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, complex):
            return {"t": "complex", "re": value.real, "im": value.imag}
        if isinstance(value, np.ndarray) and _number_dtype(value.dtype):
            return self.array(value)
        if isinstance(value, np.generic) and _number_dtype(value.dtype):
            return {"t": "np", "b": self.buffer(np.asarray(value)), "dtype": value.dtype.str}
        if isinstance(value, np.dtype) and _number_dtype(value):
            return {"t": "dtype", "dtype": value.str, "type": False}
        if isinstance(value, type) and issubclass(value, np.generic):
            if _number_dtype(np.dtype(value)):
                return {"t": "dtype", "dtype": np.dtype(value).str, "type": True}
        if any(value is t for t in PYTYPES.values()):
            return {"t": "pytype", "name": value.__name__}
        for tag, kind in CONTAINERS.items():
            if type(value) is kind:
                return {"t": tag, "v": [self(v, depth + 1) for v in value]}
        if type(value) is dict:
            return {
                "t": "dict",
                "k": [self(k, depth + 1) for k in value],
                "v": [self(v, depth + 1) for v in value.values()],
            }
        return self.handle(value, depth, self)

    def buffer(self, array):
        self.buffers.append(np.ascontiguousarray(array).tobytes())
        self.sources.append(array)
        return len(self.buffers) - 1

    def array(self, a):
        return {
            "t": "nd",
            "b": self.buffer(a),
            "dtype": a.dtype.str,
            "shape": list(a.shape),
            "strides": list(a.strides),
            "w": bool(a.flags.writeable),
        }


def _number_dtype(dtype):
    return dtype.kind in "biufc" and not dtype.hasobject and DTYPE.match(dtype.str) is not None


class Decoder:
    """Turns a node tree and its buffers back into values, checking every node.

    handle(node) and record(node) build the objects of those tags; either may be None
    (that tag is then malformed on this side). layout: rebuild arrays with their
    sender's strides and writeable flag (the isolated side), else plain arrays.
    """

    def __init__(self, buffers, *, handle=None, record=None, layout=False):
        self.buffers = buffers
        self.handle, self.record, self.layout = handle, record, layout
        self.arrays = []  # (array, its buffer index): to see later what a call wrote into

    def __call__(self, node, depth=0):
        if depth > MAX_DEPTH:
            raise Malformed(f"nested deeper than {MAX_DEPTH} levels")
        if node is None or isinstance(node, bool | int | float | str):
            return node
        if not isinstance(node, dict) or not isinstance(node.get("t"), str):
            raise Malformed(f"not a value node: {type(node).__name__}")
        tag = node["t"]
        if tag in CONTAINERS:
            _keys(node, "t", "v")
            return CONTAINERS[tag](self(v, depth + 1) for v in _list(node["v"]))
        if tag == "dict":
            _keys(node, "t", "k", "v")
            keys, values = _list(node["k"]), _list(node["v"])
            if len(keys) != len(values):
                raise Malformed("a dict with more keys than values")
            return {
                self(k, depth + 1): self(v, depth + 1) for k, v in zip(keys, values, strict=True)
            }
        if tag == "complex":
            _keys(node, "t", "re", "im")
            return complex(_float(node["re"]), _float(node["im"]))
        if tag == "nd":
            return self.array(node)
        if tag == "dtype":
            _keys(node, "t", "dtype", "type")
            dtype = _dtype(node["dtype"])
            return dtype.type if node["type"] is True else dtype
        if tag == "pytype":
            _keys(node, "t", "name")
            if node["name"] not in PYTYPES:
                raise Malformed(f"an unknown type {str(node['name'])[:40]!r}")
            return PYTYPES[node["name"]]
        if tag == "np":
            _keys(node, "t", "b", "dtype")
            dtype = _dtype(node["dtype"])
            data = self.buffer(node["b"], dtype.itemsize)
            return np.frombuffer(data, dtype=dtype)[0]
        build = {"handle": self.handle, "record": self.record}.get(tag)
        if build is None:
            raise Malformed(f"unknown value tag {tag!r}")
        return build(node, depth)

    def buffer(self, index, size):
        if not isinstance(index, int) or isinstance(index, bool):
            raise Malformed("a buffer index that is not an integer")
        if not 0 <= index < len(self.buffers):
            raise Malformed(f"buffer {index} does not exist")
        data = self.buffers[index]
        if len(data) != size:
            raise Malformed(f"buffer {index} holds {len(data)} bytes, its array needs {size}")
        return data

    def array(self, node):
        _keys(node, "t", "b", "dtype", "shape", "strides", "w")
        dtype = _dtype(node["dtype"])
        shape = tuple(_int(n) for n in _list(node["shape"]))
        if len(shape) > 32 or any(n < 0 for n in shape):
            raise Malformed(f"an array shape that cannot be: {shape}")
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        data = self.buffer(node["b"], size)
        values = np.frombuffer(data, dtype=dtype).reshape(shape)
        if not self.layout:
            return values.copy()
        strides = tuple(_int(s) for s in _list(node["strides"]))
        if len(strides) != len(shape):
            raise Malformed("strides and shape of different lengths")
        a = strided_like(values, strides)
        a.flags.writeable = bool(node["w"])
        self.arrays.append((a, node["b"]))
        return a


def strided_like(values, strides):
    """A copy of ``values`` laid out in memory with ``strides`` (bytes), in a fresh buffer."""
    if values.size == 0 or strides == values.strides or any(s % values.itemsize for s in strides):
        return values.copy()
    low = sum(min(0, (n - 1) * s) for n, s in zip(values.shape, strides, strict=True))
    high = sum(max(0, (n - 1) * s) for n, s in zip(values.shape, strides, strict=True))
    if high - low > 64 * values.nbytes + 4096:  # broadcast or exotic: not worth the memory
        return values.copy()
    base = np.zeros(high - low + values.itemsize, dtype=np.uint8)
    a = np.ndarray(values.shape, values.dtype, buffer=base, offset=-low, strides=strides)
    a[...] = values
    return a


def _keys(node, *keys):
    if set(node) != set(keys):
        raise Malformed(f"a {node.get('t')!r} node with keys {sorted(node)}, expected {keys}")


def _list(value):
    if not isinstance(value, list):
        raise Malformed(f"expected a list, got {type(value).__name__}")
    return value


def _int(value):
    if not isinstance(value, int) or isinstance(value, bool):
        raise Malformed(f"expected an integer, got {type(value).__name__}")
    return value


def _float(value):
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise Malformed(f"expected a number, got {type(value).__name__}")
    return float(value)


def _dtype(text):
    if not isinstance(text, str) or not DTYPE.match(text):
        raise Malformed(f"a dtype that is not a plain number type: {str(text)[:40]!r}")
    return np.dtype(text)


# ---------------------------------------------------------------- frames


def frame(message, buffers=()):
    """The bytes of one frame: ``message`` (JSON-able, holding buffer indices) and buffers."""
    body = json.dumps({"m": message, "b": [len(b) for b in buffers]}).encode()
    return b"".join([HEADER.pack(MAGIC, len(body), sum(len(b) for b in buffers)), body, *buffers])


def parse(header, body, data):
    """(message, buffers) from the parts of one frame; raises `Malformed`."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise Malformed(f"the message is not JSON ({type(e).__name__})") from None
    if not isinstance(doc, dict) or set(doc) != {"m", "b"}:
        raise Malformed("the message is not a frame document")
    sizes = [_int(n) for n in _list(doc["b"])]
    if any(n < 0 for n in sizes) or sum(sizes) != len(data):
        raise Malformed("the buffer table does not match the data")
    offsets = np.cumsum([0, *sizes]).tolist()
    view = memoryview(data)
    return doc["m"], [view[a:b] for a, b in zip(offsets[:-1], offsets[1:], strict=True)]


def _lengths(header):
    magic, json_length, data_length = HEADER.unpack(header)
    if magic != MAGIC:
        raise Malformed(f"a frame must start with {MAGIC!r}, got {magic!r}")
    if json_length > MAX_JSON or data_length > MAX_DATA:
        raise Malformed(f"a frame of {json_length} + {data_length} bytes is too large")
    return json_length, data_length


def read_blocking(fd):
    """One frame from ``fd``, waiting as long as it takes (the isolated side)."""
    header = _read_exactly(fd, HEADER.size)
    json_length, data_length = _lengths(header)
    return parse(header, _read_exactly(fd, json_length), _read_exactly(fd, data_length))


def _read_exactly(fd, n):
    parts, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise Closed("the channel closed")
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def write_blocking(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Reader:
    """Reads frames from a non-blocking pipe with a deadline (the grader's side)."""

    def __init__(self, fd):
        self.fd = fd
        os.set_blocking(fd, False)
        self.selector = selectors.DefaultSelector()
        self.selector.register(fd, selectors.EVENT_READ)

    def read(self, deadline):
        header = self._exactly(HEADER.size, deadline)
        json_length, data_length = _lengths(header)
        body = self._exactly(json_length, deadline)
        return parse(header, body, self._exactly(data_length, deadline))

    def _exactly(self, n, deadline):
        buffer = bytearray()
        while len(buffer) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self.selector.select(left):
                raise Timeout("no answer in time")
            try:
                chunk = os.read(self.fd, min(n - len(buffer), 1 << 20))
            except BlockingIOError:
                continue
            if not chunk:
                raise Closed("the channel closed")
            buffer += chunk
        return bytes(buffer)

    def close(self):
        self.selector.close()


def write_with_deadline(fd, data, deadline):
    """Write all of ``data`` to a non-blocking pipe, or raise `Timeout` (a stuck reader)."""
    os.set_blocking(fd, False)
    view = memoryview(data)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_WRITE)
        while view:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise Timeout("the other side does not read")
            try:
                view = view[os.write(fd, view) :]
            except BlockingIOError:
                continue
            except BrokenPipeError:
                raise Closed("the channel closed") from None

"""``Module``: what every attention module of minattn shares.

A module owns

    params    dict of live parameter arrays; optimisers and ``load_state_dict`` write into
              them in place, so a module holding another sees the same arrays
    buffers   dict of state that is not learned (BatchNorm's running statistics)
    grads     dict, the parameters' gradients of the last ``backward``
    ops       the backend's step functions (`minattn.backend`), chosen once here

A constructor validates its arguments, then hands its parameters to ``_set_params``; a
subclass supplies

    _validate_inputs(*inputs)   clear errors for bad input
    _forward(*inputs)        the steps, each called as ``self.ops.<step>``; sets ``self._cache``
    _backward(*douts)        the steps in reverse; sets ``self.grads``; returns the input gradients

Every step goes through ``self.ops`` so that a trace (``forward(x, trace=fn)``) sees each
step's output by the step's name, and `minattn.compare_steps` can swap one step for a
student's own.
"""

import contextlib

import numpy as np

from ..backend import BACKENDS, TracedOps, ops_for
from ..validate import as_tuple, validate_array, validate_choice, validate_dtype


class Module:
    input_names = ("x",)  # names of forward's inputs; their gradients are "d" + name
    output_names = ("y",)
    step_labels = {}  # "<function>#<k>" -> the article's name for that call, shown by traces

    def __init__(self, *, backend="numpy", dtype=np.float64):
        self.backend = validate_choice(backend, "backend", BACKENDS)
        self.dtype = validate_dtype(dtype)
        self.ops = ops_for(self.backend)
        self.params = {}
        self.buffers = {}
        self.grads = {}
        self.children = []  # modules this one holds; they share its mode and its trace
        self.training = True
        self._cache = None

    # ------------------------------------------------------------ parameters and state

    def _set_params(self, params, buffers=None):
        """Adopt the parameters (and buffers) a constructor made, with zero gradients."""
        self.params = params
        self.buffers = buffers if buffers is not None else {}
        self.grads = {name: np.zeros_like(p) for name, p in params.items()}

    def state_dict(self):
        """Copies of the parameters and buffers, keyed and shaped as the PyTorch original."""
        return {name: a.copy() for name, a in {**self.params, **self.buffers}.items()}

    def load_state_dict(self, state_dict):
        """Load parameters and buffers (strict: missing, extra or misshapen entries are errors).

        Values are converted to the module's dtype (integer buffers keep theirs) and copied
        into the live arrays; on any error nothing is changed. CPU torch tensors load as is.
        """
        if not isinstance(state_dict, dict):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        live = {**self.params, **self.buffers}
        missing = sorted(set(live) - set(state_dict))
        extra = sorted(set(state_dict) - set(live))
        if missing or extra:
            raise ValueError(
                f"state_dict keys do not match: missing {missing}, unexpected {extra}; "
                f"expected exactly {sorted(live)}"
            )
        values = {}
        for name, target in live.items():
            value = np.asarray(state_dict[name])
            if value.shape != target.shape:
                raise ValueError(
                    f"state_dict[{name!r}] has shape {value.shape}, expected {target.shape} "
                    f"({self!r})"
                )
            if value.dtype.kind not in "fiub":
                raise TypeError(
                    f"state_dict[{name!r}] must hold numbers (a float array), got dtype "
                    f"{value.dtype}"
                )
            if target.dtype.kind == "f":
                validate_array(value.astype(np.float64), f"state_dict[{name!r}]")
            values[name] = value
        for name, value in values.items():
            live[name][...] = value
        self._cache = None

    def _validate_params(self):
        """Parameters replaced by hand must still be arrays of the module's dtype and shape.

        Without this, a float64 array put into a float32 module would silently turn
        every output into float64.
        """
        for name, p in self.params.items():
            if not isinstance(p, np.ndarray) or p.dtype != self.dtype:
                got = p.dtype if isinstance(p, np.ndarray) else type(p).__name__
                raise TypeError(
                    f"params[{name!r}] is {got}, but the module computes in {self.dtype}; "
                    f"write into the array (params[{name!r}][...] = value) instead of replacing it"
                )

    # ------------------------------------------------------------ modes

    def train(self, mode=True):
        """Training mode (the default): BatchNorm uses batch statistics and updates running ones."""
        self.training = bool(mode)
        for child in self.children:
            child.train(mode)
        return self

    def eval(self):
        """Evaluation mode: BatchNorm uses its running statistics."""
        return self.train(False)

    # ------------------------------------------------------------ forward and backward

    def __call__(self, *inputs, **kwargs):
        return self.forward(*inputs, **kwargs)

    def forward(self, *inputs, trace=None):
        """Run the steps; ``trace(name, array)``, if given, sees every step's output in order."""
        if len(inputs) != len(self.input_names):
            raise TypeError(
                f"{type(self).__name__}.forward takes {len(self.input_names)} input(s) "
                f"({', '.join(self.input_names)}), got {len(inputs)}"
            )
        self._validate_inputs(*inputs)
        self._validate_params()
        with np.errstate(over="ignore", invalid="ignore"), self._tracing(trace) as show:
            for name, a in zip(self.input_names, inputs, strict=True):
                show(name, a)
            outputs = self._forward(*inputs)
            outputs = as_tuple(outputs)
            for name, a in zip(self.output_names, outputs, strict=True):
                show(name, a)
        for name, a in zip(self.output_names, outputs, strict=True):
            _raise_if_not_finite(a, f"the output {name}", inputs)
        self._out = [(a.shape, a.dtype) for a in outputs]
        return outputs if len(outputs) > 1 else outputs[0]

    def backward(self, *douts, trace=None):
        """Gradients of the inputs from those of the outputs; fills ``self.grads``."""
        if self._cache is None:
            raise ValueError(
                f"backward() needs the cache of a forward pass: call "
                f"forward({', '.join(self.input_names)}) first (load_state_dict() clears the cache)"
            )
        if len(douts) != len(self.output_names):
            raise TypeError(
                f"{type(self).__name__}.backward takes {len(self.output_names)} gradient(s) "
                f"(d{', d'.join(self.output_names)}), got {len(douts)}"
            )
        for name, d, (shape, dtype) in zip(self.output_names, douts, self._out, strict=True):
            validate_array(d, f"d{name}", dtype=dtype)
            if d.shape != shape:
                raise ValueError(
                    f"d{name} has shape {d.shape}, expected {shape}, the shape of the last "
                    f"forward's output {name}"
                )
        with np.errstate(over="ignore", invalid="ignore"), self._tracing(trace) as show:
            for name, d in zip(self.output_names, douts, strict=True):
                show("d" + name, d)
            dinputs = self._backward(*douts)
            dinputs = as_tuple(dinputs)
            for name, d in zip(self.input_names, dinputs, strict=True):
                show("d" + name, d)
            for name, g in self.grads.items():
                show(f"grads[{name}]", g)
        for name, d in zip(self.input_names, dinputs, strict=True):
            _raise_if_not_finite(d, f"the gradient d{name}", douts)
        return dinputs if len(dinputs) > 1 else dinputs[0]

    @contextlib.contextmanager
    def _tracing(self, trace):
        """Swap every module's ``ops`` for one that reports each step's output to ``trace``."""
        if trace is None:
            yield lambda name, a: None
            return
        counts = {}
        swapped = []
        stack = [self]
        while stack:
            m = stack.pop()
            swapped.append((m, m.ops))
            m.ops = TracedOps(m.ops, trace, counts, m.step_labels)
            stack.extend(m.children)
        try:
            yield trace
        finally:
            for m, ops in swapped:
                m.ops = ops

    def _validate_inputs(self, *inputs):
        raise NotImplementedError

    def _forward(self, *inputs):
        raise NotImplementedError

    def _backward(self, *douts):
        raise NotImplementedError


def _raise_if_not_finite(result, what, given):
    """Overflow (energies beyond the dtype's range) gives inf and NaN: say so, not return them."""
    if not np.isfinite(result).all():
        largest = max(float(np.abs(g).max()) for g in given)
        raise ValueError(
            f"{what} is not finite: the input's largest magnitude, {largest:.3g}, overflows "
            f"{result.dtype} somewhere in the attention (energies grow with its square); "
            f"rescale the input or use dtype=np.float64"
        )

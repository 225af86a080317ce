"""Tensor: an n-dimensional array that remembers how it was made, for reverse-mode autograd.

Each operation computes its result (forward) and, right beside it, a closure that turns
the gradient of the result into gradients of its inputs (backward), as in micrograd.
``Tensor.backward()`` visits the graph in reverse topological order and applies the
chain rule once per node. Broadcasting is allowed everywhere; the one place that sums a
gradient back to an input's shape is :func:`unbroadcast`.

Arrays come from the active backend (``backend.xp``: NumPy, or CuPy on a GPU).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import numpy as np

from tinygpt import backend
from tinygpt import random as _random

# --------------------------------------------------------------------------- grad mode

_grad_enabled = True


class no_grad:
    """Context manager (and decorator) that stops recording the graph, like torch.no_grad."""

    def __enter__(self):
        global _grad_enabled
        self._prev = _grad_enabled
        _grad_enabled = False

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._prev
        return False

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper


def is_grad_enabled() -> bool:
    return _grad_enabled


# --------------------------------------------------------------------------- helpers


def unbroadcast(grad, shape: tuple[int, ...]):
    """Sum ``grad`` over the axes that broadcasting added or stretched, back to ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


class SliceGrad:
    """The gradient of a slicing read ``a[index]``: zeros of ``shape`` with ``value`` at
    ``index``, left unbuilt. ``Tensor.backward`` adds it into the input's gradient buffer in
    place, so the chunks of a ``split`` (q, k and v) fill one buffer instead of three
    full-size arrays of zeros that are then summed (config b's qkv split, backward through
    reshape and transpose: 20.7 -> 15.5 ms)."""

    __slots__ = ("shape", "index", "value")

    def __init__(self, shape, index, value):
        self.shape, self.index, self.value = shape, index, value


def _accumulate(grads: dict, owned: set, p: Tensor, pg) -> None:
    """Add the gradient ``pg`` flowing into ``p`` to what ``grads`` holds for it.

    ``owned`` has the ids of arrays this backward pass allocated itself and stored only in
    ``grads``: those may be added into in place. Anything a backward function returned may
    be shared (``a + b`` hands the same gradient to both inputs) and is never written to.
    """
    key = id(p)
    prev = grads.get(key)
    if type(pg) is SliceGrad:
        v = pg.value
        if prev is None or id(prev) not in owned or prev.dtype != v.dtype:
            if prev is None:
                buf = backend.array_module(v).zeros(pg.shape, dtype=v.dtype)
            else:  # a copy we own (astype copies), of the wider dtype if they differ
                buf = prev.astype(np.result_type(prev, v))
            grads[key] = prev = buf
            owned.add(id(buf))
        prev[pg.index] += v
        return
    pg = unbroadcast(pg, p.data.shape)
    if prev is None:
        grads[key] = pg
    elif id(prev) in owned and prev.dtype == pg.dtype:
        prev += pg
    else:
        grads[key] = total = prev + pg
        owned.add(id(total))


def _normalize_axis(axis, ndim: int) -> tuple[int, ...]:
    """Axes as a tuple of non-negative ints (``None`` means all)."""
    axes = (axis,) if isinstance(axis, numbers.Integral) or axis is None else tuple(axis)
    if axes in ((None,), ()):  # torch reduces everything for dim=() as for None
        return tuple(range(ndim))
    out = []
    for a in axes:
        if not -ndim <= a < max(ndim, 1):
            raise IndexError(f"axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(a % max(ndim, 1))
    return tuple(out)


def _reduce_args(axis, keepdims, dim, keepdim):
    """Accept both NumPy names (axis, keepdims) and PyTorch names (dim, keepdim)."""
    if dim is not None:
        axis = dim
    if keepdim is not None:
        keepdims = keepdim
    return axis, bool(keepdims)


def _expand_reduced(grad, shape, axes, keepdims):
    """Give a reduced gradient back the reduced axes (size 1) so it broadcasts over ``shape``."""
    if not keepdims:
        for a in sorted(axes):
            grad = backend.array_module(grad).expand_dims(grad, a)
    return grad


def _is_float(dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


def _to_array(data, dtype=None):
    """Array of the active backend from anything array-like (float32 for Python floats)."""
    xp = backend.xp
    if isinstance(data, Tensor):
        data = data.data
    if isinstance(data, (list, tuple)) and any(isinstance(d, Tensor) for d in data):
        raise TypeError("tensor: a list of Tensors is not array data; use tinygpt.stack or "
                        "tinygpt.cat (they keep the graph)")
    if dtype is not None:
        arr = xp.asarray(data, dtype=dtype)
    elif isinstance(data, (np.ndarray, np.generic)) or hasattr(data, "__cuda_array_interface__"):
        arr = xp.asarray(data)  # keep the caller's dtype (float64 stays float64)
    else:
        arr = np.asarray(data)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)  # Python floats: float32 by default, like torch
        elif np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.int64)
    if arr.dtype.kind not in "biuf":  # object, string, complex, datetime: not numbers we do
        raise TypeError(f"tensor: cannot make a tensor of {type(data).__name__} data "
                        f"(dtype {arr.dtype}); give numbers (bool, int or float)")
    return xp.asarray(arr)


# --------------------------------------------------------------------------- Tensor


class Tensor:
    """An array with an optional gradient and a record of the op that produced it."""

    __slots__ = ("data", "grad", "requires_grad", "_backward", "_prev", "_op", "__weakref__")
    __array_ufunc__ = None  # make `numpy_array * tensor` call Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _to_array(data, dtype)
        self.grad = None
        self._backward: Callable | None = None
        self._prev: tuple[Tensor, ...] = ()
        self._op = ""
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # -- properties ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def T(self) -> Tensor:
        return self.permute(*reversed(range(self.ndim)))

    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    def size(self, dim: int | None = None):
        return self.shape if dim is None else self.shape[dim]

    def numel(self) -> int:
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __bool__(self) -> bool:
        """``if t:`` for a one-element tensor, as in torch; more elements are ambiguous."""
        if self.data.size != 1:
            raise RuntimeError(f"the truth value of a tensor with {self.data.size} elements "
                               f"is ambiguous; reduce it first (e.g. (t > 0).sum().item())")
        return bool(self.data.reshape(()).item())

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and not _is_float(self.dtype):
            raise TypeError(f"only floating-point tensors can require grad, got {self.dtype}")
        self.requires_grad = flag
        return self

    def numpy(self) -> np.ndarray:
        """A host NumPy copy of the data (never part of the graph)."""
        return backend.to_numpy(self.data).copy()

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape {self.shape}")
        return self.data.reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self.data).tolist()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def to(self, dtype) -> Tensor:
        """A copy cast to ``dtype`` (gradients flow back, cast to the input's dtype)."""
        src = self.dtype
        return _make(self.data.astype(dtype), (self,), lambda g: (g.astype(src),), "to")

    astype = to

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

    def __repr__(self) -> str:
        body = np.array2string(backend.to_numpy(self.data), precision=4, separator=", ")
        extra = ", requires_grad=True" if self.requires_grad else ""
        if self.dtype != np.float32:
            extra = f", dtype={self.dtype}" + extra
        return f"tensor({body}{extra})"

    # -- backward -------------------------------------------------------------------
    def backward(self, gradient=None) -> None:
        """Accumulate d(self)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad (none of its inputs requires grad, "
                "or it was computed under no_grad)"
            )
        xp = backend.array_module(self.data)
        if gradient is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward: a gradient argument is needed for a non-scalar output of shape "
                    f"{self.shape} (grad can be created implicitly only for scalars)"
                )
            gradient = xp.ones_like(self.data)
        else:
            gradient = _to_array(gradient, self.dtype)
            if gradient.shape != self.data.shape:
                raise ValueError(
                    f"backward: gradient shape {tuple(gradient.shape)} does not match "
                    f"the tensor's shape {self.shape}"
                )

        # Iterative depth-first search: deep graphs must not hit Python's recursion limit.
        order: list[Tensor] = []
        visited: set[int] = set()
        stack: list[tuple[Tensor, bool]] = [(self, False)]
        while stack:
            node, expanded = stack.pop()
            if expanded:
                order.append(node)
                continue
            if id(node) in visited:
                continue
            visited.add(id(node))
            stack.append((node, True))
            for p in node._prev:
                if p.requires_grad and id(p) not in visited:
                    stack.append((p, False))

        grads = {id(self): gradient}
        owned: set[int] = set()  # arrays allocated here, held only by `grads` (see _accumulate)
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            mine = id(g) in owned
            owned.discard(id(g))  # from here on g may be handed to several inputs
            if node._backward is None:  # a leaf: keep its gradient
                if node.grad is None:
                    # own the memory: the optimizer updates it in place
                    node.grad = g if mine else g.copy()
                else:
                    node.grad = node.grad + g
                continue
            if node._op == "freed":
                raise RuntimeError("backward: the graph was already freed by an earlier backward")
            for p, pg in zip(node._prev, node._backward(g)):
                if pg is not None and p.requires_grad:
                    _accumulate(grads, owned, p, pg)
            # Free what the backward closure saved (no retain_graph), like PyTorch.
            node._backward, node._prev, node._op = _freed, (), "freed"

    # -- elementwise arithmetic --------------------------------------------------------
    def __add__(self, other) -> Tensor:
        a, other = _both(self, other)
        return _make(a.data + other.data, (a, other), lambda g: (g, g), "add")

    __radd__ = __add__

    def __sub__(self, other) -> Tensor:
        a, other = _both(self, other)
        return _make(a.data - other.data, (a, other), lambda g: (g, -g), "sub")

    def __rsub__(self, other) -> Tensor:
        return _lift(other, self) - self

    def __mul__(self, other) -> Tensor:
        x, other = _both(self, other)
        a, b = x.data, other.data
        return _make(a * b, (x, other), lambda g: (g * b, g * a), "mul")

    __rmul__ = __mul__

    def __truediv__(self, other) -> Tensor:
        x, other = _both(self, other)
        x, other = _floating(x), _floating(other)  # int / int is float32, as in torch
        a, b = x.data, other.data
        return _make(a / b, (x, other), lambda g: (g / b, -g * a / (b * b)), "div")

    def __rtruediv__(self, other) -> Tensor:
        return _lift(other, self) / self

    def __pow__(self, exponent) -> Tensor:
        if isinstance(exponent, numbers.Number):
            # a Python number keeps a's dtype (NumPy 2 makes float32 ** np.float64(2) float64);
            # an int tensor to a fractional power is float32, as in torch
            if isinstance(exponent, numbers.Integral):
                x, exponent = self, int(exponent)
            else:
                x, exponent = _floating(self), float(exponent)
            a = x.data
            out = a**exponent
            if exponent == 0:  # d/da a**0 = 0 everywhere (a ** -1 would make 0 * inf = NaN)
                return _make(out, (x,), lambda g: (g * 0,), "pow")
            return _make(out, (x,), lambda g: (g * exponent * a ** (exponent - 1),), "pow")
        x, e = _both(self, exponent)
        a = x.data
        out = a**e.data
        xp = backend.array_module(a)

        def backward(g):
            # d/de a**e = a**e * log(a): only defined for a > 0; 0 elsewhere, like torch for a == 0
            log_a = xp.log(xp.where(a > 0, a, 1))
            return g * e.data * a ** (e.data - 1), g * out * log_a

        return _make(out, (x, e), backward, "pow")

    def __rpow__(self, base) -> Tensor:
        return _lift(base, self) ** self

    def __neg__(self) -> Tensor:
        return _make(-self.data, (self,), lambda g: (-g,), "neg")

    def __pos__(self) -> Tensor:
        return self

    # comparisons give boolean tensors outside the graph (they have no gradient)
    def __eq__(self, other):  # type: ignore[override]
        return Tensor(self.data == _raw(other))

    def __ne__(self, other):  # type: ignore[override]
        return Tensor(self.data != _raw(other))

    def __lt__(self, other):
        return Tensor(self.data < _raw(other))

    def __le__(self, other):
        return Tensor(self.data <= _raw(other))

    def __gt__(self, other):
        return Tensor(self.data > _raw(other))

    def __ge__(self, other):
        return Tensor(self.data >= _raw(other))

    __hash__ = object.__hash__

    # -- in place: x += y ---------------------------------------------------------------
    def _in_place(self, other, op: str) -> Tensor:
        """``self op= other``. Where no gradient is recorded through it (an update under
        ``no_grad``, plain data) the array is written in place, in self's dtype, as torch.
        A leaf that requires grad refuses while gradients are recorded, as torch; any other
        tensor in a graph gets a new node (Python rebinds the name; other names for the old
        tensor keep the old value, where torch would track the change)."""
        tracked = self.requires_grad or (isinstance(other, Tensor) and other.requires_grad)
        if _grad_enabled and tracked:
            if self.requires_grad and self.is_leaf:
                raise RuntimeError(f"a leaf tensor that requires grad cannot be changed in place "
                                   f"({op}=) while gradients are recorded: do the update under "
                                   f"tg.no_grad(), or write x = x {op} y")
            return {"+": Tensor.__add__, "-": Tensor.__sub__, "*": Tensor.__mul__,
                    "/": Tensor.__truediv__}[op](self, other)
        xp = backend.array_module(self.data)
        ufunc = {"+": xp.add, "-": xp.subtract, "*": xp.multiply, "/": xp.true_divide}[op]
        ufunc(self.data, _raw(other), out=self.data, casting="same_kind")
        return self

    def __iadd__(self, other) -> Tensor:
        return self._in_place(other, "+")

    def __isub__(self, other) -> Tensor:
        return self._in_place(other, "-")

    def __imul__(self, other) -> Tensor:
        return self._in_place(other, "*")

    def __itruediv__(self, other) -> Tensor:
        return self._in_place(other, "/")

    # -- matmul ----------------------------------------------------------------------
    def __matmul__(self, other) -> Tensor:
        self, other = _both(self, other)  # an int side takes the float side's dtype
        a, b = self.data, other.data
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(f"matmul: both operands need at least 1 dimension, got shapes "
                             f"{self.shape} and {other.shape}")
        k_a = a.shape[-1]
        k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
        if k_a != k_b:
            raise ValueError(f"matmul: shapes {self.shape} and {other.shape} do not align "
                             f"({k_a} != {k_b})")
        try:
            out = a @ b
        except ValueError as e:  # batch dimensions that do not broadcast
            raise ValueError(f"matmul: batch dimensions of shapes {self.shape} and "
                             f"{other.shape} do not broadcast") from e

        def backward(g):
            # Promote 1-d operands to matrices so one rule covers every case.
            a2 = a[None, :] if a.ndim == 1 else a
            b2 = b[:, None] if b.ndim == 1 else b
            g2 = g
            if a.ndim == 1 and b.ndim == 1:  # a dot product: g is a scalar
                g2 = g.reshape(1, 1)
            elif a.ndim == 1:
                g2 = backend.array_module(g).expand_dims(g2, -2)
            elif b.ndim == 1:
                g2 = backend.array_module(g).expand_dims(g2, -1)
            da = g2 @ b2.swapaxes(-1, -2)  # [.., n, m] @ [.., m, k] -> [.., n, k]
            db = a2.swapaxes(-1, -2) @ g2  # [.., k, n] @ [.., n, m] -> [.., k, m]
            da = unbroadcast(da, a2.shape).reshape(a.shape)
            db = unbroadcast(db, b2.shape).reshape(b.shape)
            return da, db

        return _make(out, (self, other), backward, "matmul")

    def __rmatmul__(self, other) -> Tensor:
        return _lift(other, self) @ self

    # -- unary math ------------------------------------------------------------------
    # (of an int or bool tensor, these work on it as float32, as torch does: _floating)
    def exp(self) -> Tensor:
        x = _floating(self)
        out = backend.array_module(x.data).exp(x.data)
        return _make(out, (x,), lambda g: (g * out,), "exp")

    def log(self) -> Tensor:
        x = _floating(self)
        a = x.data
        return _make(backend.array_module(a).log(a), (x,), lambda g: (g / a,), "log")

    def sqrt(self) -> Tensor:
        x = _floating(self)
        out = backend.array_module(x.data).sqrt(x.data)
        return _make(out, (x,), lambda g: (g / (2 * out),), "sqrt")

    def tanh(self) -> Tensor:
        x = _floating(self)
        out = backend.array_module(x.data).tanh(x.data)
        return _make(out, (x,), lambda g: (g * (1 - out * out),), "tanh")

    def sigmoid(self) -> Tensor:
        x = _floating(self)
        xp = backend.array_module(x.data)
        out = 1 / (1 + xp.exp(-x.data))
        return _make(out, (x,), lambda g: (g * out * (1 - out),), "sigmoid")

    def relu(self) -> Tensor:
        a = self.data
        xp = backend.array_module(a)
        # where, not a * (a > 0): -inf * 0 would be NaN; and "a <= 0 -> 0" so that a NaN
        # stays NaN (a diverging layer must show), with gradient 1 there, as torch gives
        zero = xp.zeros((), dtype=a.dtype)
        return _make(xp.where(a <= 0, zero, a), (self,), lambda g: (xp.where(a <= 0, 0, g),),
                     "relu")

    def abs(self) -> Tensor:
        a = self.data
        xp = backend.array_module(a)
        return _make(xp.abs(a), (self,), lambda g: (g * xp.sign(a),), "abs")

    # -- reductions ------------------------------------------------------------------
    def sum(self, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
        axis, keepdims = _reduce_args(axis, keepdims, dim, keepdim)
        axes = _normalize_axis(axis, self.ndim)
        shape = self.data.shape
        xp = backend.array_module(self.data)

        def backward(g):
            return (xp.broadcast_to(_expand_reduced(g, shape, axes, keepdims), shape),)

        return _make(self.data.sum(axis=axes, keepdims=keepdims), (self,), backward, "sum")

    def mean(self, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
        axis, keepdims = _reduce_args(axis, keepdims, dim, keepdim)
        axes = _normalize_axis(axis, self.ndim)
        n = int(np.prod([self.shape[a] for a in axes])) if axes else 1
        # the mean of nothing is NaN (0/0), as in NumPy and torch
        return self.sum(axis=axes, keepdims=keepdims) * (1.0 / n if n else math.nan)

    def var(self, axis=None, keepdims=False, *, correction: int = 1, dim=None, keepdim=None):
        """Variance with Bessel's correction by default (``correction=1``), like torch.var."""
        axis, keepdims = _reduce_args(axis, keepdims, dim, keepdim)
        axes = _normalize_axis(axis, self.ndim)
        n = int(np.prod([self.shape[a] for a in axes])) if axes else 1
        centered = self - self.mean(axis=axes, keepdims=True)
        return (centered * centered).sum(axis=axes, keepdims=keepdims) / max(n - correction, 0)

    def max(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        """Maximum over ``axis`` (NumPy's spelling: the values, as ``amax``); the gradient is
        shared equally between tied maxima. With torch's ``dim=`` (one int) it is torch's
        ``max(dim)``: a ``(values, indices)`` pair, the gradient going to the index given."""
        if dim is not None:
            return _values_indices(self, dim, keepdim, "max")
        return self.amax(axis, keepdims)

    def amax(self, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
        """Maximum over ``axis`` or ``dim`` (an int or a tuple); tied maxima share the
        gradient equally, as torch.amax."""
        axis, keepdims = _reduce_args(axis, keepdims, dim, keepdim)
        axes = _normalize_axis(axis, self.ndim)
        a = self.data
        out_keep = a.max(axis=axes, keepdims=True)
        out = out_keep if keepdims else out_keep.reshape(
            [n for i, n in enumerate(a.shape) if i not in axes])

        def backward(g):
            hit = a == out_keep
            share = hit / hit.sum(axis=axes, keepdims=True)
            return (_expand_reduced(g, a.shape, axes, keepdims) * share,)

        return _make(out, (self,), backward, "max")

    def min(self, axis=None, keepdims=False, *, dim=None, keepdim=None):
        """Minimum: as ``max`` (``dim=`` gives torch's ``(values, indices)``)."""
        if dim is not None:
            return _values_indices(self, dim, keepdim, "min")
        return self.amin(axis, keepdims)

    def amin(self, axis=None, keepdims=False, *, dim=None, keepdim=None) -> Tensor:
        return -((-self).amax(axis, keepdims, dim=dim, keepdim=keepdim))

    def argmax(self, dim=None, keepdim=False, *, axis=None) -> Tensor:
        """Index of the maximum along ``dim`` (of the flattened tensor if None), int64."""
        return _arg_extreme(self, axis if dim is None else dim, keepdim, "argmax")

    def argmin(self, dim=None, keepdim=False, *, axis=None) -> Tensor:
        return _arg_extreme(self, axis if dim is None else dim, keepdim, "argmin")

    # -- shape -----------------------------------------------------------------------
    def reshape(self, *shape) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        src = self.data.shape
        try:
            out = self.data.reshape(shape)
        except ValueError as e:
            raise ValueError(f"reshape: cannot reshape a tensor of shape {self.shape} "
                             f"({self.numel()} elements) into {tuple(shape)}") from e
        return _make(out, (self,), lambda g: (g.reshape(src),), "reshape")

    view = reshape

    def flatten(self, start_dim: int = 0, end_dim: int = -1) -> Tensor:
        s = self.shape
        if not s:
            return self.reshape(1)
        start, end = start_dim % len(s), end_dim % len(s)
        return self.reshape(s[:start] + (int(np.prod(s[start:end + 1])),) + s[end + 1:])

    def permute(self, *dims) -> Tensor:
        if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
            dims = tuple(dims[0])
        if sorted(d % max(self.ndim, 1) for d in dims) != list(range(self.ndim)):
            raise ValueError(f"permute: {dims} is not a permutation of the {self.ndim} "
                             f"dimensions of shape {self.shape}")
        inverse = np.argsort([d % self.ndim for d in dims])
        return _make(self.data.transpose(dims), (self,),
                     lambda g: (g.transpose(inverse),), "permute")

    def transpose(self, dim0: int = -2, dim1: int = -1) -> Tensor:
        for d in (dim0, dim1):
            if not -self.ndim <= d < max(self.ndim, 1):
                raise IndexError(f"transpose: dimension {d} is out of range for a tensor of "
                                 f"shape {self.shape}")
        if self.ndim < 2:  # torch: a 0-d or 1-d tensor transposes to itself
            return self
        dims = list(range(self.ndim))
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return self.permute(*dims)

    def unsqueeze(self, dim: int) -> Tensor:
        dim = _check_dim(dim, self.ndim + 1, "unsqueeze")
        return self.reshape(self.shape[:dim] + (1,) + self.shape[dim:])

    def squeeze(self, dim: int | None = None) -> Tensor:
        if dim is None:
            return self.reshape(tuple(n for n in self.shape if n != 1))
        dim = _check_dim(dim, max(self.ndim, 1), "squeeze")
        if self.ndim == 0 or self.shape[dim] != 1:
            return self
        return self.reshape(self.shape[:dim] + self.shape[dim + 1:])

    def expand(self, *shape) -> Tensor:
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        shape = tuple(s if s != -1 else self.shape[i - len(shape) + self.ndim]
                      for i, s in enumerate(shape))
        xp = backend.array_module(self.data)
        return _make(xp.broadcast_to(self.data, shape), (self,), lambda g: (g,), "expand")

    def split(self, split_size, dim: int = 0) -> list[Tensor]:
        """Chunks along ``dim``, like torch.split: of ``split_size`` each (the last may be
        smaller), or of the sizes in a list (which must add up to the dim's size)."""
        dim = _check_dim(dim, self.ndim, "split")
        n = self.shape[dim]
        if isinstance(split_size, numbers.Integral) and not isinstance(split_size, bool):
            if split_size <= 0:
                raise ValueError(f"split: split_size must be positive, got {split_size}")
            sizes = [min(split_size, n - start) for start in range(0, n, split_size)] or [0]
        else:
            sizes = [int(s) for s in split_size]
            if any(s < 0 for s in sizes) or sum(sizes) != n:
                raise ValueError(f"split: sizes {sizes} must be non-negative and add up to "
                                 f"{n}, the size of dim {dim} (shape {self.shape})")
        index = [slice(None)] * self.ndim
        out, start = [], 0
        for size in sizes:
            index[dim] = slice(start, start + size)
            out.append(self[tuple(index)])
            start += size
        return out

    def chunk(self, chunks: int, dim: int = 0) -> list[Tensor]:
        """At most ``chunks`` pieces of equal size along ``dim`` (the last may be smaller)."""
        if chunks <= 0:
            raise ValueError(f"chunk: chunks must be positive, got {chunks}")
        dim = _check_dim(dim, self.ndim, "chunk")
        return self.split(max(1, -(-self.shape[dim] // chunks)), dim)

    def __getitem__(self, index) -> Tensor:
        index = _raw_index(index)
        a = self.data
        out = a[index]
        xp = backend.array_module(a)

        def backward(g):
            if _is_basic_index(index):  # slices and ints: each element picked at most once
                return (SliceGrad(a.shape, index, g),)  # zeros with g at index, built lazily
            grad = xp.zeros(a.shape, dtype=g.dtype)
            backend.scatter_add(grad, index, g)  # repeated indices add up
            return (grad,)

        return _make(out, (self,), backward, "getitem")

    # -- masking ---------------------------------------------------------------------
    def masked_fill(self, mask, value: float) -> Tensor:
        """Where ``mask`` is True, put ``value``; the gradient there is zero."""
        xp = backend.array_module(self.data)
        m = xp.asarray(_raw(mask)).astype(bool)  # a host mask moves to the device (CuPy)
        out = xp.where(m, xp.asarray(value, dtype=self.dtype), self.data)
        return _make(out, (self,), lambda g: (xp.where(m, 0, g).astype(g.dtype),), "masked_fill")

    def tril(self, diagonal: int = 0) -> Tensor:
        return tril(self, diagonal)

    def triu(self, diagonal: int = 0) -> Tensor:
        return triu(self, diagonal)

    # -- methods that mirror functional ops (so `x.softmax(-1)` reads like torch) --------------
    def softmax(self, dim: int = -1) -> Tensor:
        from tinygpt import functional as F

        return F.softmax(self, dim)

    def log_softmax(self, dim: int = -1) -> Tensor:
        from tinygpt import functional as F

        return F.log_softmax(self, dim)


def _freed(g):
    raise RuntimeError("backward: the graph was already freed by an earlier backward")


# --------------------------------------------------------------------------- graph building


def _make(data, parents: tuple[Tensor, ...], backward: Callable, op: str) -> Tensor:
    """Wrap an op's result; record parents and backward only if a gradient can flow."""
    out = Tensor.__new__(Tensor)
    out.data, out.grad, out._op = data, None, op
    if _grad_enabled and any(p.requires_grad for p in parents):
        out.requires_grad, out._prev, out._backward = True, parents, backward
    else:
        out.requires_grad, out._prev, out._backward = False, (), None
    return out


def _raw(x):
    """The underlying array of a Tensor, or x itself."""
    return x.data if isinstance(x, Tensor) else x


def _lift(x, like: Tensor) -> Tensor:
    """Turn a Python number or array into a Tensor compatible with ``like``.

    Python numbers take ``like``'s dtype (so ``x * 0.5`` stays float32). Two floating
    tensors of different precision are a mix-up we refuse instead of silently upcasting.
    """
    if isinstance(x, Tensor):
        if x.dtype != like.dtype:
            if _is_float(x.dtype) and _is_float(like.dtype):
                raise TypeError(f"dtype mismatch: {like.dtype} and {x.dtype}; "
                                f"convert one with .to(dtype) first")
            # integers/bools meet floats: promote the non-float side, like torch
            if _is_float(like.dtype):
                return x.to(like.dtype)
        return x
    if isinstance(x, numbers.Number):
        if _is_float(like.dtype):
            dtype = like.dtype
        elif isinstance(x, (bool, np.bool_)):
            dtype = None  # a bool array: _both gives it the other side's dtype
        elif isinstance(x, numbers.Integral):  # an int tensor's dtype; a bool's: int64
            dtype = like.dtype if like.dtype != bool else np.int64  # (True + 2 == 3)
        else:
            dtype = np.float32  # a Python float meeting ints: torch's default dtype
        return Tensor(backend.array_module(like.data).asarray(x, dtype=dtype))
    return Tensor(_to_array(x, like.dtype if _is_float(like.dtype) else None))


def _both(a: Tensor, other) -> tuple[Tensor, Tensor]:
    """The two operands of a binary op: ``other`` lifted to match ``a``, and an integer or
    bool ``a`` promoted to the other side's float dtype (NumPy would make int64 + float32
    float64; torch gives float32 whichever side the float is on)."""
    b = _lift(other, a)
    if _is_float(b.dtype) and not _is_float(a.dtype):
        a = a.to(b.dtype)
    elif b.dtype == bool and a.dtype != bool:  # True counts as 1 in a's dtype
        b = b.to(a.dtype)
    elif a.dtype == bool and b.dtype != bool:
        a = a.to(b.dtype)
    return a, b


def _floating(t: Tensor) -> Tensor:
    """``t``, or ``t`` as float32 (torch's default dtype) if it holds ints or bools."""
    return t if _is_float(t.dtype) else t.to(np.float32)


class MaxMin(tuple):
    """torch's ``max(dim)``/``min(dim)`` result: ``values, indices = x.max(dim=1)``."""

    __slots__ = ()

    def __new__(cls, values: Tensor, indices: Tensor):
        return super().__new__(cls, (values, indices))

    values = property(lambda self: self[0])
    indices = property(lambda self: self[1])


def _arg_extreme(t: Tensor, dim, keepdim: bool, op: str) -> Tensor:
    """argmax/argmin along one dim (None: over the flattened tensor), as int64 indices."""
    a = t.data
    if dim is None:
        out = getattr(a.reshape(-1), op)()
        return Tensor(out.reshape((1,) * a.ndim) if keepdim else out)
    if not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: dim must be one int, got {dim!r}")
    dim = _check_dim(dim, max(a.ndim, 1), op)
    return Tensor(getattr(a, op)(axis=dim, keepdims=bool(keepdim)).astype(np.int64))


def _values_indices(t: Tensor, dim, keepdim, op: str) -> MaxMin:
    """torch's ``max(dim)``/``min(dim)``: the values, read at the returned indices, so the
    gradient goes to that one element of each row (the first of tied extremes)."""
    if not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: dim must be one int, got {dim!r} (amax/amin take several)")
    src = t.reshape(1) if t.ndim == 0 else t  # a 0-d tensor has a dim 0, as in torch
    d = _check_dim(dim, src.ndim, op)
    a, xp = src.data, backend.array_module(src.data)
    idx = (a.argmax if op == "max" else a.argmin)(axis=d, keepdims=True)
    keep = bool(keepdim) and t.ndim > 0
    values = xp.take_along_axis(a, idx, axis=d)
    out_shape = values.shape if keep else t.shape[:d] + t.shape[d + 1:]

    def backward(g):
        grad = xp.zeros(a.shape, dtype=g.dtype)
        xp.put_along_axis(grad, idx, g.reshape(idx.shape), axis=d)
        return (grad,)

    values = _make(values.reshape(out_shape), (src,), backward, op)
    return MaxMin(values, Tensor(idx.reshape(out_shape).astype(np.int64)))


def _check_dim(dim: int, ndim: int, op: str) -> int:
    """``dim`` in [-ndim, ndim) as a non-negative axis, else an IndexError like torch's."""
    if not -ndim <= dim < ndim:
        raise IndexError(f"{op}: dim {dim} is out of range for {ndim} dimensions "
                         f"(expected {-ndim} to {ndim - 1})")
    return dim % ndim


def _raw_index(index):
    """Replace Tensors inside an index by their arrays."""
    if isinstance(index, tuple):
        return tuple(_raw(i) for i in index)
    return _raw(index)


def _is_basic_index(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (numbers.Integral, slice)) or p is None or p is Ellipsis
               for p in parts)


# --------------------------------------------------------------------------- functions


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors along an existing dimension."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not tensors:
        raise ValueError("cat: expects a non-empty list of tensors")
    floats = {t.dtype for t in tensors if _is_float(t.dtype)}
    if len(floats) > 1:  # as the binary ops: a precision mix-up, not silently upcast
        raise TypeError(f"cat: dtype mismatch {sorted(str(d) for d in floats)}; convert with "
                        f".to(dtype) first")
    if len(floats) == 1:  # ints or bools joining floats take the float dtype, as in torch
        (dtype,) = floats
        tensors = [t if t.dtype == dtype else t.to(dtype) for t in tensors]
    if any(t.ndim == 0 for t in tensors):
        raise ValueError("cat: a 0-d tensor cannot be joined along a dimension; use stack")
    dim = _check_dim(dim, tensors[0].ndim, "cat")
    xp = backend.array_module(tensors[0].data)
    try:
        out = xp.concatenate([t.data for t in tensors], axis=dim)
    except ValueError as e:
        raise ValueError(f"cat: shapes {[t.shape for t in tensors]} do not match "
                         f"outside dim {dim}") from e
    bounds = np.cumsum([0] + [t.shape[dim] for t in tensors])

    def backward(g):
        index = [slice(None)] * g.ndim
        parts = []
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            index[dim] = slice(int(lo), int(hi))
            parts.append(g[tuple(index)])
        return tuple(parts)

    return _make(out, tuple(tensors), backward, "cat")


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join same-shaped tensors along a new dimension."""
    tensors = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    shapes = {t.shape for t in tensors}
    if len(shapes) != 1:
        got = [t.shape for t in tensors]
        raise ValueError(f"stack: all tensors need the same shape, got {got}")
    return cat([t.unsqueeze(dim) for t in tensors], dim=dim)


def where(condition, x, y) -> Tensor:
    """Elementwise ``x if condition else y`` with gradients routed to the chosen side."""
    if not isinstance(x, Tensor):
        x = _lift(x, y) if isinstance(y, Tensor) else Tensor(x)
    x, y = _both(x, y)
    xp = backend.array_module(x.data)
    c = xp.asarray(_raw(condition)).astype(bool)  # a host condition moves to the device
    out = xp.where(c, x.data, y.data)
    zero = xp.zeros((), dtype=out.dtype)
    return _make(out, (x, y), lambda g: (xp.where(c, g, zero), xp.where(c, zero, g)), "where")


def tril(x: Tensor, diagonal: int = 0) -> Tensor:
    """Keep the lower triangle of the last two dims (zero above ``diagonal``)."""
    xp = backend.array_module(x.data)
    keep = xp.tril(xp.ones(x.shape[-2:], dtype=bool), diagonal)
    return x.masked_fill(~keep, 0.0)


def triu(x: Tensor, diagonal: int = 0) -> Tensor:
    """Keep the upper triangle of the last two dims (zero below ``diagonal``)."""
    xp = backend.array_module(x.data)
    keep = xp.triu(xp.ones(x.shape[-2:], dtype=bool), diagonal)
    return x.masked_fill(~keep, 0.0)


# --------------------------------------------------------------------------- factories


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A new leaf tensor (float32 for Python floats, int64 for Python ints) holding a copy
    of ``data``, as torch.tensor: writing into the array it came from (or into its
    gradient-tracked source Tensor) later does not change it. ``Tensor(array)`` wraps an
    array without copying."""
    t = Tensor(data, requires_grad=requires_grad, dtype=dtype)
    source = data.data if isinstance(data, Tensor) else data
    if not isinstance(source, (list, tuple, numbers.Number)):  # an array: may share memory
        t.data = t.data.copy()
    return t


def _shape(shape) -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        return tuple(shape[0])
    return tuple(shape)


def zeros(*shape, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    return Tensor(backend.xp.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    return Tensor(backend.xp.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def full(shape, value: float, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    return Tensor(backend.xp.full(_shape((shape,)), value, dtype=dtype),
                  requires_grad=requires_grad)


def zeros_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return zeros(t.shape, dtype=t.dtype, requires_grad=requires_grad)


def ones_like(t: Tensor, requires_grad: bool = False) -> Tensor:
    return ones(t.shape, dtype=t.dtype, requires_grad=requires_grad)


def randn(*shape, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    """Standard normal samples from the global seeded generator (see tinygpt.random)."""
    data = _random.generator().standard_normal(_shape(shape)).astype(dtype)
    return Tensor(backend.xp.asarray(data), requires_grad=requires_grad)


def rand(*shape, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples from the global seeded generator."""
    data = _random.generator().random(_shape(shape)).astype(dtype)
    return Tensor(backend.xp.asarray(data), requires_grad=requires_grad)


def randint(low: int, high: int, shape) -> Tensor:
    """Integers in [low, high) from the global seeded generator (int64)."""
    data = _random.generator().integers(low, high, size=_shape((shape,)), dtype=np.int64)
    return Tensor(backend.xp.asarray(data))


def arange(start, end=None, step=1, dtype=None) -> Tensor:
    if end is None:
        start, end = 0, start
    if dtype is None:
        is_int = all(isinstance(v, numbers.Integral) for v in (start, end, step))
        dtype = np.int64 if is_int else np.float32
    return Tensor(backend.xp.arange(start, end, step, dtype=dtype))

"""Modules: objects that own Parameters and sub-Modules, with PyTorch's names.

Assigning a Parameter or a Module to an attribute registers it (as in torch.nn), so
``parameters()``, ``named_parameters()`` and ``state_dict()`` find every weight by a
dotted name such as ``h.0.attn.c_attn.weight``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator

import numpy as np

from tinygpt import backend
from tinygpt import functional as F
from tinygpt import random as _random
from tinygpt.tensor import Tensor


class Parameter(Tensor):
    """A Tensor that is a learnable weight of a Module (requires grad by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.data if isinstance(data, Tensor) else data)
        self.requires_grad_(requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


_meta = False  # True inside `with meta():` — parameters get shapes but no memory


class meta:
    """Build modules without allocating their weights (to count parameters of big models).

    Parameters become zero-stride, read-only views of a single zero, and init is skipped.
    """

    def __enter__(self):
        global _meta
        self._prev, _meta = _meta, True

    def __exit__(self, *exc):
        global _meta
        _meta = self._prev
        return False


def is_meta() -> bool:
    return _meta


def empty(shape, dtype=np.float32, fill: float = 0.0):
    """A new parameter array filled with ``fill`` (shape only, no memory, under ``meta``)."""
    if _meta:
        return np.broadcast_to(np.zeros((), dtype=dtype), shape)
    return backend.xp.full(shape, fill, dtype=dtype)


def init_normal_(p: Tensor, std: float = 0.02, mean: float = 0.0) -> Tensor:
    """Fill ``p`` in place with N(mean, std^2) samples from the global generator (GPT-2 init)."""
    if _meta:
        return p
    draw = _random.generator().standard_normal(p.shape) * std + mean
    p.data[...] = backend.xp.asarray(draw.astype(p.dtype))
    return p


def init_uniform_(p: Tensor, bound: float) -> Tensor:
    """Fill ``p`` in place with U(-bound, bound) samples from the global generator."""
    if _meta:
        return p
    draw = _random.generator().uniform(-bound, bound, p.shape)
    p.data[...] = backend.xp.asarray(draw.astype(p.dtype))
    return p


class Module:
    """Base class of every layer and model."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}.__init__ must call super().__init__() "
                               f"before assigning {name!r}")
        if name in self._parameters and not isinstance(value, (Parameter, type(None))):
            # as torch: a plain Tensor here would silently drop out of parameters() and
            # state_dict() (and so out of the optimizer and the checkpoints)
            raise TypeError(f"cannot assign {type(value).__name__} as parameter {name!r} "
                            f"(Parameter or None expected); to change its values, write "
                            f"into {name}.data or use an in-place op under tg.no_grad()")
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    # -- traversal -------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def children(self) -> Iterator[Module]:
        yield from self._modules.values()

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """(dotted name, Parameter) pairs; a shared (tied) Parameter is listed once."""
        seen: set[int] = set()
        for mod_name, m in self.named_modules(prefix):
            for name, p in m._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- modes and grads ----------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def apply(self, fn) -> Module:
        for m in self.modules():
            fn(m)
        return self

    # -- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, object]:
        """Dotted name -> array (the live data, not a copy), for every parameter.

        Tied parameters appear under every name they are registered as, like PyTorch.
        """
        out = {}
        for mod_name, m in self.named_modules():
            for name, p in m._parameters.items():
                out[f"{mod_name}.{name}" if mod_name else name] = p.data
        return out

    def load_state_dict(self, state: dict, strict: bool = True) -> tuple[list[str], list[str]]:
        """Copy arrays into the parameters; returns (missing_keys, unexpected_keys).

        With ``strict`` any missing or unexpected key is an error that names it; a shape
        mismatch is always an error naming both shapes.
        """
        own = {}
        for mod_name, m in self.named_modules():
            for name, p in m._parameters.items():
                own[f"{mod_name}.{name}" if mod_name else name] = p
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append(f"missing keys: {missing}")
            if unexpected:
                parts.append(f"unexpected keys: {unexpected}")
            raise KeyError(f"load_state_dict: {'; '.join(parts)}")
        for k, p in own.items():
            if k not in state:
                continue
            value = state[k]
            value = value.data if isinstance(value, Tensor) else value
            if tuple(value.shape) != p.shape:
                raise ValueError(f"load_state_dict: shape mismatch for {k!r}: checkpoint has "
                                 f"{tuple(value.shape)}, model has {p.shape}")
            p.data[...] = backend.xp.asarray(value, dtype=p.dtype)
        return missing, unexpected

    # -- printing --------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for name, m in self._modules.items():
            child = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        if len(lines) == 1:
            return lines[0] + ")"
        return "\n".join(lines) + "\n)"


class Linear(Module):
    """y = x W^T + b, with W of shape (out_features, in_features) as in torch.nn.Linear."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, dtype=np.float32):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)  # torch's default: U(-1/sqrt(in), 1/sqrt(in))
        self.weight = Parameter(empty((out_features, in_features), dtype))
        init_uniform_(self.weight, bound)
        self.bias = None
        if bias:
            self.bias = Parameter(empty((out_features,), dtype))
            init_uniform_(self.bias, bound)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Embedding(Module):
    """A lookup table of ``num_embeddings`` vectors of size ``embedding_dim`` (init N(0, 1))."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype=np.float32):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        self.weight = Parameter(empty((num_embeddings, embedding_dim), dtype))
        init_normal_(self.weight, std=1.0)

    def forward(self, idx) -> Tensor:
        return F.embedding(idx, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Layer normalisation over the last dimension (or the last few: ``normalized_shape`` a
    tuple, as in torch), with optional affine weight and bias."""

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, dtype=np.float32):
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = n = tuple(int(d) for d in normalized_shape)  # as torch's
        self.eps = eps
        self.weight = Parameter(empty(n, dtype, fill=1.0)) if elementwise_affine else None
        self.bias = Parameter(empty(n, dtype)) if elementwise_affine and bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        shape = self.normalized_shape
        shown = shape[0] if len(shape) == 1 else shape
        return f"{shown}, eps={self.eps}, affine={self.weight is not None}"


class Dropout(Module):
    """Randomly zero activations with probability ``p`` while training; identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class ReLU(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class GELU(Module):
    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, self.approximate)


class Tanh(Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class ModuleList(Module):
    """A list of Modules registered as ``0``, ``1``, ... (so names read ``h.0.attn``)."""

    def __init__(self, modules: Iterable[Module] = ()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        setattr(self, str(len(self._modules)), module)
        return self

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


class Sequential(ModuleList):
    """Modules applied one after another."""

    def __init__(self, *modules: Module):
        super().__init__(modules)

    def forward(self, x):
        for m in self:
            x = m(x)
        return x

"""One place for argument checks and their messages (docs/api.md: always on, never only in debug)."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence

import torch

from ._rules import REQUIREMENTS

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def as_matrix(rule: str, G) -> tuple[torch.Tensor, torch.Size | None]:
    """Return G as an (n, d) tensor, and the workers' shape when G was a sequence.

    A sequence of n tensors of one shape, dtype and device is stacked (each flattened);
    its shape is returned so that the result can take it again.
    """
    worker_shape = None
    if isinstance(G, torch.Tensor):
        matrix = G
        if matrix.dim() != 2:
            raise ValueError(
                f"{rule}: G must be a 2-D tensor of shape (n, d) or a sequence of tensors, "
                f"got a tensor of shape {tuple(matrix.shape)}"
            )
    elif isinstance(G, Sequence) and not isinstance(G, (str, bytes)):
        if len(G) == 0:
            raise ValueError(f"{rule}: empty input, got a sequence of 0 tensors")
        first = G[0]
        for i, g in enumerate(G):
            if not isinstance(g, torch.Tensor):
                raise TypeError(f"{rule}: element {i} of the sequence is a {type(g).__name__}, not a tensor")
            if g.shape != first.shape:
                raise ValueError(
                    f"{rule}: all tensors must have one shape, element 0 has {tuple(first.shape)} "
                    f"and element {i} has {tuple(g.shape)}"
                )
            if g.device != first.device:
                raise ValueError(
                    f"{rule}: all tensors must be on one device, element 0 is on {first.device} "
                    f"and element {i} on {g.device}"
                )
            if g.dtype != first.dtype:
                raise TypeError(
                    f"{rule}: all tensors must have one dtype, element 0 is {first.dtype} "
                    f"and element {i} is {g.dtype}"
                )
        _check_dtype(rule, first.dtype)
        worker_shape = first.shape
        matrix = torch.stack([g.reshape(-1) for g in G])
    else:
        raise TypeError(
            f"{rule}: G must be a 2-D tensor or a sequence of tensors, got {type(G).__name__}"
        )
    _check_dtype(rule, matrix.dtype)
    n, d = matrix.shape
    if n == 0 or d == 0:
        raise ValueError(f"{rule}: empty input, got shape (n={n}, d={d})")
    return matrix, worker_shape


def _check_dtype(rule: str, dtype: torch.dtype) -> None:
    if dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{rule}: G must have a floating dtype (float16, bfloat16, float32 or float64), got {dtype}"
        )


def check_int(rule: str, name: str, value, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{rule}: {name} must be an int, got {value!r}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{rule}: {name} must be >= {minimum}, got {name}={value}")
    return value


def check_real(rule: str, name: str, value, *, positive=False, nonnegative=False, allow_inf=False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{rule}: {name} must be a real number, got {value!r}")
    value = float(value)
    if math.isnan(value) or (math.isinf(value) and not allow_inf):
        raise ValueError(f"{rule}: {name} must be finite, got {name}={value}")
    if positive and not value > 0:
        raise ValueError(f"{rule}: {name} must be > 0, got {name}={value}")
    if nonnegative and not value >= 0:
        raise ValueError(f"{rule}: {name} must be >= 0, got {name}={value}")
    return value


def check_f(rule: str, n: int, f) -> int:
    """f as an int; ValueError naming the rule, n, f and the requirement (docs/api.md)."""
    if isinstance(f, bool) or not isinstance(f, numbers.Integral):
        raise TypeError(f"{rule}: f must be an int, got {f!r}")
    f = int(f)
    if f < 0:
        raise ValueError(f"{rule} requires f >= 0, got n={n}, f={f}")
    text, holds = REQUIREMENTS[rule]
    if not holds(n, f):
        raise ValueError(f"{rule} requires {text}, got n={n}, f={f}")
    return f


def check_m(rule: str, n: int, f: int, m) -> int:
    if isinstance(m, bool) or not isinstance(m, numbers.Integral):
        raise TypeError(f"{rule}: m must be an int, got {m!r}")
    m = int(m)
    if not 1 <= m <= n - f:
        raise ValueError(f"{rule} requires 1 <= m <= n - f, got n={n}, f={f}, m={m}")
    return m


def check_vector(rule: str, name: str, value, G: torch.Tensor, length: int) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{rule}: {name} must be a tensor, got {type(value).__name__}")
    if value.numel() != length:
        raise ValueError(f"{rule}: {name} must have {length} elements, got shape {tuple(value.shape)}")
    if value.device != G.device:
        raise ValueError(f"{rule}: {name} is on {value.device} but G is on {G.device}")
    if value.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{rule}: {name} must have a floating dtype, got {value.dtype}")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(f"{rule}: {name} must be finite")
    return value.reshape(-1)


def _byte_span(t: torch.Tensor) -> tuple[int, int] | None:
    """[first, last) bytes of memory that t's elements occupy (None when empty)."""
    if t.numel() == 0:
        return None
    last = sum((size - 1) * abs(stride) for size, stride in zip(t.shape, t.stride()))
    return t.data_ptr(), t.data_ptr() + (last + 1) * t.element_size()


def _overlaps_itself(t: torch.Tensor) -> bool:
    """Whether two elements of t may share an address (e.g. an expanded tensor): checked
    conservatively, each dimension's stride against the span of the smaller ones."""
    span = 1
    for stride, size in sorted((stride, size) for size, stride in zip(t.shape, t.stride()) if size > 1):
        if stride < span:
            return True
        span += (size - 1) * stride
    return False


def check_out(rule: str, out, G: torch.Tensor, worker_shape, *inputs) -> torch.Tensor:
    """The out= argument of a rule that returns a d-vector (docs/api.md, "out="): a tensor
    of the result's shape ((d,), or the workers' shape for a sequence; never resized), G's
    dtype and device, sharing no memory with the inputs (`inputs`: the tensors and
    sequences of tensors the caller gave), outside autograd as in torch."""
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"{rule}: out must be a tensor, got {type(out).__name__}")
    shape = (G.shape[1],) if worker_shape is None else tuple(worker_shape)
    if tuple(out.shape) != shape:
        raise ValueError(
            f"{rule}: out must have the result's shape {shape}, got {tuple(out.shape)} (out is never resized)"
        )
    if out.dtype != G.dtype:
        raise TypeError(f"{rule}: out must have G's dtype {G.dtype}, got {out.dtype}")
    if out.device != G.device:
        raise ValueError(f"{rule}: out must be on G's device {G.device}, got {out.device}")
    tensors = []
    for value in inputs:
        if isinstance(value, torch.Tensor):
            tensors.append(value)
        elif isinstance(value, Sequence):
            tensors.extend(value)
    if torch.is_grad_enabled() and (out.requires_grad or any(t.requires_grad for t in tensors)):
        raise RuntimeError(
            f"{rule}(): functions with out=... arguments don't support automatic differentiation, "
            "but one of the arguments requires grad"
        )
    # Memory is not known while torch.compile traces (functionalisation orders the writes).
    if torch.compiler.is_compiling():
        return out
    if _overlaps_itself(out):
        raise ValueError(f"{rule}: out has elements that share memory (e.g. an expanded tensor); give a plain buffer")
    span = _byte_span(out)
    for t in tensors:
        other = _byte_span(t)
        if t.device != out.device or span is None or other is None:
            continue
        if span[0] < other[1] and other[0] < span[1]:
            raise ValueError(
                f"{rule}: out shares memory with an input (G or another tensor argument); give a separate buffer"
            )
    return out

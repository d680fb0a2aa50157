"""Per-parameter tensors to one (n, d) matrix and back.

A model gives one tensor per parameter; a rule wants one row per worker. `flatten` lays
each worker's tensors end to end (in the order given, or the mapping's key order) and
stacks the workers; `unflatten` cuts a result back into tensors of the original shapes,
dtypes and names. The harness and the engine integrations (Flower, torch.distributed)
use these two functions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from ._validate import FLOAT_DTYPES


@dataclass(frozen=True)
class FlatSpec:
    """How the columns of a flattened matrix map back to tensors.

    names: the mapping's keys, or None when the tensors came as a sequence.
    shapes, dtypes: one per tensor, in order. offsets[k]:offsets[k + 1] are tensor k's
    columns; numel is the row length d.
    """

    names: tuple[str, ...] | None
    shapes: tuple[torch.Size, ...]
    dtypes: tuple[torch.dtype, ...]
    offsets: tuple[int, ...]

    @property
    def numel(self) -> int:
        return self.offsets[-1]


def _tensors_of(worker, index: int) -> tuple[tuple[str, ...] | None, list[torch.Tensor]]:
    if isinstance(worker, Mapping):
        names = tuple(str(k) for k in worker.keys())
        tensors = list(worker.values())
    elif isinstance(worker, Sequence) and not isinstance(worker, (str, bytes, torch.Tensor)):
        names, tensors = None, list(worker)
    else:
        raise TypeError(
            f"flatten: worker {index} must be a sequence or a mapping of tensors (one per parameter), "
            f"got {type(worker).__name__}"
        )
    if not tensors:
        raise ValueError(f"flatten: worker {index} has no tensors")
    for k, t in enumerate(tensors):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"flatten: worker {index}, tensor {k} is a {type(t).__name__}, not a tensor")
        if t.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"flatten: worker {index}, tensor {names[k] if names else k} has dtype {t.dtype}; "
                "only floating tensors can be aggregated (keep integer buffers out, e.g. batch norm's counters)"
            )
    return names, tensors


def flatten(workers, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, FlatSpec]:
    """Stack each worker's per-parameter tensors into one row: (G, spec).

    Args:
        workers: a sequence of n workers, each a sequence (or a mapping, e.g. a state dict)
            of floating tensors; every worker has the same shapes (and names), in one order.
        dtype: the matrix's dtype; default: the promoted dtype of the first worker's tensors.

    Returns:
        G, an (n, d) tensor on the tensors' device (a new tensor: the inputs are never
        aliased), and the FlatSpec that `unflatten` needs.

    Raises:
        TypeError for non-tensors or non-floating tensors; ValueError for workers whose
        shapes, names or devices differ, or an empty input.

    >>> grads = [[torch.ones(2, 3), torch.zeros(4)] for _ in range(5)]
    >>> G, spec = byzagg.flatten(grads)          # G: (5, 10)
    >>> byzagg.unflatten(byzagg.median(G), spec)  # [tensor (2, 3), tensor (4,)]
    """
    if isinstance(workers, (torch.Tensor, str, bytes, Mapping)) or not isinstance(workers, Sequence):
        raise TypeError(
            f"flatten: expected a sequence of workers (each a list or dict of tensors), got {type(workers).__name__}"
        )
    if len(workers) == 0:
        raise ValueError("flatten: empty input, got 0 workers")
    names, first = _tensors_of(workers[0], 0)
    shapes = tuple(t.shape for t in first)
    dtypes = tuple(t.dtype for t in first)
    device = first[0].device
    if dtype is None:
        dtype = first[0].dtype
        for t in first[1:]:
            dtype = torch.promote_types(dtype, t.dtype)
    elif dtype not in FLOAT_DTYPES:
        raise TypeError(f"flatten: dtype must be a floating dtype, got {dtype}")
    offsets = [0]
    for s in shapes:
        offsets.append(offsets[-1] + s.numel())
    d = offsets[-1]
    if d == 0:
        raise ValueError("flatten: the tensors have no elements")
    G = torch.empty((len(workers), d), dtype=dtype, device=device)
    for i, worker in enumerate(workers):
        worker_names, tensors = (names, first) if i == 0 else _tensors_of(worker, i)
        if worker_names != names:
            raise ValueError(f"flatten: worker {i} has tensors {worker_names}, worker 0 has {names}")
        if len(tensors) != len(shapes):
            raise ValueError(f"flatten: worker {i} has {len(tensors)} tensors, worker 0 has {len(shapes)}")
        for k, t in enumerate(tensors):
            if t.shape != shapes[k]:
                label = names[k] if names else k
                raise ValueError(
                    f"flatten: tensor {label} of worker {i} has shape {tuple(t.shape)}, "
                    f"worker 0's has {tuple(shapes[k])}"
                )
            if t.device != device:
                raise ValueError(f"flatten: worker {i} has a tensor on {t.device}, worker 0 on {device}")
            G[i, offsets[k] : offsets[k + 1]] = t.detach().reshape(-1)
    return G, FlatSpec(names, shapes, dtypes, tuple(offsets))


def unflatten(flat: torch.Tensor, spec: FlatSpec):
    """Cut a flattened vector (d,) or matrix (n, d) back into tensors, as `flatten` took them.

    A (d,) vector (a rule's result) gives one worker: a list of tensors, or a dict when the
    workers were mappings. An (n, d) matrix (e.g. what nnm returns) gives a list of n such.
    Each tensor gets its original shape and dtype (values are cast back: a float16
    parameter aggregated in float32 is rounded to float16 again).
    """
    if not isinstance(spec, FlatSpec):
        raise TypeError(f"unflatten: spec must be the FlatSpec that flatten returned, got {type(spec).__name__}")
    if not isinstance(flat, torch.Tensor) or flat.dim() not in (1, 2):
        raise ValueError("unflatten: expected a (d,) or (n, d) tensor")
    if flat.shape[-1] != spec.numel:
        raise ValueError(f"unflatten: the spec has d={spec.numel} columns, the tensor {flat.shape[-1]}")
    if flat.dim() == 2:
        return [unflatten(row, spec) for row in flat]
    parts = [
        flat[spec.offsets[k] : spec.offsets[k + 1]].reshape(shape).to(spec.dtypes[k])
        for k, shape in enumerate(spec.shapes)
    ]
    if spec.names is None:
        return parts
    return dict(zip(spec.names, parts))

"""Gradients of the native ops.

Each native op gets a backward: the vector-Jacobian product of its reference
implementation at the same input, so a native result differentiates exactly as the
reference one does (which `tests/test_autograd.py` checks against finite differences
with gradcheck). What that derivative is, per rule:
- selection rules (krum, multi_krum, medoid, mda, brsgd's chosen rows): the gradient
  flows to the selected rows, as for `G[rows].mean(0)`; the choice itself is piecewise
  constant and has no gradient;
- coordinate-wise rules (median, trimmed_mean, meamed, phocas, Bulyan's last step): per
  coordinate, to the values in the window that is averaged;
- nnm, pairwise_distances, krum_scores: the derivatives of their closed forms at the
  chosen neighbours;
- geometric_median and centered_clipping: through their iterations (the iterations the
  reference runs, not an implicit-function gradient), with respect to G, and to weights
  or center when those require a gradient.
At a tie (equal values or scores) any one-sided derivative is a valid subgradient; the
reference's choice is the one returned. The forward pass is the native kernel's; the
backward costs one reference evaluation, on the same device.
"""

from __future__ import annotations

import torch

from ._reference_impl import IMPLEMENTATIONS

# Positions of the tensor arguments of each op (G is always first); the others are
# plain numbers and get no gradient.
_TENSOR_ARGUMENTS = {"geometric_median": (0, 1), "centered_clipping": (0, 3)}


def _make(name: str):
    impl = IMPLEMENTATIONS[name]
    positions = _TENSOR_ARGUMENTS.get(name, (0,))

    def setup_context(ctx, inputs, output):
        ctx.save_for_backward(*(inputs[p] for p in positions))
        ctx.constants = tuple(None if p in positions else a for p, a in enumerate(inputs))

    def backward(ctx, grad):
        create_graph = torch.is_grad_enabled()
        args = list(ctx.constants)
        leaves = []
        for p, saved in zip(positions, ctx.saved_tensors):
            if saved is not None and ctx.needs_input_grad[p]:
                saved = saved.detach().requires_grad_(True)
                leaves.append(p)
            args[p] = saved
        grads = [None] * len(args)
        if not leaves:
            return tuple(grads)
        with torch.enable_grad():
            out = impl(*args)
            found = torch.autograd.grad(
                out, [args[p] for p in leaves], grad, allow_unused=True, create_graph=create_graph
            )
        for p, g in zip(leaves, found):
            grads[p] = torch.zeros_like(args[p]) if g is None else g
        return tuple(grads)

    return setup_context, backward


def register(names) -> None:
    """Register the backward of each native op in `names` (called once, when _C loads)."""
    for name in names:
        setup_context, backward = _make(name)
        torch.library.register_autograd(f"byzagg::{name}", backward, setup_context=setup_context)

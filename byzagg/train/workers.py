"""Honest workers: all their gradients in one batched pass, regularisation, clipping, momentum.

The model's parameters live in one flat vector ``theta`` (d,); the per-parameter tensors
handed to ``torch.func.functional_call`` are views into it, so an update of theta is an
update of the model. ``vmap(grad(loss))`` over the worker axis computes every honest
worker's gradient on its own mini-batch at once: (workers, batch, ...) inputs give a
(workers, d) matrix, one row per worker.
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, replace_all_batch_norm_modules_, vmap


class FlatModel:
    """A module whose parameters are views of one flat vector.

    train_mode: dropout active and batch normalisation on per-worker batch statistics when
    computing gradients (`canonical`); False keeps the model in eval mode throughout, as the
    original code did (`paper`: dropout off, batch norm an affine map on its initial
    running statistics 0 and 1).
    """

    def __init__(self, module: nn.Module, device: torch.device | str = "cpu", train_mode: bool = True):
        self.device = torch.device(device)
        self.module = module.to(self.device)
        self.train_mode = train_mode
        named = list(self.module.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [p.shape for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.theta = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
        self.params = {}
        offset = 0
        for name, shape, size in zip(self.names, self.shapes, self.sizes):
            self.params[name] = self.theta[offset : offset + size].view(shape)
            offset += size
        self.has_batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in self.module.modules())
        if train_mode:
            # vmap cannot update running statistics in place: gradients go through a copy
            # whose batch norms use batch statistics only; the module keeps running
            # statistics, refreshed by `track_statistics` on one worker's batch per step.
            self.grad_module = copy.deepcopy(self.module)
            replace_all_batch_norm_modules_(self.grad_module)
            self.grad_module.train()
        else:
            self.grad_module = self.module
        self.module.eval()
        self.gradient_fn = vmap(
            grad(self.loss, has_aux=True), in_dims=(None, 0, 0), randomness="different" if train_mode else "error"
        )

    @property
    def dim(self) -> int:
        return self.theta.numel()

    def loss(self, params, x, y):
        loss = F.nll_loss(functional_call(self.grad_module, params, (x,)), y)
        return loss, loss.detach()

    def gradients(
        self, x: torch.Tensor, y: torch.Tensor, out: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(workers, d) gradients of the mean NLL loss of each worker's batch, and the
        (workers,) losses. x: (workers, batch, ...), y: (workers, batch); `out`: an optional
        contiguous (workers, d) tensor to write the gradients into."""
        grads, losses = self.gradient_fn(self.params, x, y)
        workers = x.shape[0]
        parts = [grads[name].reshape(workers, -1) for name in self.names]
        if out is None:
            return torch.cat(parts, dim=1), losses
        return torch.cat(parts, dim=1, out=out), losses

    @torch.no_grad()
    def track_statistics(self, x: torch.Tensor) -> None:
        """Update the batch-norm running statistics (train mode only) with one batch."""
        if self.train_mode and self.has_batch_norm:
            self.module.train()
            functional_call(self.module, self.params, (x,))
            self.module.eval()

    @torch.no_grad()
    def accuracy(self, batches) -> float:
        correct = total = 0
        for x, y in batches:
            out = functional_call(self.module, self.params, (x,))
            correct += int((out.argmax(dim=1) == y).sum())
            total += len(y)
        return correct / max(total, 1)


def regularisation_gradient(theta: torch.Tensor, l2: float, mode: str) -> torch.Tensor | None:
    """Gradient of the l2 term added to every worker's loss.

    mode "squared": (l2 / 2) ||theta||^2, gradient l2 * theta (weight decay; `canonical`).
    mode "norm": l2 * ||theta||, gradient l2 * theta / ||theta|| (the original code's term).
    """
    if l2 == 0:
        return None
    if mode == "squared":
        return l2 * theta
    if mode == "norm":
        norm = float(theta.norm())
        return theta * (l2 / norm) if norm > 0 else torch.zeros_like(theta)
    raise ValueError(f"unknown l2 mode {mode!r} (squared, norm)")


def clip_rows_(G: torch.Tensor, max_norm: float | None, mode: str = "scale") -> torch.Tensor:
    """Clip each row in place. "scale": g <- g * C / ||g|| when ||g|| > C. "norm1_legacy":
    g <- g / ||g|| when ||g|| > C (the clipping of the paper's ICLR code snapshot)."""
    if max_norm is None or math.isinf(max_norm):
        return G
    norms = G.norm(dim=1, keepdim=True)
    over = norms > max_norm
    if mode == "scale":
        factor = torch.where(over, max_norm / norms, torch.ones_like(norms))
    elif mode == "norm1_legacy":
        factor = torch.where(over, 1.0 / norms, torch.ones_like(norms))
    else:
        raise ValueError(f"unknown clip mode {mode!r} (scale, norm1_legacy)")
    return G.mul_(factor)


class Momentum:
    """Where momentum is computed (mu: momentum, no dampening, buffers start at zero).

    "server" (the paper's "at the server", the original code's `update`): workers submit
    their gradients g_i; the server keeps m <- mu m + GAR(...) and steps by -lr m.
    "worker": each honest worker keeps m_i <- mu m_i + g_i and submits m_i; the server steps
    by -lr GAR(...).
    """

    def __init__(self, placement: str, mu: float):
        if placement not in ("server", "worker"):
            raise ValueError(f"momentum placement must be 'server' or 'worker', got {placement!r}")
        self.placement = placement
        self.mu = mu
        self.worker_buffers: torch.Tensor | None = None
        self.server_buffer: torch.Tensor | None = None

    def submit(self, gradients: torch.Tensor) -> torch.Tensor:
        """What the honest workers send, given their (workers, d) gradients."""
        if self.placement == "server":
            return gradients
        if self.worker_buffers is None:
            self.worker_buffers = gradients.clone()
        else:
            self.worker_buffers.mul_(self.mu).add_(gradients)
        return self.worker_buffers

    def direction(self, aggregate: torch.Tensor) -> torch.Tensor:
        """The update direction (theta <- theta - lr * direction) given the GAR output."""
        if self.placement == "worker":
            return aggregate
        if self.server_buffer is None:
            self.server_buffer = aggregate.clone()
        else:
            self.server_buffer.mul_(self.mu).add_(aggregate)
        return self.server_buffer

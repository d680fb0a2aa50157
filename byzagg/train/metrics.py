"""Metrics of the paper (Section 3.2, 4.3) computed at every step.

- variance-norm ratio of k vectors g_1..g_k (the honest ones): the sampled estimate of
  sigma^2 / lambda^2, i.e. (sum_i ||g_i - mean||^2 / (k - 1)) / ||mean||^2 (the original code's
  "(deviation / norm)^2"). It is taken on the honest clipped gradients ("sampled") and on what
  the honest workers submit ("submitted": the same under server momentum, the worker
  momentum vectors otherwise); the paper's r_t is the submitted one.
- curvature term s_t = 2 sum_{v<t} mu^(t-v) <gbar_t, gbar_v>, gbar_t the mean honest clipped
  gradient at step t (the paper's estimate of its E G_t). Computed exactly over the whole
  history with the running sum P_t = sum_{v<t} mu^(t-v) gbar_v = mu (gbar_{t-1} + P_{t-1}).
  The original code logs half of it (no factor 2) over the last 150 (MNIST) steps.
"""

from __future__ import annotations

import torch


def variance_norm_ratio(G: torch.Tensor) -> float:
    """(sum_i ||g_i - gbar||^2 / (k - 1)) / ||gbar||^2 over the k rows of G (float64 sums);
    inf when the mean is zero, nan for fewer than 2 rows."""
    k = G.shape[0]
    if k < 2:
        return float("nan")
    X = G.to(torch.float64)
    mean = X.mean(dim=0)
    variance = float(((X - mean) ** 2).sum()) / (k - 1)
    norm2 = float(mean.dot(mean))
    return variance / norm2 if norm2 > 0 else float("inf")


def column_moments(G: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unbiased variance, mean) of G's columns, like torch.var_mean(G, dim=0) but two plain
    passes, several times faster than var_mean's reduction over the leading axis on CPU."""
    k = G.shape[0]
    mean = G.mean(dim=0)
    if k < 2:
        return torch.zeros_like(mean), mean
    return (G - mean).square_().sum(dim=0).div_(k - 1), mean


def ratio_from_moments(variance: torch.Tensor, mean: torch.Tensor) -> float:
    """The variance-norm ratio from torch.var_mean(G, dim=0) (unbiased): sum(variance) is
    sum_i ||g_i - mean||^2 / (k - 1)."""
    norm2 = float(mean.double().square().sum())
    total = float(variance.double().sum())
    return total / norm2 if norm2 > 0 else float("inf")


class Curvature:
    """s_t of the paper from the sequence of mean honest gradients."""

    def __init__(self, mu: float):
        self.mu = mu
        self.past: torch.Tensor | None = None  # P_t

    def update(self, mean_gradient: torch.Tensor) -> float:
        mean_gradient = mean_gradient.to(torch.float64)
        if self.past is None:
            value = 0.0
            self.past = self.mu * mean_gradient
        else:
            value = 2.0 * float(mean_gradient.dot(self.past))
            self.past = self.mu * (mean_gradient + self.past)
        return value


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.to(torch.float64), b.to(torch.float64)
    denominator = float(a.norm() * b.norm())
    return float(a.dot(b)) / denominator if denominator > 0 else float("nan")

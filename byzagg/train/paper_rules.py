"""The aggregation rules as the original code of the paper implements them (`paper` preset).

Built on byzagg's public functions (byzagg.pairwise_distances, or a centered Gram path where
byzagg has no native distance kernel for the device: see `distances`); restated from the behaviours in
shared/papers/original-code-notes.md, not from that code.

- ``paper_krum(G, f, m=None)``: Multi-Krum on *Euclidean* (not squared) distances; the score
  of row i is the sum of its n - f - 1 smallest distances to the other rows; rows ranked by
  score with a stable sort (ties keep input order: honest rows first); the result is the
  mean of the m = n - f - 2 best rows. Needs n >= 2f + 3.
- ``paper_bulyan(G, f, m=None)``: scores = sum of the m = n - f - 2 smallest Euclidean
  distances to other rows, ranked once (the original never rescored after a removal);
  theta = n - 2f - 2 rows, row i = mean of the rows ranked i .. i + m_i - 1 with
  m_i = min(m, n - f - 2 - i); then per coordinate the mean of the beta = theta - 2f of these
  values closest to their lower median. Needs n >= 4f + 3.
- ``paper_median(G)``: coordinate-wise lower median (order statistic floor((n - 1) / 2));
  byzagg.median for odd n (equal there; byzagg orders NaN last where torch.median would
  propagate it: no setup of the paper sends NaN).
"""

from __future__ import annotations

import math

import torch

import byzagg
from byzagg._ops import native_ops


DISTANCES = "auto"  # "byzagg", "gram" or "auto" (byzagg when its native kernel serves G's device)
_NATIVE_DISTANCES: dict[str, bool] = {}


def native_distances(device_type: str) -> bool:
    """Whether byzagg.pairwise_distances runs a native kernel on this device type."""
    if device_type not in _NATIVE_DISTANCES:
        _NATIVE_DISTANCES[device_type] = "pairwise_distances" in native_ops(device_type)
    return _NATIVE_DISTANCES[device_type]


def gram_distances(G: torch.Tensor) -> torch.Tensor:
    """(n, n) float64 Euclidean distances through the Gram matrix of the *centered* rows:
    with X = G - mean(G), ||x_i - x_j||^2 = ||x_i||^2 + ||x_j||^2 - 2 x_i.x_j (one BLAS product).

    The harness's fast path where byzagg has no native distance kernel for the device (its reference sums
    squared differences exactly, in a Python loop over rows, 10-50x slower). Centering first
    removes the cancellation of the plain Gram expansion (the rows' common component is
    what makes ||x||^2 large against ||x - y||^2), so in G's precision the distances are
    within ~1e-6 relative of the exact ones (byzagg.pairwise_distances returns G's dtype
    too; the tests check the agreement). Non-finite rows are +inf from everything.
    """
    # a row's squared norm is finite iff the row is (overflowing rows count as non-finite)
    finite = torch.isfinite(G.square().sum(dim=1))
    if bool(finite.all()):
        X = G - G.mean(dim=0)
    else:
        X = torch.where(finite.unsqueeze(1), G, torch.zeros((), dtype=G.dtype, device=G.device))
        if bool(finite.any()):
            X = X - X[finite].mean(dim=0)
    norms = X.square().sum(dim=1)
    D2 = (norms.unsqueeze(1) + norms.unsqueeze(0)).addmm_(X, X.T, alpha=-2.0).clamp_min_(0.0).to(torch.float64)
    D2[~finite, :] = math.inf
    D2[:, ~finite] = math.inf
    D2.fill_diagonal_(0.0)
    return D2.sqrt_()


def distance_method(device_type: str) -> str:
    """The distance path `distances` takes on this device type: "byzagg" or "gram"."""
    if DISTANCES == "auto":
        return "byzagg" if native_distances(device_type) else "gram"
    return DISTANCES


def distances(G: torch.Tensor) -> torch.Tensor:
    """Euclidean distances as float64, by byzagg or the centered Gram path (see DISTANCES)."""
    if distance_method(G.device.type) == "gram":
        return gram_distances(G)
    return byzagg.pairwise_distances(G).to(torch.float64)


def _distances_without_self(G: torch.Tensor) -> torch.Tensor:
    D = distances(G)
    D = torch.where(torch.isfinite(D), D, torch.full_like(D, math.inf))
    D.fill_diagonal_(math.inf)
    return D


def _scores(D: torch.Tensor, neighbours: int) -> torch.Tensor:
    return torch.sort(D, dim=1).values[:, :neighbours].sum(dim=1)


def paper_krum(G: torch.Tensor, f: int, m: int | None = None) -> torch.Tensor:
    n = G.shape[0]
    if f < 1 or n < 2 * f + 3:
        raise ValueError(f"paper_krum requires f >= 1 and n >= 2f + 3, got n={n}, f={f}")
    m = n - f - 2 if m is None else m
    if not 1 <= m <= n - f - 2:
        raise ValueError(f"paper_krum requires 1 <= m <= n - f - 2, got n={n}, f={f}, m={m}")
    order = torch.sort(_scores(_distances_without_self(G), n - f - 1), stable=True).indices
    weights = torch.zeros(n, dtype=G.dtype, device=G.device)
    weights[order[:m]] = 1.0 / m
    return weights @ G  # the mean of the m best rows, without gathering them


def paper_bulyan(G: torch.Tensor, f: int, m: int | None = None) -> torch.Tensor:
    n = G.shape[0]
    if f < 1 or n < 4 * f + 3:
        raise ValueError(f"paper_bulyan requires f >= 1 and n >= 4f + 3, got n={n}, f={f}")
    m = n - f - 2 if m is None else m
    if not 1 <= m <= n - f - 2:
        raise ValueError(f"paper_bulyan requires 1 <= m <= n - f - 2, got n={n}, f={f}, m={m}")
    theta = n - 2 * f - 2
    beta = theta - 2 * f
    order = torch.sort(_scores(_distances_without_self(G), m), stable=True).indices
    # row i of the selection = mean of the rows ranked i .. i + m_i - 1: one (theta, n) @ (n, d)
    weights = torch.zeros(theta, n, dtype=G.dtype, device=G.device)
    for i in range(theta):
        count = min(m, n - f - 2 - i)
        weights[i, order[i : i + count]] = 1.0 / count
    selected = weights @ G
    median = lower_median(selected)
    if beta == 1:
        return median  # the value nearest the median is the median itself
    nearest = torch.topk((selected - median).abs(), beta, dim=0, largest=False).indices
    return torch.gather(selected, 0, nearest).mean(dim=0)


def lower_median(G: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise lower median (order statistic floor((n - 1) / 2)). For odd n it is
    byzagg.median (the same values; native and 10-50x faster than torch.median on CPU);
    for even n torch.median, which takes the lower middle value as the original code did."""
    if G.shape[0] % 2 == 1:
        return byzagg.median(G)
    return G.median(dim=0).values


def paper_median(G: torch.Tensor) -> torch.Tensor:
    return lower_median(G)

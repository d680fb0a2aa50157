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


# --- The rules as the paper's text states them (`paper-text` preset) -------------------------
#
# Section 2.2 and 4.1 of the paper (shared/papers/000_4941c80469e7177e.txt):
# - Krum (Blanchard et al., 2017): "the score of g is the sum of the distances between g and
#   its n - f - 2 closest neighbor gradients. Krum outputs the arithmetic mean of the m
#   smallest-scoring gradients"; "in our experiments, we set m to its maximum: n - f - 2".
#   The distances are Krum's, i.e. squared Euclidean (the cited definition; the text does not
#   say "squared", the original code takes plain Euclidean ones with n - f - 1 neighbours).
# - Median: the coordinate-wise median (n is odd in every setup: the middle value).
# - Bulyan of Krum: "selects n - 2f - 2 gradients by iterating n - 2f - 2 times over Krum,
#   each time removing the highest scoring gradient from the input gradient set. From these
#   n - 2f - 2 >= 2f + 1 selected gradients, Bulyan outputs the coordinate-wise average of the
#   n - 4f - 2 >= 1 closest coordinate values to the coordinate-wise median"; n >= 4f + 3,
#   1 <= m <= n - f - 2. So theta = n - 2f - 2 rounds, beta = n - 4f - 2. Round i (0-based)
#   runs Krum (with m) on the n - i rows left: scores over their n - i - f - 2 nearest rows
#   (rescored every round), the selected gradient = the mean of the m_i = min(m, n - i - f - 2)
#   best-scored rows, then the best-scored row ("highest scoring": ranked first, the one Krum
#   with m = 1 selects, as in El-Mhamdi et al. 2018) leaves the set. m defaults to n - f - 2
#   as for Krum.


def _squared_distances(G: torch.Tensor) -> torch.Tensor:
    D = byzagg.pairwise_distances(G, squared=True).to(torch.float64)
    D = torch.where(torch.isfinite(D), D, torch.full_like(D, math.inf))
    D.fill_diagonal_(math.inf)
    return D


def text_krum_order(D: torch.Tensor, f: int) -> torch.Tensor:
    """Indices of the rows of the (k, k) squared-distance matrix D (diagonal +inf) ranked by
    Krum score (sum of the k - f - 2 smallest distances to other rows), stable (ties keep
    the lower index first)."""
    k = D.shape[0]
    return torch.sort(_scores(D, k - f - 2), stable=True).indices


def text_krum(G: torch.Tensor, f: int, m: int | None = None) -> torch.Tensor:
    """The paper's Krum: the mean of the m (default n - f - 2) rows of lowest Krum score
    (squared distances, n - f - 2 neighbours). Needs n >= 2f + 3."""
    n = G.shape[0]
    if f < 1 or n < 2 * f + 3:
        raise ValueError(f"text_krum requires f >= 1 and n >= 2f + 3, got n={n}, f={f}")
    m = n - f - 2 if m is None else m
    if not 1 <= m <= n - f - 2:
        raise ValueError(f"text_krum requires 1 <= m <= n - f - 2, got n={n}, f={f}, m={m}")
    order = text_krum_order(_squared_distances(G), f)
    weights = torch.zeros(n, dtype=G.dtype, device=G.device)
    weights[order[:m]] = 1.0 / m
    return weights @ G


def text_bulyan_selection(G: torch.Tensor, f: int, m: int | None = None) -> torch.Tensor:
    """(theta, n) weights of the theta = n - 2f - 2 gradients the paper's Bulyan selects
    (row i = the Krum output of round i over the rows left; see the comment above)."""
    n = G.shape[0]
    if f < 1 or n < 4 * f + 3:
        raise ValueError(f"text_bulyan requires f >= 1 and n >= 4f + 3, got n={n}, f={f}")
    m = n - f - 2 if m is None else m
    if not 1 <= m <= n - f - 2:
        raise ValueError(f"text_bulyan requires 1 <= m <= n - f - 2, got n={n}, f={f}, m={m}")
    theta = n - 2 * f - 2
    D = _squared_distances(G)
    left = torch.arange(n, device=G.device)
    weights = torch.zeros(theta, n, dtype=G.dtype, device=G.device)
    for i in range(theta):
        order = left[text_krum_order(D[left][:, left], f)]
        count = min(m, n - i - f - 2)
        weights[i, order[:count]] = 1.0 / count
        left = left[left != order[0]]
    return weights


def text_bulyan(G: torch.Tensor, f: int, m: int | None = None) -> torch.Tensor:
    """The paper's Bulyan of Krum: theta = n - 2f - 2 gradients selected by rescored Krum
    rounds, then per coordinate the mean of the beta = n - 4f - 2 values closest to the
    median of the selected ones. Needs n >= 4f + 3."""
    n = G.shape[0]
    selected = text_bulyan_selection(G, f, m) @ G
    beta = n - 4 * f - 2
    median = byzagg.median(selected)
    if beta == 1 and selected.shape[0] % 2 == 1:
        return median  # the value nearest the (middle-value) median is the median itself
    nearest = torch.topk((selected - median).abs(), beta, dim=0, largest=False).indices
    return torch.gather(selected, 0, nearest).mean(dim=0)


def text_median(G: torch.Tensor) -> torch.Tensor:
    """The coordinate-wise median (byzagg.median: the middle value for odd n)."""
    return byzagg.median(G)

"""Plain-PyTorch implementations of every rule, on validated (n, d) matrices.

These are the fallback and the oracle the native kernels are tested against. They are
vectorised over coordinates (loops run over rows or subsets only) and work on any device.

Arithmetic types (the same in the native kernels):
- coordinate-wise rules (median, trimmed_mean, meamed, phocas, bulyan's last step) sort,
  choose their windows and average in the accumulation type: float32 for float16,
  bfloat16 and float32 inputs, float64 for float64;
- distance-based rules compute sum((x - y)^2) exactly in float64, never through the Gram
  expansion, so scores and selections do not suffer from cancellation or fp32 overflow;
- geometric_median, centered_clipping and brsgd iterate in float64.
Results are cast back to G's dtype.
"""

from __future__ import annotations

import itertools
import math
import os

import torch

from . import _rules

# MDA enumerates subsets: it raises beyond this many (documented in docs/api.md and the README).
MDA_MAX_SUBSETS = 1_000_000


def acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def finite_rows(X: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(X).all(dim=1)


# ----------------------------------------------------------------------------------------
# Coordinate-wise family: sort each column (NaN last), then average a window.


def sort_columns(X: torch.Tensor) -> torch.Tensor:
    """Columns sorted ascending in the accumulation type; torch.sort puts NaN last."""
    return torch.sort(X.to(acc_dtype(X.dtype)), dim=0, stable=True).values


def median_of_sorted(S: torch.Tensor) -> torch.Tensor:
    n = S.shape[0]
    if n % 2 == 1:
        return S[n // 2].clone()
    return (S[n // 2 - 1] + S[n // 2]) / 2


def window_mean(S: torch.Tensor, start: torch.Tensor | int, k: int) -> torch.Tensor:
    """Per column, the mean of S[start : start + k] (start per column or shared).

    Summed from zero in row order, as the native kernels sum (csrc/core/window.h): torch's
    own sum may add in another order, and where the window is then compared with a centre
    (MeaMed, Phocas, Bulyan) a last-bit difference can choose another window when two
    windows tie exactly (two clusters of equal size)."""
    total = torch.zeros_like(S[0])
    for i in range(k):
        row = S[start + i] if isinstance(start, int) else torch.gather(S, 0, (start + i).unsqueeze(0)).squeeze(0)
        total = total + row
    return total / k


def nearest_window_start(S: torch.Tensor, center: torch.Tensor, k: int) -> torch.Tensor:
    """Per column, where the k sorted values nearest to center start.

    The window slides up from 0 while the value it would take in is strictly nearer to the
    center than the one it would drop (ties keep the lower values); the condition is
    monotone in the start, so counting where it holds gives the start. A NaN never enters
    while a number remains.
    """
    n = S.shape[0]
    if k >= n:
        return torch.zeros(S.shape[1], dtype=torch.long, device=S.device)
    slide = (S[k:] - center) < (center - S[: n - k])
    return slide.sum(dim=0)


def nearest_mean(S: torch.Tensor, center: torch.Tensor, k: int) -> torch.Tensor:
    return window_mean(S, nearest_window_start(S, center, k), k)


def median(X):
    return median_of_sorted(sort_columns(X)).to(X.dtype)


def trimmed_mean(X, f):
    n = X.shape[0]
    return window_mean(sort_columns(X), f, n - 2 * f).to(X.dtype)


def meamed(X, f):
    S = sort_columns(X)
    return nearest_mean(S, median_of_sorted(S), X.shape[0] - f).to(X.dtype)


def phocas(X, f):
    S = sort_columns(X)
    n = X.shape[0]
    return nearest_mean(S, window_mean(S, f, n - 2 * f), n - f).to(X.dtype)


def average(X):
    return X.to(acc_dtype(X.dtype)).mean(dim=0).to(X.dtype)


def average_out(X, *, out):
    """average written into the (d,) tensor out: torch's mean straight into out when X is
    its own accumulation type (no d-vector allocated), else through it."""
    if X.dtype == acc_dtype(X.dtype):
        return torch.mean(X, dim=0, out=out)
    return out.copy_(average(X))


# ----------------------------------------------------------------------------------------
# Distances: exact sums of squared differences in float64.

_DISTANCE_CHUNK_ELEMENTS = 1 << 22
# Bytes per pair of rows that the reference's distance-based rules hold at once (the
# float64 matrix, a copy, sorted values and their int64 indices, with some margin).
_REFERENCE_BYTES_PER_PAIR = 40


def available_memory_bytes() -> float:
    """MemAvailable (Linux), BYZAGG_MEMORY_LIMIT_BYTES when set; inf if unknown."""
    limit = os.environ.get("BYZAGG_MEMORY_LIMIT_BYTES", "").strip()
    if limit:
        return float(limit)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    return math.inf


def check_square_temporaries(n: int, bytes_per_pair: float = _REFERENCE_BYTES_PER_PAIR) -> None:
    """torch.OutOfMemoryError, with the sizes, when O(n^2) temporaries would not fit now
    (the same check as the native kernels'; see csrc/cpu/distances.h)."""
    need = bytes_per_pair * n * n
    if need <= 256 * 2**20 and not os.environ.get("BYZAGG_MEMORY_LIMIT_BYTES", "").strip():
        return
    have = available_memory_bytes()
    if need > have:
        raise torch.OutOfMemoryError(
            f"reference distances: n={n} rows need about {need / 2**30:.3g} GiB of temporary memory "
            f"({bytes_per_pair} bytes per pair of rows, n x n pairs), more than the {have / 2**30:.3g} GiB "
            "available; use fewer rows (e.g. bucketing first) or a coordinate-wise rule"
        )


def squared_distances(X: torch.Tensor) -> torch.Tensor:
    """(n, n) float64 sum((x_i - x_j)^2); +inf where a row is non-finite; zero diagonal."""
    n, d = X.shape
    check_square_temporaries(n)
    finite = finite_rows(X)
    D = torch.zeros(n, n, dtype=torch.float64, device=X.device)
    chunk = max(1, _DISTANCE_CHUNK_ELEMENTS // n)
    for lo in range(0, d, chunk):
        # contiguous whatever G's layout: the sums' order, hence their last bits, must not
        # depend on the strides (a structural tie, e.g. Bulyan's mutual nearest pair, is
        # then broken the same way for every layout)
        block = X[:, lo : lo + chunk].to(torch.float64).contiguous()
        block = torch.where(finite.unsqueeze(1), block, torch.zeros((), dtype=block.dtype, device=block.device))
        for i in range(n):
            diff = block - block[i]
            D[i] += (diff * diff).sum(dim=1)
    D = torch.triu(D) + torch.triu(D, 1).transpose(0, 1)  # exactly symmetric
    bad = ~finite
    D[bad, :] = math.inf
    D[:, bad] = math.inf
    D.fill_diagonal_(0.0)
    return D


def pairwise_distances(X, squared):
    D = squared_distances(X)
    return (D if squared else D.sqrt()).to(X.dtype)


def rank_rows(keys: torch.Tensor, finite: torch.Tensor) -> torch.Tensor:
    """Indices ordered by (non-finite row last, key, index): a stable two-key sort.

    keys may be 1-D (one ranking) or 2-D (one ranking per row, over the last axis).
    """
    order = torch.sort(keys, dim=-1, stable=True).indices
    demoted = (~finite)[order].to(torch.uint8)
    return torch.gather(order, -1, torch.sort(demoted, dim=-1, stable=True).indices)


def scores_from_squared(D2: torch.Tensor, neighbours: int) -> torch.Tensor:
    """Krum scores on a float64 squared-distance matrix: sum of the `neighbours` smallest
    distances to other rows (self excluded)."""
    n = D2.shape[0]
    if neighbours <= 0:
        return torch.zeros(n, dtype=D2.dtype, device=D2.device)
    others = D2.clone()
    others.fill_diagonal_(math.inf)
    return torch.sort(others, dim=1).values[:, :neighbours].sum(dim=1)


def krum_scores_float64(X, f):
    return scores_from_squared(squared_distances(X), X.shape[0] - f - 2)


def krum_scores(X, f):
    return krum_scores_float64(X, f)


def mean_of_rows(X: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return X[rows].to(acc_dtype(X.dtype)).mean(dim=0).to(X.dtype)


def krum(X, f, m):
    order = rank_rows(krum_scores_float64(X, f), finite_rows(X))
    return mean_of_rows(X, order[:m])


def bulyan(X, f):
    n = X.shape[0]
    theta = n - 2 * f
    beta = theta - 2 * f
    D2 = squared_distances(X)
    finite = finite_rows(X)
    remaining = torch.arange(n, device=X.device)
    selected = []
    for _ in range(theta):
        sub = D2[remaining][:, remaining]
        scores = scores_from_squared(sub, remaining.numel() - f - 2)
        best = rank_rows(scores, finite[remaining])[0]
        selected.append(remaining[best])
        remaining = torch.cat([remaining[:best], remaining[best + 1 :]])
    S = sort_columns(X[torch.stack(selected)])
    return nearest_mean(S, median_of_sorted(S), beta).to(X.dtype)


def medoid(X):
    finite = finite_rows(X)
    if not bool(finite.any()):
        return X[0].clone()
    D = squared_distances(X).sqrt()[:, finite]  # sums over the finite rows only
    total = torch.zeros_like(D[:, 0])
    for j in range(D.shape[1]):  # in column order, as the native kernels: ties are exact ties
        total = total + D[:, j]
    sums = torch.where(finite, total, torch.full_like(total, math.inf))
    return X[rank_rows(sums, finite)[0]].clone()


def nnm(X, f):
    n = X.shape[0]
    order = rank_rows(squared_distances(X), finite_rows(X))[:, : n - f]
    acc = X.to(acc_dtype(X.dtype))
    return torch.stack([acc[order[i]].mean(dim=0) for i in range(n)]).to(X.dtype)


def mda_subset(D: torch.Tensor, f: int) -> torch.Tensor:
    """The n - f row indices of least diameter on the (n, n) distance matrix D, by
    exhaustive search in lexicographic order (ties to the first subset)."""
    n = D.shape[0]
    k = n - f
    batch = max(1, (1 << 22) // (k * k))
    combos = itertools.combinations(range(n), k)
    best_diameter, best_subset = math.inf, None
    while True:
        chunk = list(itertools.islice(combos, batch))
        if not chunk:
            break
        idx = torch.tensor(chunk, dtype=torch.long, device=D.device)
        diameters = D[idx.unsqueeze(2), idx.unsqueeze(1)].amax(dim=(1, 2))
        j = int(torch.argmin(diameters))  # first minimum: lexicographic tie-break
        if best_subset is None or float(diameters[j]) < best_diameter:
            best_diameter, best_subset = float(diameters[j]), idx[j]
    return best_subset


def mda(X, f):
    if f == 0:
        return average(X)
    # the choice of subset has no gradient
    return mean_of_rows(X, mda_subset(squared_distances(X.detach()).sqrt(), f))


# Geometric median: smoothed Weiszfeld with exact distances ||z - x_i|| computed from the
# rows themselves (never from the pairwise squared distances by an expansion, which cancels
# catastrophically when rows differ hugely in scale), from the coordinate-wise median, with
# a line search along each step and a data-point check on one row. The steps mirror the
# native kernels (csrc/cpu/iterative.cpp, csrc/cuda/iterative.cu, csrc/core/geometric_median.h):
# a list of passes over the rows (one per iteration, plus pass 0 at the start) and small
# O(n) steps between them. No O(n^2 d) work: the data-point check's candidate is the row
# nearest the last iterate a pass evaluated, and its exact objective comes from that pass.

GM_LINE_STEPS = [2.0 ** (k / 4) for k in range(41)]  # 1 to 1024: the line search's grid
# The candidate row wins the data-point check when its objective is at most the final
# iterate's times 1 + GM_ROW_SLACK: where a whole segment minimises (n = 2, collinear rows)
# the two differ by rounding only, and the backends must not choose differently on that.
GM_ROW_SLACK = 1e-12
# The data-point check's candidate is the first row at most this relative distance farther
# from the iterate than the nearest: where two rows are (nearly) equally near, as when a
# whole segment minimises and the iterate sits at its middle, rounding must not choose.
GM_NEAREST_SLACK = 1e-9


def gm_nearest_row(dist):
    """The first row whose distance is at most the least times 1 + GM_NEAREST_SLACK."""
    least = float(dist.min().detach())
    return int(torch.nonzero(dist <= least * (1.0 + GM_NEAREST_SLACK))[0]) if least == least else 0


def gm_line_search(q0, b, e, w):
    """(lam, dist, change): the point lam of GM_LINE_STEPS where sum_i w_i ||z + lam s - x_i||
    is least (the first on ties), the distances there, and the objective's change from lam = 0
    to there, from q0_i = ||z - x_i||^2, b_i = <z - x_i, s> and e = ||s||^2 (all computed
    directly from the rows). The change is written as rise / (new + old) with
    rise = 2 lam b + lam^2 e, so a far row (q0 ~ 1e76) contributes its small change exactly
    rather than a difference of huge numbers."""
    lam, change = 1.0, 0.0
    dist0 = torch.sqrt(q0)
    if e > 0:
        lams = torch.tensor(GM_LINE_STEPS, dtype=torch.float64, device=q0.device).unsqueeze(1)
        rise = 2.0 * lams * b + lams * lams * e
        s = torch.sqrt(torch.clamp(q0 + rise, min=0.0))
        denom = s + dist0
        changes = (w * torch.where(denom > 0, rise / torch.where(denom > 0, denom, 1.0), 0.0)).sum(dim=1)
        best = int(torch.argmin(changes))
        lam, change = GM_LINE_STEPS[best], float(changes[best].detach())
    return lam, torch.sqrt(torch.clamp(q0 + (2.0 * lam * b + lam * lam * e), min=0.0)), change


def geometric_median(X, weights, eps, max_iter, tol):
    """See byzagg.geometric_median's docstring for the algorithm."""
    finite = finite_rows(X)
    w = torch.ones(X.shape[0], dtype=torch.float64, device=X.device) if weights is None else weights.to(torch.float64)
    w = torch.where(finite, w, torch.zeros_like(w))
    active = torch.nonzero(w > 0).flatten()
    if active.numel() == 0:
        return torch.full((X.shape[1],), math.nan, dtype=X.dtype, device=X.device)
    # the start: the coordinate-wise median of the active rows (finite, positive weight)
    z = median(X[active]).to(torch.float64)
    if max_iter <= 0:
        return z.to(X.dtype)
    P = X[active].to(torch.float64)
    w = w[active]
    W = w.sum()
    s = torch.zeros_like(z)
    lam = 0.0
    dist = torch.sqrt(((P - z) ** 2).sum(dim=1))  # pass 0: exact distances to the start
    for _ in range(max_iter):
        # the candidate row: the one nearest the point this pass evaluates, z + lam s (by the
        # distances the line search gave; the first of those within GM_NEAREST_SLACK)
        k = gm_nearest_row(dist)
        # one pass: z <- z + lam s; the Weiszfeld point y and the exact ||z - x_i||^2; the
        # step s = y - z, its squared length e and b_i = <z - x_i, s>
        z = z + lam * s
        beta = w / torch.clamp(dist, min=eps)
        y = (beta.unsqueeze(1) * P).sum(dim=0) / beta.sum()
        R = z - P
        q0 = (R * R).sum(dim=1)
        s = y - z
        e = float((s * s).sum().detach())  # a step length: the line search picks lam, no gradient
        b = (R * s).sum(dim=1)
        # between passes, O(41 n): the line search, the distances at z + lam s, the stop test
        lam, dist, change = gm_line_search(q0, b, e, w)
        if lam * math.sqrt(e) <= tol * max(float((w * dist).sum() / W), eps):
            break
    # the result z + lam s, unless the candidate row's exact objective (from the exact
    # ||x_k - x_i||^2: in the last pass after max_iter iterations, one more pass after an
    # earlier stop) is at most the objective there (the last pass's exact objective at z
    # plus the line search's change) times 1 + GM_ROW_SLACK
    Rk = P - P[k]
    objective = float((w * torch.sqrt(q0)).sum()) + change
    row_objective = float((w * torch.sqrt((Rk * Rk).sum(dim=1))).sum())
    if row_objective <= objective * (1.0 + GM_ROW_SLACK):
        return X[active[k]].clone()
    return (z + lam * s).to(X.dtype)


def clipped_step(P: torch.Tensor, finite: torch.Tensor, v: torch.Tensor, tau: float) -> torch.Tensor:
    """mean_i clip(p_i - v, tau) with non-finite rows contributing zero."""
    diff = P - v
    norms = torch.linalg.vector_norm(diff, dim=1)
    scale = torch.where(norms > tau, tau / norms, torch.ones_like(norms))
    scale = torch.where(finite, scale, torch.zeros_like(scale))
    return (scale.unsqueeze(1) * diff).sum(dim=0) / P.shape[0]


def centered_clipping(X, tau, iters, center):
    finite = finite_rows(X)
    P = torch.where(finite.unsqueeze(1), X.to(torch.float64), torch.zeros((), dtype=torch.float64, device=X.device))
    v = torch.zeros(X.shape[1], dtype=torch.float64, device=X.device) if center is None else center.to(torch.float64)
    for _ in range(iters):
        v = v + clipped_step(P, finite, v, tau)
    return v.to(X.dtype)


def bucketing(X, s, generator):
    n = X.shape[0]
    device = generator.device if generator is not None else torch.device("cpu")
    perm = torch.randperm(n, generator=generator, device=device).to(X.device)
    acc = X.to(acc_dtype(X.dtype))
    means = [acc[perm[lo : lo + s]].mean(dim=0) for lo in range(0, n, s)]
    return torch.stack(means).to(X.dtype)


def brsgd(X, beta, threshold):
    n = X.shape[0]
    P = X.to(torch.float64)
    finite_values = torch.isfinite(P)
    zero = torch.zeros((), dtype=torch.float64, device=X.device)
    counts = finite_values.sum(dim=0)
    mean = torch.where(finite_values, P, zero).sum(dim=0) / counts
    upper = finite_values & (P >= mean)
    lower = finite_values & (P < mean)
    upper_wins = upper.sum(dim=0) >= lower.sum(dim=0)
    score = torch.where(upper_wins, upper, lower).sum(dim=1)
    c2_size = math.ceil(beta * n)
    c2 = torch.zeros(n, dtype=torch.bool, device=X.device)
    c2[torch.sort(-score, stable=True).indices[:c2_size]] = True
    med = median_of_sorted(torch.sort(P, dim=0, stable=True).values)
    finite = finite_rows(X)
    l1 = torch.where(finite.unsqueeze(1), (P - med).abs(), zero).sum(dim=1)
    c1 = finite & (l1 <= 2 * threshold)
    chosen = c1 & c2
    if not bool(chosen.any()):
        return med.to(X.dtype)
    return P[chosen].mean(dim=0).to(X.dtype)


# The reference implementation of every op of the rule table, by op name.
IMPLEMENTATIONS = {op: globals()[op] for op in _rules.OPS}

# The ops with their own out= form (the others' results are copied into out).
OUT_IMPLEMENTATIONS = {"average": average_out}

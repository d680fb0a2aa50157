"""Plain definitions of every rule of API.md, written independently of byzagg's code.

Everything here works on Python floats (float64), with explicit loops over rows and
coordinates; nothing is vectorised and nothing is borrowed from byzagg. The aim is to be
obviously correct, not fast: use small inputs (n <= 15, d <= 6).

Conventions (API.md):
- coordinate-wise rules order the values of a coordinate ascending with NaN last (after
  +inf), then select;
- "the k values nearest to c" are the first k values when the values are ordered by
  (is NaN, |x - c|, x): ties keep the lower values, a NaN never enters while a number
  remains;
- a distance involving a row with a non-finite value is +inf (the diagonal stays 0);
- ranking of rows: rows with a non-finite value last, then by the key, then by index.

Every function takes G as a torch tensor (any float dtype) or a list of rows, and returns
a list of floats (a vector), or a list of lists (a matrix).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch

INF = math.inf
NAN = math.nan


# ----------------------------------------------------------------------------------------
# Small helpers


def rows_of(G) -> list[list[float]]:
    """G as a list of rows of Python floats (exact for every float dtype)."""
    if isinstance(G, torch.Tensor):
        return [[float(x) for x in row] for row in G.detach().cpu().to(torch.float64).tolist()]
    return [[float(x) for x in row] for row in G]


def column(rows, j) -> list[float]:
    return [row[j] for row in rows]


def is_finite_row(row) -> bool:
    return all(math.isfinite(x) for x in row)


def exact_sum(values) -> float:
    """Correctly rounded sum, with IEEE rules for non-finite values."""
    values = list(values)
    if any(math.isnan(x) for x in values):
        return NAN
    has_pos = any(x == INF for x in values)
    has_neg = any(x == -INF for x in values)
    if has_pos and has_neg:
        return NAN
    if has_pos:
        return INF
    if has_neg:
        return -INF
    return math.fsum(values)


def mean(values) -> float:
    values = list(values)
    return exact_sum(values) / len(values)


def mean_rows(rows, indices) -> list[float]:
    d = len(rows[0])
    return [mean(rows[i][j] for i in indices) for j in range(d)]


def sort_nan_last(values) -> list[float]:
    return sorted(values, key=lambda x: (1, 0.0) if math.isnan(x) else (0, x))


def median_1d(values) -> float:
    s = sort_nan_last(values)
    n = len(s)
    if n % 2 == 1:
        return s[n // 2]
    return (s[n // 2 - 1] + s[n // 2]) / 2


def trimmed_mean_1d(values, f) -> float:
    s = sort_nan_last(values)
    n = len(s)
    return mean(s[f : n - f])


def nearest_k(values, center, k) -> list[float]:
    """The k values nearest to center: ties keep the lower values; NaN never enters while a
    number remains. (center is assumed not NaN.)"""
    s = sort_nan_last(values)

    def key(pos):
        x = s[pos]
        if math.isnan(x):
            return (1, 0.0, pos)
        return (0, abs(x - center), pos)  # pos: the lower value first among equal distances

    chosen = sorted(range(len(s)), key=key)[:k]
    return [s[p] for p in chosen]


def nearest_k_bruteforce(values, center, k) -> list[float]:
    """The same choice by brute force over every k-subset of finite values: the subset
    whose distances to center, sorted descending, are lexicographically least (the k
    nearest), and among those the one of least sum (ties keep the lower values)."""
    best_key, best = None, None
    for subset in itertools.combinations(values, k):
        key = (sorted((abs(x - center) for x in subset), reverse=True), math.fsum(subset))
        if best_key is None or key < best_key:
            best_key, best = key, subset
    return sorted(best)


# ----------------------------------------------------------------------------------------
# Coordinate-wise rules


def average(G) -> list[float]:
    rows = rows_of(G)
    return [mean(column(rows, j)) for j in range(len(rows[0]))]


def median(G) -> list[float]:
    rows = rows_of(G)
    return [median_1d(column(rows, j)) for j in range(len(rows[0]))]


def trimmed_mean(G, f) -> list[float]:
    rows = rows_of(G)
    return [trimmed_mean_1d(column(rows, j), f) for j in range(len(rows[0]))]


def meamed(G, f) -> list[float]:
    rows = rows_of(G)
    n = len(rows)
    out = []
    for j in range(len(rows[0])):
        col = column(rows, j)
        out.append(mean(nearest_k(col, median_1d(col), n - f)))
    return out


def phocas(G, f) -> list[float]:
    rows = rows_of(G)
    n = len(rows)
    out = []
    for j in range(len(rows[0])):
        col = column(rows, j)
        out.append(mean(nearest_k(col, trimmed_mean_1d(col, f), n - f)))
    return out


# ----------------------------------------------------------------------------------------
# Distances


def squared_distance(a, b) -> float:
    if not (is_finite_row(a) and is_finite_row(b)):
        return INF
    return math.fsum((x - y) * (x - y) for x, y in zip(a, b))


def pairwise_distances(G, squared=False) -> list[list[float]]:
    rows = rows_of(G)
    n = len(rows)
    D = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            sq = squared_distance(rows[i], rows[j])
            D[i][j] = sq if squared else math.sqrt(sq)
    return D


# ----------------------------------------------------------------------------------------
# Krum family


def _scores(rows, indices, f) -> dict:
    """Krum scores of the rows `indices`, computed on that set alone."""
    n = len(indices)
    neighbours = n - f - 2
    scores = {}
    for i in indices:
        if neighbours <= 0:
            scores[i] = 0.0
            continue
        others = sorted(squared_distance(rows[i], rows[j]) for j in indices if j != i)
        scores[i] = exact_sum(others[:neighbours])
    return scores


def krum_scores(G, f) -> list[float]:
    rows = rows_of(G)
    scores = _scores(rows, list(range(len(rows))), f)
    return [scores[i] for i in range(len(rows))]


def krum_order(G, f) -> list[int]:
    """Rows ranked by (non-finite last, score, index)."""
    rows = rows_of(G)
    scores = krum_scores(rows, f)
    return sorted(range(len(rows)), key=lambda i: (not is_finite_row(rows[i]), scores[i], i))


def krum(G, f, m=1) -> list[float]:
    rows = rows_of(G)
    return mean_rows(rows, krum_order(rows, f)[:m])


def multi_krum(G, f, m=None) -> list[float]:
    rows = rows_of(G)
    return krum(rows, f, len(rows) - f if m is None else m)


def bulyan_selection(G, f) -> list[int]:
    rows = rows_of(G)
    n = len(rows)
    theta = n - 2 * f
    remaining = list(range(n))
    selected = []
    for _ in range(theta):
        scores = _scores(rows, remaining, f)
        best = min(remaining, key=lambda i: (not is_finite_row(rows[i]), scores[i], i))
        selected.append(best)
        remaining.remove(best)
    return selected


def bulyan(G, f) -> list[float]:
    rows = rows_of(G)
    n = len(rows)
    beta = n - 4 * f
    chosen = [rows[i] for i in bulyan_selection(rows, f)]
    out = []
    for j in range(len(rows[0])):
        col = column(chosen, j)
        out.append(mean(nearest_k(col, median_1d(col), beta)))
    return out


# ----------------------------------------------------------------------------------------
# Medoid, geometric median, MDA


def medoid_index(G) -> int:
    rows = rows_of(G)
    finite = [i for i in range(len(rows)) if is_finite_row(rows[i])]
    if not finite:
        return 0
    best, best_sum = None, None
    for i in finite:  # ascending: a tie keeps the lower index
        total = math.fsum(math.sqrt(squared_distance(rows[i], rows[j])) for j in finite)
        if best is None or total < best_sum:
            best, best_sum = i, total
    return best


def medoid(G) -> list[float]:
    rows = rows_of(G)
    return list(rows[medoid_index(rows)])


def geometric_median_objective(G, z, weights=None) -> float:
    """sum_i w_i ||z - g_i|| over the finite rows (non-finite rows have weight zero)."""
    rows = rows_of(G)
    w = [1.0] * len(rows) if weights is None else [float(x) for x in weights]
    z = [float(x) for x in z]
    terms = []
    for i, row in enumerate(rows):
        if not is_finite_row(row) or w[i] == 0:
            continue
        terms.append(w[i] * math.sqrt(math.fsum((a - b) * (a - b) for a, b in zip(z, row))))
    return math.fsum(terms)


def geometric_median_minimum(G, weights=None, iters=3000) -> tuple[float, list[float]]:
    """(minimum of the objective, a minimiser), to far better than a relative 1e-5.

    Candidates: every data point of positive weight (the minimiser may be one) and the
    iterates of a long plain Weiszfeld from the weighted mean (the objective decreases
    along them); the best candidate wins. An upper bound on the true minimum, and close to
    it.
    """
    rows = rows_of(G)
    w_all = [1.0] * len(rows) if weights is None else [float(x) for x in weights]
    keep = [i for i in range(len(rows)) if is_finite_row(rows[i]) and w_all[i] > 0]
    if not keep:
        return NAN, [NAN] * len(rows[0])
    P = np.array([rows[i] for i in keep], dtype=np.float64)
    w = np.array([w_all[i] for i in keep], dtype=np.float64)

    def objective(z):
        return geometric_median_objective([rows[i] for i in keep], z, [w_all[i] for i in keep])

    candidates = [P[k] for k in range(len(keep))]
    z = (w[:, None] * P).sum(axis=0) / w.sum()
    candidates.append(z)
    for _ in range(iters):
        dist = np.sqrt(((P - z) ** 2).sum(axis=1))
        if (dist == 0).any():  # on a data point: it is already a candidate
            break
        b = w / dist
        z_next = (b[:, None] * P).sum(axis=0) / b.sum()
        if np.array_equal(z_next, z):
            break
        z = z_next
    candidates.append(z)
    best = min(candidates, key=objective)
    return objective(best), [float(x) for x in best]


def mda_subset(G, f) -> tuple[int, ...]:
    """The (n - f)-subset of least diameter; ties to the lexicographically first."""
    rows = rows_of(G)
    n = len(rows)
    D = pairwise_distances(rows)
    best, best_diameter = None, None
    for subset in itertools.combinations(range(n), n - f):  # lexicographic order
        diameter = 0.0
        for a in subset:
            for b in subset:
                diameter = max(diameter, D[a][b])
        if best is None or diameter < best_diameter:
            best, best_diameter = subset, diameter
    return best


def mda(G, f) -> list[float]:
    rows = rows_of(G)
    return mean_rows(rows, mda_subset(rows, f))


# ----------------------------------------------------------------------------------------
# Centered clipping, NNM, bucketing, BrSGD


def norm(x) -> float:
    return math.sqrt(math.fsum(v * v for v in x))


def clip(x, tau) -> list[float]:
    size = norm(x)
    scale = 1.0 if size == 0 else min(1.0, tau / size)
    return [v * scale for v in x]


def centered_clipping(G, tau, iters=1, center=None) -> list[float]:
    rows = rows_of(G)
    n, d = len(rows), len(rows[0])
    v = [0.0] * d if center is None else [float(x) for x in center]
    for _ in range(iters):
        contributions = []
        for row in rows:
            if not is_finite_row(row):
                contributions.append([0.0] * d)  # infinitely far: zero contribution
            else:
                contributions.append(clip([row[j] - v[j] for j in range(d)], tau))
        v = [v[j] + math.fsum(c[j] for c in contributions) / n for j in range(d)]
    return v


def nnm(G, f) -> list[list[float]]:
    rows = rows_of(G)
    n = len(rows)
    out = []
    for i in range(n):
        ranked = sorted(
            range(n),
            key=lambda j: (not is_finite_row(rows[j]), 0.0 if i == j else squared_distance(rows[i], rows[j]), j),
        )
        out.append(mean_rows(rows, ranked[: n - f]))
    return out


def bucketing(G, s, permutation) -> list[list[float]]:
    """Bucket means for a given permutation (a list of row indices)."""
    rows = rows_of(G)
    perm = [int(p) for p in permutation]
    return [mean_rows(rows, perm[lo : lo + s]) for lo in range(0, len(perm), s)]


def brsgd_sets(G, beta=0.5, threshold=INF) -> tuple[set, set, list[int]]:
    """(C1, C2, scores) as API.md words them."""
    rows = rows_of(G)
    n, d = len(rows), len(rows[0])
    scores = [0] * n
    for j in range(d):
        finite = [i for i in range(n) if math.isfinite(rows[i][j])]
        if not finite:
            continue
        mu = math.fsum(rows[i][j] for i in finite) / len(finite)
        upper = [i for i in finite if rows[i][j] >= mu]
        lower = [i for i in finite if rows[i][j] < mu]
        winners = upper if len(upper) >= len(lower) else lower
        for i in winners:
            scores[i] += 1
    size = math.ceil(beta * n)
    c2 = set(sorted(range(n), key=lambda i: (-scores[i], i))[:size])
    med = median(rows)
    c1 = set()
    for i in range(n):
        if not is_finite_row(rows[i]):
            continue
        l1 = exact_sum(abs(rows[i][j] - med[j]) for j in range(d))
        if l1 <= 2 * threshold:
            c1.add(i)
    return c1, c2, scores


def brsgd(G, beta=0.5, threshold=INF) -> list[float]:
    rows = rows_of(G)
    c1, c2, _ = brsgd_sets(rows, beta, threshold)
    chosen = sorted(c1 & c2)
    if not chosen:
        return median(rows)
    return mean_rows(rows, chosen)

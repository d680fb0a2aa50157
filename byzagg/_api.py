"""The public functions of byzagg: one plain function per rule, with its checks and its
documentation, ending in one call of `_ops.dispatch`, which runs the native kernel for G's
device when there is one and the reference implementation otherwise.

`byzagg.reference` exposes the same functions, run on the reference alone.

Every function takes G as an (n, d) floating tensor (one row per worker) or as a sequence of
n tensors of one shape, dtype and device (then the result has the workers' shape). Input
that breaks a rule's requirement raises ValueError or TypeError naming the rule, n and f
(docs/api.md, "Errors").
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch

from . import _validate as v
from ._ops import dispatch, dispatch_out
from ._reference_impl import MDA_MAX_SUBSETS
from ._rules import BY_NAME, RULES, RULES_WITH_F

Matrix = Union[torch.Tensor, Sequence[torch.Tensor]]


def _reshape_rows(result: torch.Tensor, worker_shape) -> torch.Tensor:
    if worker_shape is None:
        return result
    return result.reshape(result.shape[0], *worker_shape)


def _reshape_vector(result: torch.Tensor, worker_shape) -> torch.Tensor:
    return result if worker_shape is None else result.reshape(worker_shape)


def _vector(rule: str, op: str, X: torch.Tensor, worker_shape, args: tuple, out, inputs: tuple) -> torch.Tensor:
    """Run op on the validated X: a new d-vector (the workers' shape for a sequence), or,
    with out, the result written into out (checked against the caller's tensor inputs
    `inputs`: G and any tensor parameter) and out returned."""
    if out is None:
        return _reshape_vector(dispatch(op, X, *args), worker_shape)
    v.check_out(rule, out, X, worker_shape, *inputs)
    return dispatch_out(op, X, *args, out=out)


def average(G: Matrix, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean of the rows: the baseline every robust rule replaces (not robust).

    Non-finite values propagate. Half precision is accumulated in float32.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor (the workers' shape for a sequence), G's dtype.

    Raises:
        TypeError, ValueError: G is not a non-empty floating matrix.

    Example:
        >>> byzagg.average(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        tensor([2., 3.])
    """
    X, shape = v.as_matrix("average", G)
    return _vector("average", "average", X, shape, (), out, (G,))


def median(G: Matrix, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Coordinate-wise median; for even n, the mean of the two middle values.

    Values are ordered with NaN last (after +inf). Robust while fewer than half the values
    of a coordinate are arbitrary.

    Source: Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning:
    Towards Optimal Statistical Rates", ICML 2018.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        TypeError, ValueError: G is not a non-empty floating matrix.

    Example:
        >>> byzagg.median(torch.tensor([[1.0], [5.0], [2.0]]))
        tensor([2.])
    """
    X, shape = v.as_matrix("median", G)
    return _vector("median", "median", X, shape, (), out, (G,))


def trimmed_mean(G: Matrix, f: int, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per coordinate, the mean of the values left after dropping the f smallest and the f
    largest.

    NaN is ordered after +inf, so up to f non-finite values per side are trimmed.

    Source: Yin, Chen, Ramchandran, Bartlett, "Byzantine-Robust Distributed Learning:
    Towards Optimal Statistical Rates", ICML 2018.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: "trimmed_mean requires n > 2f, got n=..., f=..." (or f < 0).
        TypeError: f is not an int.

    Example:
        >>> byzagg.trimmed_mean(torch.tensor([[1.0], [2.0], [3.0], [100.0]]), f=1)
        tensor([2.5000])
    """
    X, shape = v.as_matrix("trimmed_mean", G)
    f = v.check_f("trimmed_mean", X.shape[0], f)
    return _vector("trimmed_mean", "trimmed_mean", X, shape, (f,), out, (G,))


def meamed(G: Matrix, f: int, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean around the median: per coordinate, the mean of the n - f values nearest the
    median (ties keep the lower values).

    Source: Xie, Koyejo, Gupta, "Generalized Byzantine-tolerant SGD", arXiv 2018.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: "meamed requires n > 2f, got n=..., f=..." (or f < 0).
        TypeError: f is not an int.

    Example:
        >>> byzagg.meamed(torch.tensor([[1.0], [2.0], [3.0], [100.0]]), f=1)
        tensor([2.])
    """
    X, shape = v.as_matrix("meamed", G)
    f = v.check_f("meamed", X.shape[0], f)
    return _vector("meamed", "meamed", X, shape, (f,), out, (G,))


def phocas(G: Matrix, f: int, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per coordinate, the mean of the n - f values nearest the f-trimmed mean (ties keep
    the lower values).

    Source: Xie, Koyejo, Gupta, "Phocas: dimensional Byzantine-resilient stochastic
    gradient descent", arXiv 2018.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: "phocas requires n > 2f, got n=..., f=..." (or f < 0).
        TypeError: f is not an int.

    Example:
        >>> byzagg.phocas(torch.tensor([[1.0], [2.0], [3.0], [100.0]]), f=1)
        tensor([2.])
    """
    X, shape = v.as_matrix("phocas", G)
    f = v.check_f("phocas", X.shape[0], f)
    return _vector("phocas", "phocas", X, shape, (f,), out, (G,))


def pairwise_distances(G: Matrix, squared: bool = False) -> torch.Tensor:
    """(n, n) Euclidean distances sqrt(sum_k (x_ik - x_jk)^2), computed exactly (never
    through the Gram expansion), with a zero diagonal; +inf for any pair with a non-finite
    row. The building block of the distance-based rules.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        squared: return the squared distances.

    Returns:
        (n, n) tensor, G's dtype.

    Raises:
        TypeError: squared is not a bool; G is not a floating matrix.

    Example:
        >>> byzagg.pairwise_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        tensor([[0., 5.],
                [5., 0.]])
    """
    X, _ = v.as_matrix("pairwise_distances", G)
    if not isinstance(squared, bool):
        raise TypeError(f"pairwise_distances: squared must be a bool, got {squared!r}")
    return dispatch("pairwise_distances", X, squared)


def krum_scores(G: Matrix, f: int) -> torch.Tensor:
    """(n,) Krum scores: for each row, the sum of its squared distances to its n - f - 2
    nearest other rows. Rows with non-finite values score +inf.

    Always float64, whatever G's dtype: these are the values krum, multi_krum and Bulyan's
    first pick rank (ascending, ties to the lower index), so the selection can be read off
    them exactly. (Cast to float32, near-duplicate rows would show equal scores though the
    selection sees them differ.) The squared distances are summed in one fixed order on
    every CPU (see pairwise_distances), so the scores and the selection have the same bits
    whatever the vector instruction set.

    Source: Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent", NeurIPS 2017.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated.

    Returns:
        (n,) float64 tensor.

    Raises:
        ValueError: "krum_scores requires n >= 2f + 3, got n=..., f=..." (or f < 0).
        TypeError: f is not an int.

    Example:
        >>> scores = byzagg.krum_scores(G, f=2)
        >>> torch.equal(byzagg.krum(G, f=2), G[torch.argmin(scores)])  # first minimum
        True
    """
    X, _ = v.as_matrix("krum_scores", G)
    f = v.check_f("krum_scores", X.shape[0], f)
    return dispatch("krum_scores", X, f)


def krum(G: Matrix, f: int, m: int = 1, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Krum: the mean of the m rows with the lowest Krum scores (m = 1: the selected row).

    Ties go to the lower index; a row with a non-finite value is never selected while a
    finite row remains.

    Source: Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent", NeurIPS 2017.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated.
        m: number of rows averaged, 1 <= m <= n - f.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: "krum requires n >= 2f + 3, got n=..., f=..."; m out of range.
        TypeError: f or m is not an int.

    Example:
        >>> G = torch.randn(7, 3); G[0] = 1e6  # one Byzantine worker
        >>> byzagg.krum(G, f=1)  # one of the honest rows
    """
    X, shape = v.as_matrix("krum", G)
    n = X.shape[0]
    f = v.check_f("krum", n, f)
    m = v.check_m("krum", n, f, m)
    return _vector("krum", "krum", X, shape, (f, m), out, (G,))


def multi_krum(G: Matrix, f: int, m: Optional[int] = None, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Multi-Krum: krum with m = n - f rows averaged by default.

    Source: Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent", NeurIPS 2017.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated.
        m: number of rows averaged, 1 <= m <= n - f (default n - f).
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: "multi_krum requires n >= 2f + 3, got n=..., f=..."; m out of range.
        TypeError: f or m is not an int.

    Example:
        >>> byzagg.multi_krum(torch.randn(11, 5), f=2)  # mean of the 9 best-scored rows
    """
    X, shape = v.as_matrix("multi_krum", G)
    n = X.shape[0]
    f = v.check_f("multi_krum", n, f)
    m = v.check_m("multi_krum", n, f, n - f if m is None else m)
    return _vector("multi_krum", "krum", X, shape, (f, m), out, (G,))


def bulyan(G: Matrix, f: int, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Bulyan: select theta = n - 2f rows by Krum, applied repeatedly to the rows not yet
    selected (scores recomputed on that set, n' - f - 2 neighbours, at least 0); then per
    coordinate the mean of the beta = theta - 2f selected values nearest their median.

    Source: El Mhamdi, Guerraoui, Rouault, "The Hidden Vulnerability of Distributed
    Learning in Byzantium", ICML 2018.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: "bulyan requires n >= 4f + 3, got n=..., f=..." (or f < 0).
        TypeError: f is not an int.

    Example:
        >>> byzagg.bulyan(torch.randn(11, 5), f=2)
    """
    X, shape = v.as_matrix("bulyan", G)
    f = v.check_f("bulyan", X.shape[0], f)
    return _vector("bulyan", "bulyan", X, shape, (f,), out, (G,))


def medoid(G: Matrix, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """The row with the least sum of Euclidean distances to the finite rows, among the
    finite rows (ties to the lower index). If no row is finite, row 0.

    Source: Blanchard, El Mhamdi, Guerraoui, Stainer, "Machine Learning with Adversaries:
    Byzantine Tolerant Gradient Descent", NeurIPS 2017 (supplementary material, Section 5).

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype: one of the rows.

    Raises:
        TypeError, ValueError: G is not a non-empty floating matrix.

    Example:
        >>> byzagg.medoid(torch.tensor([[0.0], [1.0], [9.0]]))
        tensor([1.])
    """
    X, shape = v.as_matrix("medoid", G)
    return _vector("medoid", "medoid", X, shape, (), out, (G,))


def geometric_median(
    G: Matrix,
    weights: Optional[torch.Tensor] = None,
    eps: float = 1e-8,
    max_iter: int = 100,
    tol: float = 1e-7,
    *,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Geometric median argmin_z sum_i w_i ||z - g_i|| by smoothed Weiszfeld iterations.

    z starts at the coordinate-wise median of the finite rows of positive weight (robust:
    with fewer than half of the rows far away it lies in the box of the others). Each of at
    most max_iter iterations
    takes the Weiszfeld step s = y - z to
    y = sum_i b_i g_i / sum_i b_i, b_i = w_i / max(eps, ||z - g_i||), then goes along it as
    far as is best among the step multiples 2^(k/4), k = 0..40 (1 to 1024: a line search,
    for flat objectives; the first best on ties); it stops when a step moves z by at most
    tol * max(eps, sum_i w_i ||z - g_i|| / sum_i w_i). Then one row is a candidate (the
    minimiser is often a data point, where Weiszfeld converges slowly): the row nearest the
    last iterate whose distances were computed (the first of the rows within a relative
    1e-9 of the least distance: near ties do not depend on rounding). It is returned if its
    exact objective is at most the final iterate's (up to a relative 1e-12, so that ties, as
    where a whole segment minimises, go to the row).

    Distances ||z - g_i|| are always sums of squared differences of z and the rows, in
    float64, never expansions of pairwise distances: rows of any magnitude (up to the
    float32 range) cost the others no accuracy. The line search uses
    ||z + lam s - g_i||^2 = q_i + 2 lam <z - g_i, s> + lam^2 ||s||^2 with the three terms
    from the same pass, and the next pass recomputes the distances at the new z; the final
    iterate's objective is the last pass's exact one plus the line search's change. Cost
    (native CPU): one pass over G for the coordinate-wise median and the distances to it
    (two if a row of positive weight is not finite), and one pass per iteration (the last
    one also gives the candidate row's distances; a stop by tol before max_iter takes one
    more pass for them). No pairwise distances: O(n d) per pass.

    Rows with non-finite values get weight zero; if no row is left with positive weight,
    the result is all NaN.

    Source: Pillutla, Kakade, Harchaoui, "Robust Aggregation for Federated Learning", IEEE
    Transactions on Signal Processing 2022 (the smoothed Weiszfeld algorithm).

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        weights: (n,) finite, non-negative weights (default: all 1).
        eps: smoothing, > 0.
        max_iter: most iterations, >= 1.
        tol: relative stopping tolerance, >= 0.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: negative or non-finite weights, eps <= 0, max_iter < 1, tol < 0.
        TypeError: an argument of the wrong type.

    Example:
        >>> byzagg.geometric_median(torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [50.0, 50.0]]))
    """
    X, shape = v.as_matrix("geometric_median", G)
    n = X.shape[0]
    if weights is not None:
        weights = v.check_vector("geometric_median", "weights", weights, X, n)
        if bool((weights < 0).any()):
            raise ValueError("geometric_median: weights must be >= 0")
    eps = v.check_real("geometric_median", "eps", eps, positive=True)
    max_iter = v.check_int("geometric_median", "max_iter", max_iter, minimum=1)
    tol = v.check_real("geometric_median", "tol", tol, nonnegative=True)
    return _vector("geometric_median", "geometric_median", X, shape, (weights, eps, max_iter, tol), out, (G, weights))


def mda(G: Matrix, f: int, *, out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Minimum-diameter averaging: the mean of the subset of n - f rows whose largest
    pairwise distance is least (exact search; ties to the lexicographically first subset).

    Source: El-Mhamdi, Guerraoui, Rouault, "Distributed Momentum for Byzantine-resilient
    Stochastic Gradient Descent", ICLR 2021.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated.
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: "mda requires n > 2f, got n=..., f=..."; C(n, f) above
            byzagg.MDA_MAX_SUBSETS (1,000,000).
        TypeError: f is not an int.

    Example:
        >>> byzagg.mda(torch.tensor([[0.0], [1.0], [2.0], [100.0]]), f=1)
        tensor([1.])
    """
    X, shape = v.as_matrix("mda", G)
    n = X.shape[0]
    f = v.check_f("mda", n, f)
    subsets = math.comb(n, f)
    if subsets > MDA_MAX_SUBSETS:
        raise ValueError(
            f"mda requires C(n, f) <= {MDA_MAX_SUBSETS} subsets, got n={n}, f={f}: C(n, f)={subsets}"
        )
    return _vector("mda", "mda", X, shape, (f,), out, (G,))


def centered_clipping(
    G: Matrix,
    tau: float,
    iters: int = 1,
    center: Optional[torch.Tensor] = None,
    *,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Centered clipping: v <- v + mean_i clip(g_i - v, tau), repeated iters times from
    v = center (the zero vector if None), with clip(x, tau) = x * min(1, tau / ||x||).

    A row with a non-finite value contributes zero.

    Source: Karimireddy, He, Jaggi, "Learning from History for Byzantine Robust
    Optimization", ICML 2021.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        tau: clipping radius, > 0.
        iters: iterations, >= 1.
        center: (d,) finite starting point (default zero; the previous aggregate in the
            source).
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: tau <= 0, iters < 1, a center of the wrong size or not finite.
        TypeError: an argument of the wrong type.

    Example:
        >>> byzagg.centered_clipping(torch.tensor([[1.0, 0.0], [100.0, 0.0]]), tau=2.0)
        tensor([1.5000, 0.0000])
    """
    X, shape = v.as_matrix("centered_clipping", G)
    tau = v.check_real("centered_clipping", "tau", tau, positive=True)
    iters = v.check_int("centered_clipping", "iters", iters, minimum=1)
    if center is not None:
        center = v.check_vector("centered_clipping", "center", center, X, X.shape[1])
    return _vector("centered_clipping", "centered_clipping", X, shape, (tau, iters, center), out, (G, center))


def nnm(G: Matrix, f: int) -> torch.Tensor:
    """Nearest-neighbour mixing, a pre-aggregation: each row replaced by the mean of its
    n - f nearest rows, itself included (ranked by distance, then index; rows with
    non-finite values rank last).

    Source: Allouah, Farhadkhani, Guerraoui, Gupta, Pinot, Stephan, "Fixing by Mixing: A
    Recipe for Optimal Byzantine ML under Heterogeneity", AISTATS 2023.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated.

    Returns:
        (n, d) tensor, G's dtype: give it to a rule next, e.g. byzagg.krum(byzagg.nnm(G, f), f).

    Raises:
        ValueError: "nnm requires n > 2f, got n=..., f=..." (or f < 0).
        TypeError: f is not an int.

    Example:
        >>> byzagg.median(byzagg.nnm(torch.randn(11, 5), f=2))
    """
    X, shape = v.as_matrix("nnm", G)
    f = v.check_f("nnm", X.shape[0], f)
    return _reshape_rows(dispatch("nnm", X, f), shape)


def bucketing(G: Matrix, s: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Bucketing, a pre-aggregation: permute the rows at random (torch.randperm with
    `generator`), cut them into buckets of s consecutive rows (the last may be smaller) and
    return the bucket means. An averaging step: non-finite values propagate into their
    bucket, to be handled by the rule applied next.

    Source: Karimireddy, He, Jaggi, "Byzantine-Robust Learning on Heterogeneous Datasets
    via Bucketing", ICLR 2022.

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        s: bucket size, >= 1.
        generator: the permutation's random generator (default: torch's global one).

    Returns:
        (ceil(n / s), d) tensor, G's dtype.

    Raises:
        ValueError: s < 1.
        TypeError: s is not an int, generator not a torch.Generator.

    Example:
        >>> byzagg.median(byzagg.bucketing(torch.randn(12, 5), s=2, generator=torch.Generator().manual_seed(0)))
    """
    X, shape = v.as_matrix("bucketing", G)
    s = v.check_int("bucketing", "s", s, minimum=1)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"bucketing: generator must be a torch.Generator, got {type(generator).__name__}")
    return _reshape_rows(dispatch("bucketing", X, s, generator), shape)


def brsgd(
    G: Matrix, beta: float = 0.5, threshold: float = math.inf, *, out: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """BrSGD: per coordinate, over its finite values, the rows on the side of the
    coordinate mean holding the majority (>= mean is the upper side, which wins ties) score
    1. C2 = the ceil(beta n) rows of highest total score (ties to the lower index);
    C1 = finite rows with ||g_i - median(G)||_1 <= 2 threshold. Returns the mean of C1 and
    C2's intersection, or the coordinate-wise median if it is empty.

    Source: Li, Chen, Dong, Zhang, Wang, Zeng, "Efficient Byzantine-Resilient Stochastic
    Gradient Descent" (Algorithm 2).

    Args:
        G: (n, d) tensor or sequence of n tensors of one shape.
        beta: fraction of rows kept by score, 0 < beta <= 1.
        threshold: L1 radius around the median, >= 0 (may be inf: no C1 filter).
        out: a buffer for the result: its shape, G's dtype and device, no memory shared with
            G (docs/api.md, "out="); the result is written into it and it is returned.

    Returns:
        (d,) tensor, G's dtype.

    Raises:
        ValueError: beta outside (0, 1], threshold < 0 or NaN.
        TypeError: an argument of the wrong type.

    Example:
        >>> byzagg.brsgd(torch.randn(10, 5), beta=0.5)
    """
    X, shape = v.as_matrix("brsgd", G)
    beta = v.check_real("brsgd", "beta", beta, positive=True)
    if beta > 1:
        raise ValueError(f"brsgd requires 0 < beta <= 1, got beta={beta}")
    threshold = v.check_real("brsgd", "threshold", threshold, nonnegative=True, allow_inf=True)
    return _vector("brsgd", "brsgd", X, shape, (beta, threshold), out, (G,))


_BY_NAME = {
    "average": average,
    "median": median,
    "trimmed_mean": trimmed_mean,
    "meamed": meamed,
    "phocas": phocas,
    "krum": krum,
    "multi_krum": multi_krum,
    "bulyan": bulyan,
    "medoid": medoid,
    "geometric_median": geometric_median,
    "mda": mda,
    "centered_clipping": centered_clipping,
    "nnm": nnm,
    "bucketing": bucketing,
    "brsgd": brsgd,
}


def aggregate(name: str, G: Matrix, f: Optional[int] = None, **params) -> torch.Tensor:
    """Call the rule called `name` (one of byzagg.RULES) on G: one call shape for every rule.

    f, the number of Byzantine workers tolerated, may be given to every rule, so that a
    loop over RULES needs one f: the rules that take f (trimmed_mean, meamed, phocas, krum,
    multi_krum, bulyan, mda, nnm) get it and check their requirement on n and f; the others
    (average, median, medoid, geometric_median, centered_clipping, bucketing, brsgd) have
    no parameter f and ignore it once it is checked to be an int >= 0. Other parameters
    are passed by keyword, out= among them for the rules that return a d-vector (all but nnm
    and bucketing).

    Args:
        name: a rule of byzagg.RULES.
        G: (n, d) tensor or sequence of n tensors of one shape.
        f: number of Byzantine workers tolerated (required by the rules that take it).
        **params: the rule's other parameters.

    Returns:
        What the rule returns.

    Raises:
        ValueError: an unknown rule name; what the rule raises.
        TypeError: a rule that needs f called without it.

    Example:
        >>> for name in byzagg.RULES:
        ...     out = byzagg.aggregate(name, G, f=2, **params.get(name, {}))
    """
    if not isinstance(name, str) or name not in RULES:
        raise ValueError(f"aggregate: unknown rule {name!r}; known rules: {', '.join(RULES)}")
    if "out" in params and BY_NAME[name].result != "vector":
        raise TypeError(f"aggregate: rule {name!r} returns rows, not a d-vector, and takes no out=")
    if name in RULES_WITH_F:
        if f is None:
            raise TypeError(f"aggregate: rule {name!r} needs f (the number of Byzantine workers tolerated)")
        return _BY_NAME[name](G, f, **params)
    if f is not None:
        v.check_int("aggregate", "f", f, minimum=0)
    return _BY_NAME[name](G, **params)


# every public function, keyed by name (the rules and the building blocks)
FUNCTIONS = {**_BY_NAME, "pairwise_distances": pairwise_distances, "krum_scores": krum_scores}

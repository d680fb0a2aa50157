"""The public functions of docs/api.md, written once and bound to an implementation chooser.

`make_rules(resolve)` returns every rule as a function with its checks and docstring;
`resolve(name, G)` gives the implementation to run on the validated (n, d) matrix G.
`byzagg` binds it to the native-or-reference dispatcher, `byzagg.reference` to the
reference alone.
"""

from __future__ import annotations

import math

import torch

from . import _validate as v
from ._reference_impl import MDA_MAX_SUBSETS

RULES = (
    "average",
    "median",
    "trimmed_mean",
    "meamed",
    "phocas",
    "krum",
    "multi_krum",
    "bulyan",
    "medoid",
    "geometric_median",
    "mda",
    "centered_clipping",
    "nnm",
    "bucketing",
    "brsgd",
)

# The rules whose parameter f is the number of Byzantine workers tolerated.
RULES_WITH_F = frozenset({"trimmed_mean", "meamed", "phocas", "krum", "multi_krum", "bulyan", "mda", "nnm"})


def _reshape_rows(result: torch.Tensor, worker_shape) -> torch.Tensor:
    if worker_shape is None:
        return result
    return result.reshape(result.shape[0], *worker_shape)


def _reshape_vector(result: torch.Tensor, worker_shape) -> torch.Tensor:
    return result if worker_shape is None else result.reshape(worker_shape)


def make_rules(resolve, module: str) -> dict:
    def average(G):
        """Mean of the rows (not robust; the baseline).

        Non-finite values propagate. Half precision is accumulated in float32.

        >>> byzagg.average(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        tensor([2., 3.])
        """
        X, shape = v.as_matrix("average", G)
        return _reshape_vector(resolve("average", X)(X), shape)

    def median(G):
        """Coordinate-wise median; for even n the mean of the two middle values.

        Values are ordered with NaN last (after +inf). Robust while fewer than half the
        values of a coordinate are arbitrary.

        >>> byzagg.median(torch.tensor([[1.0], [5.0], [2.0]]))
        tensor([2.])
        """
        X, shape = v.as_matrix("median", G)
        return _reshape_vector(resolve("median", X)(X), shape)

    def trimmed_mean(G, f):
        """Per coordinate, drop the f smallest and the f largest values; mean of the rest.

        Requires n > 2f. NaN is ordered after +inf, so up to f non-finite values per side
        are trimmed.

        >>> byzagg.trimmed_mean(torch.tensor([[1.0], [2.0], [3.0], [100.0]]), f=1)
        tensor([2.5000])
        """
        X, shape = v.as_matrix("trimmed_mean", G)
        f = v.check_f("trimmed_mean", X.shape[0], f)
        return _reshape_vector(resolve("trimmed_mean", X)(X, f), shape)

    def meamed(G, f):
        """Mean around the median: per coordinate, the mean of the n - f values nearest the
        median (ties keep the lower values). Requires n > 2f.

        >>> byzagg.meamed(torch.tensor([[1.0], [2.0], [3.0], [100.0]]), f=1)
        tensor([2.])
        """
        X, shape = v.as_matrix("meamed", G)
        f = v.check_f("meamed", X.shape[0], f)
        return _reshape_vector(resolve("meamed", X)(X, f), shape)

    def phocas(G, f):
        """Per coordinate, the mean of the n - f values nearest the f-trimmed mean (ties keep
        the lower values). Requires n > 2f.

        >>> byzagg.phocas(torch.tensor([[1.0], [2.0], [3.0], [100.0]]), f=1)
        tensor([2.])
        """
        X, shape = v.as_matrix("phocas", G)
        f = v.check_f("phocas", X.shape[0], f)
        return _reshape_vector(resolve("phocas", X)(X, f), shape)

    def pairwise_distances(G, squared=False):
        """(n, n) Euclidean distances sqrt(sum_k (x_ik - x_jk)^2), computed exactly (never
        through the Gram expansion), zero diagonal; +inf for any pair with a non-finite row.
        With squared=True, the squared distances.

        >>> byzagg.pairwise_distances(torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
        tensor([[0., 5.],
                [5., 0.]])
        """
        X, _ = v.as_matrix("pairwise_distances", G)
        if not isinstance(squared, bool):
            raise TypeError(f"pairwise_distances: squared must be a bool, got {squared!r}")
        return resolve("pairwise_distances", X)(X, squared)

    def krum_scores(G, f):
        """(n,) Krum scores: for each row, the sum of its squared distances to its n - f - 2
        nearest other rows. Requires n >= 2f + 3. Rows with non-finite values score +inf.

        Always float64, whatever G's dtype: these are the values krum, multi_krum and
        Bulyan's first pick rank (ascending, ties to the lower index), so the selection
        can be read off them exactly. (Cast to float32, near-duplicate rows would show
        equal scores though the selection sees them differ.) The squared distances are
        summed in one fixed order on every CPU (see pairwise_distances), so the scores
        and the selection have the same bits whatever the vector instruction set.

        >>> scores = byzagg.krum_scores(G, f=2)
        >>> torch.equal(byzagg.krum(G, f=2), G[torch.argmin(scores)])  # first minimum
        True
        """
        X, _ = v.as_matrix("krum_scores", G)
        f = v.check_f("krum_scores", X.shape[0], f)
        return resolve("krum_scores", X)(X, f)

    def krum(G, f, m=1):
        """Krum: the mean of the m rows with the lowest Krum scores (m=1: the selected row).

        Ties go to the lower index; a row with a non-finite value is never selected while a
        finite row remains. Requires n >= 2f + 3 and 1 <= m <= n - f.

        >>> G = torch.randn(7, 3); G[0] = 1e6  # one Byzantine worker
        >>> byzagg.krum(G, f=1)  # one of the honest rows
        """
        X, shape = v.as_matrix("krum", G)
        n = X.shape[0]
        f = v.check_f("krum", n, f)
        m = v.check_m("krum", n, f, m)
        return _reshape_vector(resolve("krum", X)(X, f, m), shape)

    def multi_krum(G, f, m=None):
        """Multi-Krum: krum with m = n - f rows averaged by default.

        Requires n >= 2f + 3 and 1 <= m <= n - f.
        """
        X, shape = v.as_matrix("multi_krum", G)
        n = X.shape[0]
        f = v.check_f("multi_krum", n, f)
        m = v.check_m("multi_krum", n, f, n - f if m is None else m)
        return _reshape_vector(resolve("krum", X)(X, f, m), shape)

    def bulyan(G, f):
        """Bulyan: select theta = n - 2f rows by Krum, applied repeatedly to the rows not yet
        selected (scores recomputed on that set, n' - f - 2 neighbours, at least 0); then per
        coordinate the mean of the beta = theta - 2f selected values nearest their median.

        Requires n >= 4f + 3.
        """
        X, shape = v.as_matrix("bulyan", G)
        f = v.check_f("bulyan", X.shape[0], f)
        return _reshape_vector(resolve("bulyan", X)(X, f), shape)

    def medoid(G):
        """The row with the least sum of Euclidean distances to the finite rows, among the
        finite rows (ties to the lower index). If no row is finite, row 0.
        """
        X, shape = v.as_matrix("medoid", G)
        return _reshape_vector(resolve("medoid", X)(X), shape)

    def geometric_median(G, weights=None, eps=1e-8, max_iter=100, tol=1e-7):
        """Geometric median argmin_z sum_i w_i ||z - g_i|| by smoothed Weiszfeld iterations.

        z starts at the coordinate-wise median of the rows of positive weight (robust: with
        fewer than half of the rows far away it lies in the box of the others). Each of at
        most max_iter iterations takes the Weiszfeld step s = y - z to
        y = sum_i b_i g_i / sum_i b_i, b_i = w_i / max(eps, ||z - g_i||), then goes along it
        as far as is best among the step multiples 2^(k/4), k = 0..40 (1 to 1024: a line
        search, for flat objectives; the first best on ties); it stops when a step moves z by
        at most tol * max(eps, sum_i w_i ||z - g_i|| / sum_i w_i). Then the rows themselves
        are candidates: if a row's objective is at most the iterate's (up to a relative 1e-12,
        so that ties, as where a whole segment minimises, go to the row), the first row of
        least objective is returned (the minimiser is often a data point, where Weiszfeld
        converges slowly). max_iter = 0 (native ops only) returns the start.

        Distances ||z - g_i|| are always sums of squared differences of z and the rows, in
        float64, never expansions of pairwise distances: rows of any magnitude (up to the
        float32 range) cost the others no accuracy. The line search uses
        ||z + lam s - g_i||^2 = q_i + 2 lam <z - g_i, s> + lam^2 ||s||^2 with the three terms
        from the same pass (its change from lam = 0 is formed without differences of huge
        numbers), and the next pass recomputes the distances at the new z. Cost: the exact
        pairwise distances (for the data-point check), the coordinate-wise median, and one
        pass over G per iteration plus two (the start's and the final distances).

        Rows with non-finite values get weight zero; if no row is left with positive
        weight, the result is all NaN. weights: (n,) finite, non-negative.
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
        return _reshape_vector(resolve("geometric_median", X)(X, weights, eps, max_iter, tol), shape)

    def mda(G, f):
        """Minimum-diameter averaging: the mean of the subset of n - f rows whose largest
        pairwise distance is least (exact search; ties to the lexicographically first
        subset). Requires n > 2f and C(n, f) <= byzagg.MDA_MAX_SUBSETS (1,000,000).
        """
        X, shape = v.as_matrix("mda", G)
        n = X.shape[0]
        f = v.check_f("mda", n, f)
        subsets = math.comb(n, f)
        if subsets > MDA_MAX_SUBSETS:
            raise ValueError(
                f"mda requires C(n, f) <= {MDA_MAX_SUBSETS} subsets, got n={n}, f={f}: C(n, f)={subsets}"
            )
        return _reshape_vector(resolve("mda", X)(X, f), shape)

    def centered_clipping(G, tau, iters=1, center=None):
        """Centered clipping: v <- v + mean_i clip(g_i - v, tau), repeated iters times from
        v = center (the zero vector if None), with clip(x, tau) = x * min(1, tau / ||x||).

        A row with a non-finite value contributes zero. tau > 0; iters >= 1.
        """
        X, shape = v.as_matrix("centered_clipping", G)
        tau = v.check_real("centered_clipping", "tau", tau, positive=True)
        iters = v.check_int("centered_clipping", "iters", iters, minimum=1)
        if center is not None:
            center = v.check_vector("centered_clipping", "center", center, X, X.shape[1])
        return _reshape_vector(resolve("centered_clipping", X)(X, tau, iters, center), shape)

    def nnm(G, f):
        """Nearest-neighbour mixing: (n, d), each row replaced by the mean of its n - f
        nearest rows, itself included (ranked by distance, then index; rows with non-finite
        values rank last). Requires n > 2f.
        """
        X, shape = v.as_matrix("nnm", G)
        f = v.check_f("nnm", X.shape[0], f)
        return _reshape_rows(resolve("nnm", X)(X, f), shape)

    def bucketing(G, s, generator=None):
        """Bucketing: permute the rows at random (torch.randperm with `generator`), cut them
        into buckets of s consecutive rows (the last may be smaller) and return the
        (ceil(n / s), d) bucket means. An averaging step: non-finite values propagate into
        their bucket, to be handled by the rule applied next.
        """
        X, shape = v.as_matrix("bucketing", G)
        s = v.check_int("bucketing", "s", s, minimum=1)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"bucketing: generator must be a torch.Generator, got {type(generator).__name__}")
        return _reshape_rows(resolve("bucketing", X)(X, s, generator), shape)

    def brsgd(G, beta=0.5, threshold=math.inf):
        """BrSGD (Li et al.): per coordinate, over its finite values, the rows on the side of
        the coordinate mean holding the majority (>= mean is the upper side, which wins
        ties) score 1. C2 = the ceil(beta n) rows of highest total score (ties to the lower
        index); C1 = finite rows with ||g_i - median(G)||_1 <= 2 threshold. Returns the mean
        of C1 and C2's intersection, or the coordinate-wise median if it is empty.
        beta in (0, 1]; threshold >= 0 (may be inf).
        """
        X, shape = v.as_matrix("brsgd", G)
        beta = v.check_real("brsgd", "beta", beta, positive=True)
        if beta > 1:
            raise ValueError(f"brsgd requires 0 < beta <= 1, got beta={beta}")
        threshold = v.check_real("brsgd", "threshold", threshold, nonnegative=True, allow_inf=True)
        return _reshape_vector(resolve("brsgd", X)(X, beta, threshold), shape)

    functions = dict(
        average=average,
        median=median,
        trimmed_mean=trimmed_mean,
        meamed=meamed,
        phocas=phocas,
        pairwise_distances=pairwise_distances,
        krum_scores=krum_scores,
        krum=krum,
        multi_krum=multi_krum,
        bulyan=bulyan,
        medoid=medoid,
        geometric_median=geometric_median,
        mda=mda,
        centered_clipping=centered_clipping,
        nnm=nnm,
        bucketing=bucketing,
        brsgd=brsgd,
    )
    for fn in functions.values():
        fn.__module__ = module
        fn.__qualname__ = fn.__name__

    def aggregate(name, G, f=None, **params):
        """Call the rule called `name` (one of RULES) on G: one call shape for every rule.

        f, the number of Byzantine workers tolerated, may be given to every rule, so that a
        loop over RULES needs one f: the rules that take f (trimmed_mean, meamed, phocas,
        krum, multi_krum, bulyan, mda, nnm) get it and check their requirement on n and f;
        the others (average, median, medoid, geometric_median, centered_clipping,
        bucketing, brsgd) have no parameter f and ignore it once it is checked to be an
        int >= 0. Other parameters are passed by keyword.

        >>> for name in byzagg.RULES:
        ...     out = byzagg.aggregate(name, G, f=2, **params.get(name, {}))
        """
        if not isinstance(name, str) or name not in RULES:
            raise ValueError(f"aggregate: unknown rule {name!r}; known rules: {', '.join(RULES)}")
        if name in RULES_WITH_F:
            if f is None:
                raise TypeError(f"aggregate: rule {name!r} needs f (the number of Byzantine workers tolerated)")
            return functions[name](G, f, **params)
        if f is not None:
            v.check_int("aggregate", "f", f, minimum=0)
        return functions[name](G, **params)

    aggregate.__module__ = module
    aggregate.__qualname__ = "aggregate"
    functions["aggregate"] = aggregate
    return functions

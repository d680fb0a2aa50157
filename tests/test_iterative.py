"""Native CPU kernels of the iterative rules (geometric_median, centered_clipping) and of
brsgd against the reference (byzagg/_reference_impl.py), computed in float64 like it.

brsgd is of the coordinate family in the rule table; its tests are here because its kernel
is checked with the same float64 tolerances, inputs and ISA script as the iterative ones.

Every dtype on the random and adversarial cases (utils.py), at most f non-finite rows, the
same bits for 1 and 2 threads, no mutation, the argument checks; every tail of the vector
block kernels, the same bits on every vector ISA (BYZAGG_CPU_ISA), the geometric median's
data-point check and line search on the cases that defeated plain Weiszfeld, and brsgd
equal to the reference bit for bit.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from byzagg import _rules
from byzagg import _reference_impl as impl

import definitions as D
from utils import ALL_DTYPES as DTYPES
from utils import NATIVE_OPS, adversarial_cases, assert_close, gen, native, op_args, op_samples, random_cases


# ---------------------------------------------------------------------------------------
# Against the reference on every dtype (float64 arithmetic like the reference)

# The iterative family's ops and brsgd, called as the rule table's samples (utils.op_samples).
ITERATIVE_OPS = [op for op in NATIVE_OPS if _rules.BY_NAME[op].family == "iterative"] + ["brsgd"]
ITERATIVE_TOL = {torch.float64: 1e-9, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def iterative_cases(seed=20):
    cases = [(name, X) for name, X in random_cases(seed)]
    cases += [(name, X) for name, X, _ in adversarial_cases(seed + 1)]
    return cases


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_geometric_median(dtype):
    op = native("geometric_median")
    g = gen(21)
    for name, X in iterative_cases():
        G = X.to(dtype)
        if not torch.isfinite(G).all():
            continue
        for args in [(None, 1e-8, 100, 1e-7), (None, 1e-6, 3, 0.0), (None, 1e-8, 1, 1e-7)]:
            want = impl.geometric_median(G, *args)
            assert_close(op(G, *args), want, dtype, f"{name} {args} {dtype}", ITERATIVE_TOL[dtype])
        w = torch.rand(G.shape[0], generator=g, dtype=torch.float64)
        w[0] = 0.0
        args = (w.to(dtype), 1e-8, 50, 1e-9)
        assert_close(op(G, *args), impl.geometric_median(G, *args), dtype, f"{name} weights {dtype}", ITERATIVE_TOL[dtype])


def test_geometric_median_objective_and_edge_cases():
    op = native("geometric_median")
    G = torch.randn(31, 200, generator=gen(22), dtype=torch.float64)
    G[:5] += 30
    z = op(G, None, 1e-8, 1000, 1e-12)
    objective = lambda v: torch.linalg.vector_norm(G - v, dim=1).sum()  # noqa: E731
    best = objective(impl.geometric_median(G, None, 1e-8, 5000, 0.0))
    assert objective(z) <= best * (1 + 1e-5)
    # No row of positive weight: all NaN, as the reference; max_iter 0: the start, the
    # coordinate-wise median of the rows of positive weight.
    nan_rows = G.clone()
    nan_rows[:] = math.nan
    assert torch.isnan(op(nan_rows, None, 1e-8, 10, 1e-7)).all()
    zero = torch.zeros(31, dtype=torch.float64)
    assert torch.isnan(op(G, zero, 1e-8, 10, 1e-7)).all()
    assert torch.equal(op(G, None, 1e-8, 0, 1e-7), impl.median(G)), "max_iter=0"
    w = torch.ones(31, dtype=torch.float64)
    w[:3] = 0.0
    assert torch.equal(op(G, w, 1e-8, 0, 1e-7), impl.median(G[3:])), "max_iter=0, zero weights"
    # A single row, all rows equal: that row.
    assert_close(op(G[:1], None, 1e-8, 10, 1e-7), G[0], torch.float64, "one row")
    E = G[:1].repeat(5, 1)
    assert_close(op(E, None, 1e-8, 10, 1e-7), G[0], torch.float64, "equal rows")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_centered_clipping(dtype):
    op = native("centered_clipping")
    g = gen(23)
    for name, X in iterative_cases(seed=24):
        G = X.to(dtype)
        if not torch.isfinite(G).all():
            continue
        center = torch.randn(G.shape[1], generator=g, dtype=torch.float64).to(dtype)
        for args in [(1.0, 1, None), (0.1, 3, None), (10.0, 2, center), (1e9, 1, center), (1e-3, 5, None)]:
            want = impl.centered_clipping(G, *args)
            assert_close(op(G, *args), want, dtype, f"{name} {args[:2]} {dtype}", ITERATIVE_TOL[dtype])


def test_centered_clipping_does_not_modify_center():
    op = native("centered_clipping")
    G = torch.randn(9, 30, generator=gen(25), dtype=torch.float64)
    center = torch.randn(30, generator=gen(26), dtype=torch.float64)
    before = center.clone()
    op(G, 0.5, 3, center)
    assert torch.equal(center, before)
    assert torch.equal(op(G, 0.5, 0, center), center)  # no iteration: the start


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_brsgd(dtype):
    op = native("brsgd")
    for name, X in iterative_cases(seed=27):
        G = X.to(dtype)
        if not torch.isfinite(G).all():
            continue
        n = G.shape[0]
        scale = float(torch.linalg.vector_norm(G.double() - G.double().median(0).values, ord=1, dim=1).median())
        for beta, threshold in [(0.5, math.inf), (1.0, math.inf), (0.3, scale / 2), (0.9, scale), (1 / n, 0.0)]:
            want = impl.brsgd(G, beta, threshold)
            assert_close(op(G, beta, threshold), want, dtype, f"{name} beta={beta} {dtype}", ITERATIVE_TOL[dtype])


def test_brsgd_exact_on_integers():
    """Small integers: means, medians and sides are exact, so the bits agree."""
    op = native("brsgd")
    g = gen(28)
    for n in (4, 5, 10, 11):
        G = torch.randint(-3, 4, (n, 700), generator=g).float()
        for beta, threshold in [(0.5, math.inf), (0.7, 300.0), (0.2, 0.0)]:
            assert torch.equal(op(G, beta, threshold), impl.brsgd(G, beta, threshold)), (n, beta, threshold)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "mixed", "entries"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_iterative_nonfinite_rows(bad, dtype):
    n, d, f = 15, 500, 4
    g = gen(29)
    G = torch.randn(n, d, generator=g).to(dtype)
    rows = torch.randperm(n, generator=g)[:f].tolist()
    for k, r in enumerate(rows):
        if bad == "entries":
            G[r, (37 * k) % d] = [math.nan, math.inf, -math.inf][k % 3]
        elif bad == "mixed":
            G[r] = [math.nan, math.inf, -math.inf][k % 3]
        else:
            G[r] = float(bad)
    calls = op_samples(G, ops=ITERATIVE_OPS)
    for op, args in calls:
        got = native(op)(G, *args)
        assert torch.isfinite(got).all(), f"{op} {bad}: non-finite result with {f} bad rows"
        assert_close(got, getattr(impl, op)(G, *args), dtype, f"{op} {bad} {dtype}", ITERATIVE_TOL[dtype])


def test_iterative_same_bits_for_any_number_of_threads_and_no_mutation():
    G = torch.randn(30000, 40, generator=gen(30)).t()  # (40, 30000), not contiguous
    before = G.clone()
    calls = [(op, op_args(op, G)) for op in ITERATIVE_OPS]
    threads = torch.get_num_threads()
    results = {}
    try:
        for t in (1, max(2, threads)):
            torch.set_num_threads(t)
            results[t] = [native(op)(G, *args) for op, args in calls]
    finally:
        torch.set_num_threads(threads)
    first, second = results.values()
    for (op, args), a, b in zip(calls, first, second):
        assert torch.equal(a, b), f"{op} differs across thread counts"
        assert torch.equal(a, native(op)(G.contiguous(), *args)), f"{op} non-contiguous"
    assert torch.equal(G, before)


def test_iterative_preconditions():
    with pytest.raises(RuntimeError, match="brsgd requires 0 < beta <= 1, got beta=1.5"):
        native("brsgd")(torch.randn(5, 3), 1.5, math.inf)
    with pytest.raises(RuntimeError, match="centered_clipping: tau must be > 0"):
        native("centered_clipping")(torch.randn(5, 3), 0.0, 1, None)
    with pytest.raises(RuntimeError, match="geometric_median: weights must have 5 elements"):
        native("geometric_median")(torch.randn(5, 3), torch.ones(4), 1e-8, 10, 1e-7)
    with pytest.raises(RuntimeError, match="centered_clipping: center must have 3 elements"):
        native("centered_clipping")(torch.randn(5, 3), 1.0, 1, torch.ones(4))


# ---------------------------------------------------------------------------------------
# Every tail of the vector kernels, every ISA, the cases that defeated plain Weiszfeld

SHAPES = [(n, d) for n in (1, 2, 3, 4, 5, 7, 9) for d in (1, 7, 8, 9, 31, 32, 33, 100)] + [(6, 2049), (13, 4100)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16], ids=str)
def test_centered_clipping_every_tail(dtype):
    """Row counts around the four-row sweeps, widths around the 8- and 32-column vectors and
    the 2048-column blocks; a non-finite row where n allows."""
    op = native("centered_clipping")
    tol = {torch.float64: 1e-12, torch.float32: 2e-6, torch.bfloat16: 1.6e-2}[dtype]
    g = gen(40)
    for n, d in SHAPES:
        G = (torch.randn(n, d, generator=g) * 3).to(dtype)
        if n >= 3:
            G[1, d // 2] = math.nan
        center = torch.randn(d, generator=g, dtype=torch.float64)
        for tau, iters, c in [(1.0, 1, None), (0.5, 3, center), (1e6, 2, None)]:
            got = op(G, tau, iters, c)
            want = impl.centered_clipping(G, tau, iters, c)
            torch.testing.assert_close(got, want, rtol=tol, atol=tol, msg=f"n={n} d={d} tau={tau} iters={iters}")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_geometric_median_every_tail(dtype):
    op = native("geometric_median")
    tol = {torch.float64: 1e-9, torch.float32: 2e-6}[dtype]
    g = gen(41)
    for n, d in SHAPES:
        G = torch.randn(n, d, generator=g).to(dtype)
        w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
        for args in [(None, 1e-8, 100, 1e-7), (w, 1e-8, 5, 0.0)]:
            torch.testing.assert_close(op(G, *args), impl.geometric_median(G, *args), rtol=tol, atol=tol,
                                       msg=f"n={n} d={d}")


SLOW_CASES = [
    [[-1.0, -2.0], [0.0, 2.0], [-1.0, -1.0], [0.0, 2.0]],  # minimiser at a duplicated point
    [  # nearly collinear: a flat objective
        [2.0289494476884196, -0.5632746430763935],
        [5.139454771120545, 1.9719948345089047],
        [-4.290694495295123, -0.45071097049502296],
        [-3.041160347296354, 0.05892103518490854],
    ],
]


@pytest.mark.parametrize("points", SLOW_CASES, ids=["at-a-point", "flat"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
def test_geometric_median_native_meets_the_contract_where_plain_weiszfeld_did_not(points, dtype):
    op = native("geometric_median")
    G = torch.tensor(points, dtype=torch.float64)
    minimum, _ = D.geometric_median_minimum(G)
    z = op(G.to(dtype), None, 1e-8, 100, 1e-7)
    value = D.geometric_median_objective(G, z.double().tolist())
    slack = 0.0 if dtype == torch.float64 else 1e-6  # the float32 rounding of z
    assert value <= minimum * (1 + 1e-5 + slack), (value, minimum)
    # the plain smoothed Weiszfeld (the former algorithm) misses the contract here
    z_plain = plain_weiszfeld(G, 100, 1e-7)
    assert D.geometric_median_objective(G, z_plain.tolist()) > minimum * (1 + 1e-5)


def plain_weiszfeld(G, max_iter, tol, eps=1e-8):
    z = G.mean(0)
    for _ in range(max_iter):
        beta = 1.0 / torch.clamp(torch.linalg.vector_norm(G - z, dim=1), min=eps)
        nxt = (beta.unsqueeze(1) * G).sum(0) / beta.sum()
        step = float(torch.linalg.vector_norm(nxt - z))
        z = nxt
        if step <= tol * max(float(torch.linalg.vector_norm(z)), eps):
            break
    return z


def test_geometric_median_returns_the_winning_row_exactly():
    """The data-point check returns the row itself (its bits), natively and in the reference."""
    op = native("geometric_median")
    G = torch.randn(7, 300, generator=gen(42))
    w = torch.ones(7, dtype=torch.float64)
    w[4] = 10.0  # more than the other weights together: row 4 is the minimiser
    for fn in (op, impl.geometric_median):
        assert torch.equal(fn(G, w.float(), 1e-8, 100, 1e-7), G[4])
    # the same with a non-finite row (weight zero) and a zero weight
    G[2, 5] = math.inf
    w[0] = 0.0
    for fn in (op, impl.geometric_median):
        assert torch.equal(fn(G, w.float(), 1e-8, 100, 1e-7), G[4])
    # max_iter 0: the weighted mean, no check
    torch.testing.assert_close(op(G, w, 1e-8, 0, 1e-7), impl.geometric_median(G, w, 1e-8, 0, 1e-7))


def test_geometric_median_objective_on_random_hard_cases():
    """Nearly collinear, duplicated and clustered points, weighted: native and reference within
    a relative 1e-5 of the minimum (API.md)."""
    op = native("geometric_median")
    g = gen(43)
    for k in range(40):
        n = 3 + k % 9
        d = 1 + k % 4
        G = torch.randn(n, d, generator=g, dtype=torch.float64) * 10 ** (k % 5 - 2)
        if k % 3 == 0 and d > 1:
            G[:, 1:] *= 1e-4
        if k % 4 == 0:
            G[1] = G[0]
        w = torch.rand(n, generator=g, dtype=torch.float64) + 0.05
        minimum, _ = D.geometric_median_minimum(G, w.tolist())
        for fn in (op, impl.geometric_median):
            value = D.geometric_median_objective(G, fn(G, w, 1e-8, 100, 1e-7).tolist(), w.tolist())
            assert value <= minimum * (1 + 1e-5) + 1e-12, (k, value, minimum)


def geometric_median_both():
    """The native op and the reference, as (name, function) pairs."""
    return [("native", native("geometric_median")), ("reference", impl.geometric_median)]


def test_geometric_median_majority_of_identical_rows_returns_that_row():
    """More than half of the weight on one point: that point is the geometric median (the
    data-point check's row, exactly, found without pairwise distances), wherever its
    copies sit and whatever the others are."""
    g = gen(45)
    for dtype in (torch.float32, torch.float64):
        for n, copies in [(11, 6), (51, 26), (7, 4)]:
            G = (torch.randn(n, 300, generator=g, dtype=torch.float64) * 5).to(dtype)
            point = (torch.randn(300, generator=g, dtype=torch.float64)).to(dtype)
            where = torch.randperm(n, generator=g)[:copies]
            G[where] = point
            G[[i for i in range(n) if i not in where.tolist()][0]] += 1e3  # one far outlier
            for name, fn in geometric_median_both():
                for args in [(None, 1e-8, 100, 1e-7), (None, 1e-8, 10, 0.0)]:
                    got = fn(G, *args)
                    assert torch.equal(got, point), (name, dtype, n, copies, args)


def test_geometric_median_returns_a_data_point_that_is_the_optimum_by_symmetry():
    """Rows c + a_j u_j with unit vectors u_j that sum to zero (two triples at 120 degrees,
    each in a random plane, random lengths a_j) and c itself: the unit vectors from c
    cancel, so c is the geometric median, though neither the coordinate-wise median nor the
    mean is c. The data-point check returns c's row exactly, at any index."""
    g = gen(46)
    d = 6
    for position in (0, 4, 6):
        c = torch.randn(d, generator=g, dtype=torch.float64)
        rows = []
        for _ in range(2):
            plane, _ = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))
            theta = 2 * math.pi * float(torch.rand(1, generator=g))
            for m in range(3):
                angle = theta + 2 * math.pi * m / 3
                u = math.cos(angle) * plane[:, 0] + math.sin(angle) * plane[:, 1]
                rows.append(c + (0.5 + 3 * float(torch.rand(1, generator=g))) * u)
        rows.insert(position, c)
        G = torch.stack(rows)
        assert not torch.equal(impl.median(G), c)
        minimum, _ = D.geometric_median_minimum(G)
        assert D.geometric_median_objective(G, c.tolist()) <= minimum * (1 + 1e-12)
        for name, fn in geometric_median_both():
            assert torch.equal(fn(G, None, 1e-8, 100, 1e-7), G[position]), (name, position)


def test_geometric_median_optimum_off_the_data_points():
    """Where the minimiser is no data point (a triangle with every angle under 120 degrees:
    the Fermat point; random clouds), the result is the iterate, no row, and meets the
    contract's 1e-5."""
    g = gen(47)
    cases = [torch.tensor([[0.0, 0.0], [4.0, 0.0], [1.5, 3.0]], dtype=torch.float64)]
    cases += [torch.randn(n, d, generator=g, dtype=torch.float64) for n, d in [(9, 5), (20, 40), (51, 200)]]
    for G in cases:
        minimum, _ = D.geometric_median_minimum(G)
        for name, fn in geometric_median_both():
            z = fn(G, None, 1e-8, 100, 1e-7)
            assert not any(torch.equal(z, row) for row in G), name
            assert D.geometric_median_objective(G, z.tolist()) <= minimum * (1 + 1e-5), (name, G.shape)


def test_geometric_median_contract_with_outliers_float32():
    """n = 51 with 12 rows far away and some at 1e30, float32: within a relative 1e-5 of the
    minimum (up to the float32 rounding of the result) after the default iterations, and
    native and reference agree."""
    g = gen(48)
    G = torch.randn(51, 500, generator=g)
    G[:8] += 100.0
    G[8:12] = 1e30
    op = native("geometric_median")
    minimum, _ = D.geometric_median_minimum(G.double())
    for name, fn in geometric_median_both():
        z = fn(G, None, 1e-8, 100, 1e-7)
        value = D.geometric_median_objective(G.double(), z.double().tolist())
        assert value <= minimum * (1 + 1e-5 + 1e-6), (name, value, minimum)
    assert_close(op(G, None, 1e-8, 100, 1e-7), impl.geometric_median(G, None, 1e-8, 100, 1e-7), torch.float32,
                 "outliers", ITERATIVE_TOL[torch.float32])


def test_geometric_median_non_finite_rows_and_the_start():
    """Non-finite rows get weight zero: the result is the geometric median of the others,
    natively as in the reference, with any number of them (here also more than half of the
    rows, NaN or infinite in one coordinate). The start is the coordinate-wise median of the
    finite rows (the native CPU kernel takes its fused start pass twice then)."""
    g = gen(49)
    for bad in (math.nan, math.inf, -math.inf):
        for nonfinite in (2, 4):  # 4 of 7: more than half
            G = torch.randn(7, 40, generator=g, dtype=torch.float64)
            G[:nonfinite, 3] = bad
            w = torch.rand(7, generator=g, dtype=torch.float64) + 0.2
            finite = G[nonfinite:]
            for weights in (None, w):
                ws = None if weights is None else weights[nonfinite:]
                minimum, _ = D.geometric_median_minimum(finite, None if ws is None else ws.tolist())
                results = {}
                for name, fn in geometric_median_both():
                    for args in [(weights, 1e-8, 100, 1e-7), (weights, 1e-8, 4, 0.0)]:
                        z = fn(G, *args)
                        assert bool(torch.isfinite(z).all()), (name, bad, nonfinite, args[2])
                        results[name, args[2]] = z
                        if args[2] == 100:
                            value = D.geometric_median_objective(finite, z.tolist(), None if ws is None else ws.tolist())
                            assert value <= minimum * (1 + 1e-5), (name, bad, nonfinite, value, minimum)
                for iters in (100, 4):
                    assert_close(results["native", iters], results["reference", iters], torch.float64,
                                 f"{bad} x{nonfinite} {iters}", ITERATIVE_TOL[torch.float64])
                # the start (max_iter 0, the op only): the median of the finite rows
                start = native("geometric_median")(G, weights, 1e-8, 0, 1e-7)
                assert torch.equal(start, impl.median(finite)), (bad, nonfinite)


def test_geometric_median_candidate_after_an_early_stop_and_after_max_iter():
    """The data-point check's objective comes from the last iteration's pass after max_iter
    iterations, from one more pass after a stop by the test: both give the reference's
    result, and a winning row either way."""
    g = gen(50)
    G = torch.randn(9, 2100, generator=g, dtype=torch.float64)
    w = torch.ones(9, dtype=torch.float64)
    w[5] = 9.0  # row 5 is the minimiser
    op = native("geometric_median")
    for args in [(w, 1e-8, 100, 1e-7), (w, 1e-8, 100, 1e-2), (w, 1e-8, 2, 0.0), (w, 1e-8, 1, 0.0)]:
        want = impl.geometric_median(G, *args)
        got = op(G, *args)
        assert_close(got, want, torch.float64, f"{args[2:]}", ITERATIVE_TOL[torch.float64])
        if args[2] >= 2:
            assert torch.equal(got, G[5]) and torch.equal(want, G[5]), args[2:]
    H = torch.randn(9, 2100, generator=g, dtype=torch.float64)  # the iterate wins
    for args in [(None, 1e-8, 100, 1e-2), (None, 1e-8, 3, 0.0)]:
        assert_close(op(H, *args), impl.geometric_median(H, *args), torch.float64, f"{args[2:]}",
                     ITERATIVE_TOL[torch.float64])
        assert not any(torch.equal(op(H, *args), row) for row in H)


def test_geometric_median_segment_ties_do_not_depend_on_rounding():
    """n = 2 (every point of the segment minimises): the iterate stays near the middle, where
    the two rows are equally near up to rounding; the candidate is the first row within a
    relative 1e-9 of the nearest, so a translation (other rounding) returns the same row.
    (Found by test_properties' translation test: 0.5 and 0.125 shifted by 0.125 gave the
    other row.)"""
    g = gen(51)
    cases = [(torch.tensor([[0.5], [0.125]], dtype=torch.float64), torch.tensor([0.125], dtype=torch.float64))]
    for _ in range(20):
        G = torch.randint(-64, 65, (2, 3), generator=g).double() / 8
        cases.append((G, torch.randint(-64, 65, (3,), generator=g).double() / 8))
    for G, c in cases:
        for name, fn in geometric_median_both():
            base = fn(G, None, 1e-8, 100, 1e-7)
            assert torch.equal(base, G[0]), (name, G.tolist())
            assert torch.equal(fn(G + c, None, 1e-8, 100, 1e-7), G[0] + c), (name, G.tolist(), c.tolist())


ISA_SCRIPT = r"""
import math, sys, torch
g = torch.Generator().manual_seed(44)
out = []
for n, d in [(5, 37), (9, 2049), (17, 4133)]:
    for dtype in (torch.float32, torch.float64, torch.bfloat16):
        G = torch.randn(n, d, generator=g).to(dtype)
        G[2, 3] = math.nan
        c = torch.randn(d, generator=g, dtype=torch.float64)
        out.append(torch.ops.byzagg.centered_clipping(G, 1.0, 3, None))
        out.append(torch.ops.byzagg.centered_clipping(G, 0.3, 2, c))
        out.append(torch.ops.byzagg.brsgd(G, 0.5, math.inf))
        out.append(torch.ops.byzagg.brsgd(G, 0.7, 2.0 * d))
        if dtype != torch.bfloat16:
            out.append(torch.ops.byzagg.geometric_median(G, None, 1e-8, 20, 0.0))
import byzagg
torch.save(out, sys.argv[1])
"""


def test_iterative_kernels_same_bits_on_every_isa(tmp_path):
    """BYZAGG_CPU_ISA=generic / avx2 / the best: centered_clipping, brsgd and geometric_median give the same bits
    (no FMA contraction, the same lanes and order in every copy)."""
    native("centered_clipping")
    native("brsgd")
    results = {}
    for isa in ("generic", "avx2", ""):
        path = tmp_path / f"out-{isa or 'best'}.pt"
        env = dict(os.environ, BYZAGG_CPU_ISA=isa)
        run = subprocess.run([sys.executable, "-c", "import byzagg\n" + ISA_SCRIPT, str(path)], env=env,
                             capture_output=True, text=True, timeout=300, cwd=os.getcwd())
        assert run.returncode == 0, run.stderr[-2000:]
        results[isa] = torch.load(path)
    best = results[""]
    for isa in ("generic", "avx2"):
        for k, (a, b) in enumerate(zip(results[isa], best)):
            assert torch.equal(a, b), f"case {k}: {isa} differs from the best ISA"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_brsgd_same_bits_as_the_reference(dtype):
    """Odd n (the sorting-network median) and even n (selection), tails of every vector loop,
    a NaN value, each of C1 / C2 binding: the native result equals the reference bit for bit."""
    op = native("brsgd")
    g = gen(45)
    for n in (2, 3, 4, 5, 10, 11, 51, 64, 65, 101):
        for d in (1, 9, 100, 2049):
            G = torch.randn(n, d, generator=g).to(dtype)
            if n > 3:
                G[1, d // 2] = math.nan
            for beta, threshold in [(0.5, math.inf), (0.3, 0.8 * d), (1.0, 0.0)]:
                got, want = op(G, beta, threshold), impl.brsgd(G, beta, threshold)
                assert torch.equal(got, want), (n, d, beta, threshold, float((got.double() - want.double()).abs().max()))


@pytest.mark.parametrize("n", [4, 5, 10, 11, 20, 21])
def test_brsgd_infinite_threshold_at_the_half_finite_boundary(n):
    """With threshold = inf the kernel skips the median and the l1 pass when every column is
    more than half finite (C1 = the finite rows) and takes them otherwise: a column whose
    median is NaN (NaN majority, or -inf and +inf in the middle) makes every l1 distance NaN,
    C1 empty, and the result the median. Columns just on either side of the boundary, each
    kind of non-finite value: the native bits equal the reference's."""
    op = native("brsgd")
    g = gen(46)
    half = n // 2
    patterns = {
        "finite": [],
        "below half non-finite": [math.nan] * (half - 1 if n % 2 == 0 else half),
        "half NaN": [math.nan] * half,
        "NaN majority": [math.nan] * (half + 1),
        "-inf and +inf halves": [-math.inf] * half + [math.inf] * (n - half),
        "mixed at the boundary": ([math.inf, -math.inf, math.nan] * n)[:half],
    }
    for name, column in patterns.items():
        for d in (1, 9, 300):
            G = torch.randn(n, d, generator=g)
            for r, value in enumerate(column):
                G[n - 1 - r, 0] = value  # the last rows: C2's ties go to the lower index
            for beta in (0.5, 1.0):
                got, want = op(G, beta, math.inf), impl.brsgd(G, beta, math.inf)
                torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=f"{name} n={n} d={d}")

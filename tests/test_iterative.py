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

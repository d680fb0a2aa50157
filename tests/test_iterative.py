"""Native iterative kernels (centered_clipping, geometric_median, brsgd) beyond
test_native_distances.py: every tail of the vector block kernels, the same bits on every
vector ISA (BYZAGG_CPU_ISA), the geometric median's data-point check and line search on the
cases that defeated plain Weiszfeld, and brsgd equal to the reference bit for bit.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from byzagg import _reference_impl as impl

import definitions as D
from utils import gen, native


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

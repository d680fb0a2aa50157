"""Native CPU kernels of the distance-based rules against the reference.

pairwise_distances, krum_scores, krum (multi_krum runs through it), bulyan, nnm, medoid and
mda: every dtype, random and adversarial inputs (outlier clusters, +-1e30 rows, duplicated
rows, all rows equal, exact ties for the tie-breaking), at most f non-finite rows,
non-contiguous input, no mutation, the same bits for 1 and 2 threads, and every vector
kernel family the CPU has (BYZAGG_CPU_ISA).

Distances of fp16/bf16/fp32 inputs are summed in float chunks added in double, the
reference sums in double: values agree to a tolerance of the dtype; selections agree
exactly where the scores are well separated, and on ties when the arithmetic is exact.
"""

from __future__ import annotations

import math
import os

import pytest
import torch

import byzagg
from byzagg import _rules, reference
from byzagg import _reference_impl as impl

from utils import ALL_DTYPES as DTYPES
from utils import NATIVE_OPS, adversarial_cases, assert_close, gen, native, op_samples, random_cases


def relative_close(got, want, tol, what):
    """Relative to each value itself (distances can be tiny or huge)."""
    g, w = got.double(), want.double()
    assert torch.equal(torch.isinf(g), torch.isinf(w)), f"{what}: inf pattern differs"
    finite = torch.isfinite(w)
    err = (g[finite] - w[finite]).abs() / w[finite].abs().clamp(min=1e-300)
    err = torch.where(w[finite] == 0, (g[finite] != 0).double(), err)
    assert err.numel() == 0 or err.max() <= tol, f"{what}: max relative error {err.max():.3g} > {tol}"


# ---------------------------------------------------------------------------------------
# Inputs (random_cases, adversarial_cases: utils.py)


def line_points(positions, d=37):
    """Rows at integer positions along one axis: every distance is an exact integer."""
    X = torch.zeros(len(positions), d, dtype=torch.float64)
    X[:, 5] = torch.tensor(positions, dtype=torch.float64)
    return X


# ---------------------------------------------------------------------------------------
# pairwise_distances


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("squared", [False, True])
def test_pairwise_distances_random(dtype, squared):
    op = native("pairwise_distances")
    for name, X in random_cases():
        G = X.to(dtype)
        assert_close(op(G, squared), impl.pairwise_distances(G, squared), dtype, f"{name} {dtype}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_pairwise_distances_adversarial(dtype):
    op = native("pairwise_distances")
    for name, X, _ in adversarial_cases():
        G = X.to(dtype)
        for squared in (False, True):
            assert_close(op(G, squared), impl.pairwise_distances(G, squared), dtype, f"{name} {dtype} {squared}")


def test_pairwise_distances_exact_where_reference_is():
    """Small integers: every sum is exact in float chunks and in double, so the bits agree."""
    op = native("pairwise_distances")
    G = torch.randint(-20, 21, (23, 5000), generator=gen(4)).float()
    assert torch.equal(op(G, True), impl.pairwise_distances(G, True))


@pytest.mark.parametrize("scale", [1e20, 1e-20, 1e-30, 1e30])
def test_pairwise_distances_float_range(scale):
    """float32 squares of 1e20 overflow and of 1e-20 underflow: such chunks are summed again
    in double, so the result is what float64 gives (relative to each value)."""
    op = native("pairwise_distances")
    g = gen(5)
    G = (scale * torch.randn(9, 5000, generator=g, dtype=torch.float64)).float()
    G[3] = G[2]  # an exact duplicate: zero
    G[4] = G[2] * (1 + 2**-20)  # a close pair
    relative_close(op(G, False), impl.pairwise_distances(G, False), 2e-6, f"scale {scale}")
    want = impl.squared_distances(G)
    got = op(G.double(), True)
    relative_close(got, want, 1e-12, f"scale {scale} float64")


def test_pairwise_distances_mixed_scales():
    """One chunk huge, the others ordinary; and tiny differences next to ordinary ones."""
    op = native("pairwise_distances")
    g = gen(6)
    G = torch.randn(6, 10000, generator=g)
    G[1, 2048:2100] = 3e19
    G[2] = G[3] + 1e-25 * torch.randn(10000, generator=g)
    G[4, :100] = G[5, :100] + 1e-30
    relative_close(op(G, False), impl.pairwise_distances(G, False), 2e-6, "mixed")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "one-entry"])
def test_pairwise_distances_nonfinite(dtype, bad):
    op = native("pairwise_distances")
    G = torch.randn(10, 3000, generator=gen(7)).to(dtype)
    if bad == "one-entry":
        G[2, 2500] = math.nan
        G[7, 17] = math.inf
    else:
        G[[2, 7]] = float(bad)
    got = op(G, False)
    assert_close(got, impl.pairwise_distances(G, False), dtype, bad)
    assert torch.isinf(got[2, [0, 1, 3, 7]]).all() and got[2, 2] == 0 and got[7, 7] == 0
    assert torch.isfinite(got[[0, 1, 3]][:, [0, 1, 3]]).all()


def isas():
    """The vector kernel families this CPU runs (BYZAGG_CPU_ISA caps the best one)."""
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    names = ["generic"]
    if " avx2" in flags and " fma" in flags:
        names.append("avx2")
    if " avx512f" in flags:
        names.append("avx512")
    return names


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_every_vector_kernel(isa, monkeypatch):
    op = native("pairwise_distances")
    if isa not in isas():
        pytest.skip(f"this CPU has no {isa}")
    monkeypatch.setenv("BYZAGG_CPU_ISA", isa)
    g = gen(8)
    for n, d in [(1, 3), (5, 1), (6, 31), (9, 2053), (70, 37)]:
        for dtype in (torch.float64, torch.float32, torch.bfloat16):
            G = torch.randn(n, d, generator=g).to(dtype)
            G[n // 2, d // 2] = math.inf if n > 2 else G[n // 2, d // 2]
            assert_close(op(G, True), impl.pairwise_distances(G, True), dtype, f"{isa} {n}x{d} {dtype}")
    G = (1e25 * torch.randn(7, 3000, generator=g)).float()
    relative_close(op(G, False), impl.pairwise_distances(G, False), 2e-6, f"{isa} overflow")


# ---------------------------------------------------------------------------------------
# Krum family


def krum_f(n):
    return (n - 3) // 2


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_krum_scores(dtype):
    op = native("krum_scores")
    cases = [(name, X, krum_f(X.shape[0])) for name, X in random_cases() if X.shape[0] >= 3]
    cases += [(name, X, f) for name, X, f in adversarial_cases()]
    for name, X, f in cases:
        G = X.to(dtype)
        for ff in sorted({0, f}):
            assert_close(op(G, ff), impl.krum_scores(G, ff), dtype, f"{name} f={ff} {dtype}")


def separated(scores: torch.Tensor, count: int, gap=1e-4) -> bool:
    """Whether the `count` best scores are apart from each other and from the rest."""
    s = torch.sort(scores.double()).values
    if s.numel() <= 1:
        return True
    top = s[: min(count + 1, s.numel())]
    diffs = (top[1:] - top[:-1]) / top[1:].abs().clamp(min=1e-300)
    return bool((diffs > gap).all())


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_krum_random(dtype):
    op = native("krum")
    checked = 0
    for name, X in random_cases(seed=2):
        n = X.shape[0]
        if n < 3:
            continue
        G = X.to(dtype)
        f = krum_f(n)
        scores = impl.krum_scores_float64(G, f)
        for m in sorted({1, max(1, (n - f) // 2), n - f}):
            want = impl.krum(G, f, m)
            got = op(G, f, m)
            if m == 1 and separated(scores, 1):
                assert torch.equal(got, want), f"{name} {dtype}: another row was selected"
                checked += 1
            elif separated(scores, m):
                assert_close(got, want, dtype, f"{name} m={m} {dtype}")
    assert checked >= 5


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_krum_adversarial(dtype):
    op = native("krum")
    for name, X, f in adversarial_cases():
        G = X.to(dtype)
        if not torch.isfinite(G).all():
            continue  # 1e30 overflows fp16 / bf16: covered by the non-finite tests
        n = G.shape[0]
        scores = impl.krum_scores_float64(G, f)
        for m in (1, n - f):
            if separated(scores, m):
                assert_close(op(G, f, m), impl.krum(G, f, m), dtype, f"{name} m={m} {dtype}")
            else:
                # rows closer than the float rounding of the sums (near-duplicates): the native
                # and reference sums (different orders) may rank them differently; the native
                # choice must be the first minimum of its own scores and of least reference
                # score up to rounding
                native_scores = native("krum_scores")(G, f)
                order = sorted(range(n), key=lambda i: (float(native_scores[i]), i))[:m]
                assert_close(op(G, f, m), impl.mean_of_rows(G, torch.tensor(order)), dtype, f"{name} m={m}")
                kth = torch.sort(scores).values[m - 1]
                assert bool((scores[order] <= kth * (1 + 1e-6) + 1e-12).all()), f"{name} m={m} {dtype}"


def test_krum_ties_go_to_the_lower_index():
    op = native("krum")
    # Rows 2 and 5 tie for the best score 142 (exact integer arithmetic): row 2 is selected.
    X = line_points([-19, -9, -4, 3, -12, -2, 6])
    f = 1
    scores = impl.krum_scores_float64(X, f)
    best = torch.sort(scores).values[:3]
    assert best[0] == best[1] < best[2] and scores[2] == best[0] and scores[5] == best[0]
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        G = X.to(dtype)
        assert torch.equal(op(G, f, 1), G[2]), dtype
        assert torch.equal(op(G, f, 1), impl.krum(G, f, 1))
        assert torch.equal(op(G, f, 3), impl.krum(G, f, 3))
    # All rows equal: every score 0, row 0 (the same values anyway); simplex: all equal.
    E = torch.eye(9, dtype=torch.float64) * 3
    assert torch.equal(op(E, 2, 1), E[0])
    assert torch.equal(op(E, 2, 4), impl.krum(E, 2, 4))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_bulyan(dtype):
    op = native("bulyan")
    cases = [(name, X, (X.shape[0] - 3) // 4) for name, X in random_cases(seed=3) if X.shape[0] >= 3]
    cases += [(name, X, f) for name, X, f in adversarial_cases() if X.shape[0] >= 4 * f + 3]
    for name, X, f in cases:
        G = X.to(dtype)
        if not torch.isfinite(G).all():
            continue
        assert_close(op(G, f), impl.bulyan(G, f), dtype, f"{name} f={f} {dtype}")


def test_bulyan_ties_and_small_n():
    op = native("bulyan")
    X = line_points([0, 4, 1, 3, 2, 8, -6, 5, -3, 7, 7])
    for f in (0, 1, 2):
        assert torch.equal(op(X, f), impl.bulyan(X, f)), f
    X = torch.randint(-1, 2, (11, 64), generator=gen(9)).double()
    for f in (0, 1, 2):
        assert torch.equal(op(X, f), impl.bulyan(X, f)), f
    E = torch.eye(7, 5, dtype=torch.float64)
    assert torch.equal(op(E, 1), impl.bulyan(E, 1))


def test_bulyan_selection_matches_reference_order():
    """The repeated Krum selection itself, on the reference's float64 matrix."""
    native("bulyan")
    g = gen(10)
    for n, f in [(7, 1), (15, 3), (31, 7), (23, 5)]:
        X = torch.randn(n, 40, generator=g, dtype=torch.float64)
        X[:f] += 5
        got = torch.ops.byzagg.bulyan(X, f)
        assert_close(got, impl.bulyan(X, f), torch.float64, f"n={n} f={f}")


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_medoid(dtype):
    op = native("medoid")
    for name, X in random_cases(seed=4):
        G = X.to(dtype)
        assert torch.equal(op(G), impl.medoid(G)), f"{name} {dtype}"
    for name, X, _ in adversarial_cases():
        G = X.to(dtype)
        assert torch.equal(op(G), impl.medoid(G)), f"{name} {dtype}"


def test_medoid_ties():
    op = native("medoid")
    X = line_points([0, 3, 1, 2])  # rows 2 and 3 tie (sums 4): row 2
    assert torch.equal(op(X), X[2])
    X = line_points([7, 1, 0, 3, 2])  # row 4 (position 2) has the least sum; unique
    assert torch.equal(op(X), impl.medoid(X))
    X = line_points([5, -5, 5, -5])  # all sums 20: row 0
    assert torch.equal(op(X), X[0])
    nan_rows = torch.full((3, 4), math.nan)
    assert torch.equal(op(nan_rows).isnan(), impl.medoid(nan_rows).isnan())  # no finite row: row 0


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_nnm(dtype):
    op = native("nnm")
    cases = [(name, X, (X.shape[0] - 1) // 2) for name, X in random_cases(seed=5)]
    cases += adversarial_cases()
    for name, X, f in cases:
        G = X.to(dtype)
        if not torch.isfinite(G).all():
            continue
        for ff in sorted({0, f // 2, f}):
            assert_close(op(G, ff), impl.nnm(G, ff), dtype, f"{name} f={ff} {dtype}")


def test_nnm_ties():
    op = native("nnm")
    X = line_points([0, 1, -1, 2, -2, 10, 11])  # row 0: rows 1 and 2 tie at distance 1
    for f in (1, 2, 3):
        assert torch.equal(op(X, f), impl.nnm(X, f)), f
    X = torch.randint(0, 2, (9, 6), generator=gen(11)).double()
    for f in (1, 2, 3, 4):
        assert torch.equal(op(X, f), impl.nnm(X, f)), f


# ---------------------------------------------------------------------------------------
# Properties shared by every op


# The distance family's native ops; mda (an exact search over subsets, costly for the n here)
# has its own tests below.
DISTANCE_OPS = [op for op in NATIVE_OPS if _rules.BY_NAME[op].family == "distance" and op != "mda"]


def op_calls(n):
    """(op, args) for every native distance op on n rows (the rule table's sample calls and
    utils.OP_VARIANTS), with the largest f each op accepts."""
    return op_samples(torch.zeros(n, 1), ops=DISTANCE_OPS)


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "mixed", "entries"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_nonfinite_rows(bad, dtype):
    """At most f rows with non-finite values: finite results, equal to the reference."""
    n, d = 15, 500
    g = gen(12)
    X = torch.randn(n, d, generator=g).to(dtype)
    values = {"nan": [math.nan], "inf": [math.inf], "-inf": [-math.inf], "mixed": [math.nan, math.inf, -math.inf]}
    for op, args in op_calls(n):
        fn = native(op)
        f = args[0] if op not in ("pairwise_distances", "medoid") else 3
        G = X.clone()
        rows = torch.randperm(n, generator=g)[:f]
        for k, r in enumerate(rows.tolist()):
            if bad == "entries":
                G[r, int(torch.randint(d, (1,), generator=g))] = [math.nan, math.inf, -math.inf][k % 3]
            else:
                G[r] = values[bad][k % len(values[bad])]
        got, want = fn(G, *args), getattr(impl, op)(G, *args)
        if op in ("krum", "bulyan", "nnm", "medoid"):
            assert torch.isfinite(got).all(), f"{op} {bad}: non-finite result with {f} bad rows"
        assert_close(got, want, dtype, f"{op} {bad} {dtype}")


def test_non_contiguous_and_no_mutation():
    g = gen(13)
    base = torch.randn(300, 21, generator=g)
    G = base.t()  # (21, 300), not contiguous
    before = G.clone()
    for op, args in op_calls(21):
        fn = native(op)
        got = fn(G, *args)
        assert torch.equal(got, fn(G.contiguous(), *args)), op
        assert torch.equal(G, before), f"{op} modified its input"
    H = torch.randn(11, 4000, generator=g, dtype=torch.float64)[:, ::2]  # strided rows
    for op, args in op_calls(11):
        assert torch.equal(native(op)(H, *args), native(op)(H.contiguous(), *args)), op


@pytest.mark.parametrize("shape", [(33, 40000), (70, 3000), (5, 100000)])
def test_same_bits_for_any_number_of_threads(shape):
    n, d = shape
    G = torch.randn(n, d, generator=gen(14))
    G[1] = G[0]
    threads = torch.get_num_threads()
    results = {}
    try:
        for t in (1, max(2, threads)):
            torch.set_num_threads(t)
            results[t] = [native(op)(G, *args) for op, args in op_calls(n)]
            results[t] += [native("pairwise_distances")(G.double(), True), native("krum_scores")(G.bfloat16(), krum_f(n))]
    finally:
        torch.set_num_threads(threads)
    first, second = results.values()
    for (op, _), a, b in zip(op_calls(n) + [("pd64", ()), ("scores-bf16", ())], first, second):
        assert torch.equal(a, b), f"{op} differs across thread counts"


def test_public_api_runs_native():
    """byzagg.<rule> dispatches to the kernels (multi_krum through krum)."""
    for op in ("pairwise_distances", "krum_scores", "krum", "bulyan", "nnm", "medoid"):
        native(op)
    G = torch.randn(13, 50, generator=gen(15))
    assert torch.equal(byzagg.multi_krum(G, 2), torch.ops.byzagg.krum(G, 2, 11))
    assert torch.equal(byzagg.krum(G, 2), torch.ops.byzagg.krum(G, 2, 1))
    rows = [torch.randn(2, 3, generator=gen(16)) for _ in range(7)]
    assert byzagg.bulyan(rows, 1).shape == (2, 3)
    assert_close(byzagg.nnm(rows, 2), reference.nnm(rows, 2), torch.float32, "nnm on a list")


def test_preconditions():
    with pytest.raises(RuntimeError, match="krum requires n >= 2f \\+ 3, got n=10, f=4"):
        native("krum")(torch.randn(10, 3), 4, 1)
    with pytest.raises(RuntimeError, match="krum requires 1 <= m <= n - f, got n=10, f=3, m=8"):
        native("krum")(torch.randn(10, 3), 3, 8)
    with pytest.raises(RuntimeError, match="krum_scores requires n >= 2f \\+ 3, got n=4, f=1"):
        native("krum_scores")(torch.randn(4, 3), 1)
    with pytest.raises(RuntimeError, match="bulyan requires n >= 4f \\+ 3, got n=10, f=2"):
        native("bulyan")(torch.randn(10, 3), 2)
    with pytest.raises(RuntimeError, match="nnm requires n > 2f, got n=6, f=3"):
        native("nnm")(torch.randn(6, 3), 3)
    with pytest.raises(RuntimeError, match="2-D"):
        native("pairwise_distances")(torch.randn(5), False)
    with pytest.raises(RuntimeError, match="empty input"):
        native("medoid")(torch.randn(0, 4))
    with pytest.raises(RuntimeError, match="floating dtype"):
        native("medoid")(torch.ones(3, 4, dtype=torch.int64))


def test_opcheck_schemas():
    for op, args in op_calls(9):
        fn = native(op).default  # the ops that return a d-vector also have an .out overload
        torch.library.opcheck(fn, (torch.randn(9, 20),) + args, test_utils=("test_schema", "test_autograd_registration"))


# ---------------------------------------------------------------------------------------
# MDA (exact search; ties to the lexicographically first subset)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_mda(dtype):
    op = native("mda")
    g = gen(31)
    cases = []
    for n, f in [(3, 1), (5, 2), (7, 3), (9, 4), (10, 2), (13, 5), (16, 7), (40, 2), (200, 1)]:
        X = torch.randn(n, 30, generator=g, dtype=torch.float64)
        X[:f] += 4 * torch.randn(f, 30, generator=g, dtype=torch.float64)
        cases.append((f"randn-{n}-{f}", X, f))
    cases += [(name, X, f) for name, X, f in adversarial_cases(seed=32)]
    for name, X, f in cases:
        G = X.to(dtype)
        if not torch.isfinite(G).all():
            continue
        for ff in sorted({0, 1, f}):
            assert_close(op(G, ff), impl.mda(G, ff), dtype, f"{name} f={ff} {dtype}")


def test_mda_ties_and_nonfinite():
    op = native("mda")
    g = gen(33)
    for n, f in [(7, 3), (9, 2), (11, 5), (12, 4)]:
        X = torch.randint(-1, 2, (n, 3), generator=g).double()  # many subsets tie
        assert torch.equal(op(X, f), impl.mda(X, f)), (n, f)
    X = line_points([0, 1, 2, 3, 4, 5, 6])  # diameter 3 for {0..3}, {1..4}, ...: the first
    assert torch.equal(op(X, 3), X[:4].mean(0))
    for bad in (math.nan, math.inf, -math.inf):
        X = torch.randn(11, 50, generator=g)
        X[[1, 6, 8], 7] = bad
        got = op(X, 3)
        assert torch.isfinite(got).all()
        assert_close(got, impl.mda(X, 3), torch.float32, f"mda {bad}")
        X[[0, 2, 3, 9]] = bad  # more than f bad rows: every subset has diameter inf
        assert torch.equal(op(X, 3).isnan(), impl.mda(X, 3).isnan())


def test_mda_limit_and_public_api():
    op = native("mda")
    with pytest.raises(RuntimeError, match="mda requires C\\(n, f\\) <= 1000000 subsets, got n=30, f=10"):
        op(torch.randn(30, 4), 10)
    with pytest.raises(RuntimeError, match="mda requires n > 2f, got n=6, f=3"):
        op(torch.randn(6, 4), 3)
    G = torch.randn(22, 40, generator=gen(34))  # C(22, 10) = 646646: exact without enumerating
    G[:10] += 3 * torch.randn(10, 40, generator=gen(35))
    assert torch.equal(byzagg.mda(G, 10), op(G, 10))
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = op(G, 10)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(single, op(G, 10))

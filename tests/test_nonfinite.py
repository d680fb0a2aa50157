"""API.md's non-finite policy, against byzagg (the dispatcher) and byzagg.reference.

At most f rows (exactly f, and fewer) hold NaN, +inf, -inf, a mix, or single bad entries;
the result must be finite ("consequence, tested"), equal the plain definition (which
implements the policy), and where the policy says more, that too: Krum never selects a
non-finite row, geometric_median and medoid equal their result on the finite rows alone,
MDA / NNM / Multi-Krum with exactly f bad rows average exactly the finite rows.
"""

from __future__ import annotations

import math

import pytest
import torch

import definitions as D
from utils import BAD_VALUES, D_COLS, MODULES, RULE_CASES, assert_finite, bad_row_sets, poisoned, same_bits
from utils import FLOAT_DTYPES as DTYPES

PATTERNS = ("nan", "posinf", "neginf", "mixed", "entries")


def finite_rows(G):
    return torch.isfinite(G).all(dim=1)


def tolerance(dtype):
    return 1e-9 if dtype == torch.float64 else 2e-6


def assert_close(out, expected, G, what, rtol=None):
    rtol = tolerance(G.dtype) if rtol is None else rtol
    a = out.detach().to(torch.float64)
    e = torch.as_tensor(expected, dtype=torch.float64)
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)}, expected {tuple(e.shape)}"
    finite = G[torch.isfinite(G)].abs()
    scale = max(1.0, float(finite.max())) if finite.numel() else 1.0
    err = (a - e).abs()
    ok = (err <= rtol * scale + rtol * e.abs()) | ((a == e) & torch.isinf(e)) | (torch.isnan(a) & torch.isnan(e))
    assert bool(ok.all()), (
        f"{what}: got {a.tolist()}, expected {e.tolist()} (rtol {rtol})\nG={G.tolist()}"
    )


# ----------------------------------------------------------------------------------------
# The calls: utils.RULE_CASES, case -> (least n for f, call(module, G, f), definition(G, f))


def cases():
    out = []
    for rule, (least_n, _, _) in RULE_CASES.items():
        for f in (1, 2, 3):
            if rule == "bulyan" and f == 3:
                continue  # n = 15: covered by f = 1, 2 at lower cost
            for n in (least_n(f), least_n(f) + 1) if f < 3 else (least_n(f),):
                for count in sorted({1, f}):
                    out.append(pytest.param(rule, n, f, count, id=f"{rule}-n{n}-f{f}-bad{count}"))
    return out


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule, n, f, count", cases())
def test_at_most_f_bad_rows_give_a_finite_result(module, dtype, rule, n, f, count):
    _, call, define = RULE_CASES[rule]
    for pattern in PATTERNS:
        for where, bad in bad_row_sets(n, count).items():
            G = poisoned(n, bad, pattern, dtype)
            what = f"{module.__name__}.{rule} (n={n}, f={f}, bad rows {bad} ({where}), {pattern}, {dtype})"
            out = call(module, G, f)
            assert_finite(out, G, what)
            if define is not None:
                assert_close(out, define(G, f), G, what + " against the definition")


# ----------------------------------------------------------------------------------------
# What the policy says beyond finiteness

KRUM_NF = [(n, f) for f in (1, 2, 3) for n in (2 * f + 3, 2 * f + 4)]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("n, f", KRUM_NF)
def test_krum_never_selects_a_non_finite_row(module, dtype, pattern, n, f):
    # any number of bad rows while a finite one remains, even beyond f
    for count in range(1, n):
        for where, bad in bad_row_sets(n, count).items():
            G = poisoned(n, bad, pattern, dtype)
            out = module.krum(G, f)
            finite = finite_rows(G)
            assert any(torch.equal(out, G[i]) for i in range(n) if finite[i]), (
                f"krum(n={n}, f={f}) with bad rows {bad} ({pattern}) returned {out.tolist()}, not a finite row"
            )
            m = min(int(finite.sum()), n - f)
            mean = module.krum(G, f, m=m)
            assert bool(torch.isfinite(mean).all()), (
                f"krum(n={n}, f={f}, m={m}) with {n - count} finite rows averaged a non-finite row: {mean.tolist()}"
            )


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("n, f", KRUM_NF)
def test_krum_scores_and_distances_of_non_finite_rows_are_inf(module, dtype, pattern, n, f):
    bad = bad_row_sets(n, f)["spread"]
    G = poisoned(n, bad, pattern, dtype)
    scores = module.krum_scores(G, f)
    finite = finite_rows(G)
    assert bool((scores[~finite] == math.inf).all()), f"scores of non-finite rows must be +inf: {scores.tolist()}"
    assert bool(torch.isfinite(scores[finite]).all()), f"finite rows must score finitely: {scores.tolist()}"
    for squared in (False, True):
        P = module.pairwise_distances(G, squared=squared)
        assert bool((P.diagonal() == 0).all()), f"zero diagonal: {P.diagonal().tolist()}"
        pair_bad = (~finite).unsqueeze(0) | (~finite).unsqueeze(1)
        off = ~torch.eye(n, dtype=torch.bool)
        assert bool((P[pair_bad & off] == math.inf).all()), "a pair with a non-finite row must be at +inf"
        assert bool(torch.isfinite(P[~pair_bad]).all()), "pairs of finite rows must be finite"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("f", [1, 2, 3])
@pytest.mark.parametrize("rule", ["mda", "nnm", "multi_krum"])
def test_exactly_f_bad_rows_average_the_finite_rows(module, dtype, pattern, f, rule):
    n = 2 * f + 3 if rule == "multi_krum" else 2 * f + 2
    bad = bad_row_sets(n, f)["spread"]
    G = poisoned(n, bad, pattern, dtype)
    expected = module.average(G[finite_rows(G)])
    out = getattr(module, rule)(G, f)
    rows = out if rule == "nnm" else out.unsqueeze(0)
    for row in rows:
        assert_close(row, expected, G, f"{rule}(n={n}, f={f}) with bad rows {bad}: mean of the finite rows")


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("n", [3, 4, 7])
def test_geometric_median_equals_the_result_on_the_finite_rows(module, dtype, pattern, n):
    gen = torch.Generator().manual_seed(n)
    w = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1
    for count in range(1, n):  # any number of bad rows while one finite row remains
        bad = bad_row_sets(n, count)["spread"]
        G = poisoned(n, bad, pattern, dtype)
        keep = finite_rows(G)
        out = module.geometric_median(G)
        assert_finite(out, G, f"geometric_median with bad rows {bad}")
        assert_close(out, module.geometric_median(G[keep]), G, f"geometric_median with bad rows {bad}")
        out = module.geometric_median(G, weights=w)
        assert_close(
            out, module.geometric_median(G[keep], weights=w[keep]), G, f"weighted geometric_median, bad rows {bad}"
        )


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_geometric_median_of_no_finite_row_is_nan(module, dtype, pattern):
    G = poisoned(4, [0, 1, 2, 3], pattern, dtype)
    assert bool(torch.isnan(module.geometric_median(G)).all()), "documented: all NaN when no row is left"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("n", [2, 3, 6, 9])
def test_medoid_equals_the_medoid_of_the_finite_rows(module, dtype, pattern, n):
    for count in range(1, n):
        for bad in bad_row_sets(n, count).values():
            G = poisoned(n, bad, pattern, dtype)
            out = module.medoid(G)
            expected = module.medoid(G[finite_rows(G)])
            assert torch.equal(out, expected), f"medoid with bad rows {bad}: {out.tolist()} != {expected.tolist()}"
    G = poisoned(n, list(range(n)), pattern, dtype)
    assert same_bits(module.medoid(G), G[0]), "documented: row 0 when no row is finite"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_centered_clipping_non_finite_rows_contribute_zero(module, dtype, pattern):
    n = 6
    for count in (1, 3, 5, 6):
        G = poisoned(n, bad_row_sets(n, count)["spread"], pattern, dtype)
        center = torch.full((D_COLS,), -0.5, dtype=dtype)
        out = module.centered_clipping(G, 2.0, iters=4, center=center)
        assert_finite(out, G, f"centered_clipping with {count} bad rows")
        assert_close(out, D.centered_clipping(G, 2.0, 4, center.tolist()), G, f"centered_clipping, {count} bad rows")
        if count == n:
            assert torch.equal(out, center), "with every row non-finite, the center stays"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("n", [3, 5, 8])
def test_brsgd_never_averages_a_non_finite_row(module, dtype, pattern, n):
    bad = bad_row_sets(n, (n - 1) // 2)["first"]
    G = poisoned(n, bad, pattern, dtype)
    c1, c2, _ = D.brsgd_sets(G, 1.0, math.inf)
    assert not (c1 & set(bad)), f"definition: C1 {c1} must hold no bad row {bad}"
    out = module.brsgd(G, beta=1.0)  # C2 = every row: the result is the mean of C1
    assert_finite(out, G, "brsgd(beta=1)")
    assert_close(out, module.average(G[finite_rows(G)]), G, "brsgd(beta=1, threshold=inf): mean of the finite rows")


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("value", BAD_VALUES)
def test_average_propagates(module, dtype, value):
    G = poisoned(5, [], "nan", dtype)
    G[2, 1] = value
    out = module.average(G)
    assert bool(torch.isfinite(out[[0, 2, 3, 4]]).all())
    assert (math.isnan(out[1]) if math.isnan(value) else out[1] == value), f"average must propagate {value}"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", PATTERNS)
def test_bucketing_propagates_into_its_bucket_only(module, dtype, pattern):
    n, s = 9, 3
    G = poisoned(n, [4], pattern, dtype)
    out = module.bucketing(G, s, generator=torch.Generator().manual_seed(5))
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5)).tolist()
    holder = perm.index(4) // s
    for b in range(out.shape[0]):
        expect_finite = b != holder
        assert bool(torch.isfinite(out[b]).all()) == expect_finite, (
            f"bucket {b} (rows {perm[b * s:(b + 1) * s]}): {out[b].tolist()}"
        )


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_median_orders_nan_after_inf(module, dtype):
    # column (nan, +inf, 1, 2, 3): sorted 1, 2, 3, inf, nan -> median 3
    G = torch.tensor([[math.nan], [math.inf], [1.0], [2.0], [3.0]], dtype=dtype)
    assert module.median(G).tolist() == [3.0]
    # f = 2 trims the two largest, NaN and +inf, and the two smallest 1, 2
    K = torch.tensor([[math.nan], [4.0], [math.inf], [1.0], [2.0], [3.0]], dtype=dtype)
    assert module.trimmed_mean(K, 2).tolist() == [3.5]
    assert module.median(K).tolist() == [3.5]
    # -inf is the smallest
    H = torch.tensor([[-math.inf], [math.nan], [1.0], [2.0]], dtype=dtype)
    assert module.median(H).tolist() == [1.5]
    assert module.trimmed_mean(H, 1).tolist() == [1.5]

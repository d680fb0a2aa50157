"""Adversarial inputs beyond test_nonfinite.py (which covers at most f NaN/inf rows):
+-1e38 and denormal rows, -0.0, all rows equal, two clusters of equal size, d = 1, n at
each rule's minimum, more than f bad rows (documented in docs/reliability.md: the same
definitions apply, the result may be anything, native equals reference, never a crash),
huge f given to the native ops, and the documented tie-breaking exceptions.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import byzagg
import byzagg.reference as R
from byzagg import _ops, _rules

import definitions as D
from utils import FLOAT_DTYPES as DTYPES
from utils import MODULES, NATIVE_OPS, RULE_CASES, assert_finite, bad_row_sets, poisoned, require_native

EXTREME = {
    "1e38": lambda r: 1e38,
    "-1e38": lambda r: -1e38,
    "pm1e38": lambda r: 1e38 if r % 2 == 0 else -1e38,
    "denormal": lambda r: 1e-40 * (r + 1),  # subnormal in float32, tiny in float64
    "negative-zero": lambda r: -0.0,
}


def extreme(n, bad, kind, dtype, d=5):
    G = poisoned(n, [], "nan", torch.float64, d=d)
    for r, row in enumerate(bad):
        G[row] = EXTREME[kind](r)
    return G.to(dtype)


def honest_box(G, bad):
    keep = torch.ones(G.shape[0], dtype=torch.bool)
    keep[bad] = False
    H = G[keep].to(torch.float64)
    return H.min(0).values, H.max(0).values


# Cases of RULE_CASES (variants included) chosen for this test by hand, on purpose: a
# selection of cases, not a copy of the rule names (nnm and plain brsgd are not run here).
ROBUST = ["trimmed_mean", "meamed", "phocas", "krum", "krum_m2", "multi_krum", "bulyan", "mda", "median", "medoid",
          "geometric_median", "centered_clipping", "centered_clipping_center", "brsgd_threshold"]
# Rules whose result is a mean of honest values once far rows are kept out: inside the
# honest box. (geometric_median, centered_clipping and brsgd are not box-bounded.)
BOXED = {"trimmed_mean", "meamed", "phocas", "krum", "krum_m2", "multi_krum", "bulyan", "mda", "median", "medoid"}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(EXTREME))
@pytest.mark.parametrize("rule", ROBUST)
def test_at_most_f_extreme_rows(module, dtype, kind, rule):
    """+-1e38 rows are far: kept out (inside the honest box). Denormal and -0.0 rows are
    near the honest rows: the result is finite and equals the reference's."""
    least_n, call, _ = RULE_CASES[rule]
    for f in (1, 2):
        n = least_n(f)
        for bad in bad_row_sets(n, f).values():
            G = extreme(n, bad, kind, dtype)
            what = f"{module.__name__}.{rule}(n={n}, f={f}) with {kind} rows {bad} ({dtype})"
            out = call(module, G, f)
            assert_finite(out, G, what)
            if kind in ("1e38", "-1e38", "pm1e38") and rule in BOXED:
                lo, hi = honest_box(G, bad)
                x = out.to(torch.float64)
                tol = 1e-5 * (1 + hi.abs())
                assert bool(((x >= lo - tol) & (x <= hi + tol)).all()), f"{what}: {x.tolist()} outside the honest box"
            if kind in ("1e38", "-1e38", "pm1e38") and rule == "geometric_median":
                assert_near_the_honest_rows(out, G, bad, what)
            if module is byzagg:
                ref = call(R, G, f)
                scale = 1.0 + float(G[torch.isfinite(G)].abs().clamp(max=10).max()) + float(ref.abs().max())
                assert float((out.to(torch.float64) - ref.to(torch.float64)).abs().max()) <= 2e-5 * scale, what


def assert_near_the_honest_rows(out, G, bad, what):
    """The geometric median with f < n/2 far rows lies near the honest rows H: with m = their
    coordinate-wise median and r = max_{h in H} ||h - m||, the minimiser z satisfies
    ||z - m|| <= r / sqrt(1 - (f / (n - f))^2) (at z the n - f unit vectors towards H have a
    component >= sqrt(1 - r^2 / ||z - m||^2) along z -> m, the f others at least -1, and
    they sum to zero). Allowed: twice that, plus rounding. Finiteness alone let a result of
    -1.19e22 through (distances from the pairwise ones by expansion, which cancel)."""
    n, f = G.shape[0], len(bad)
    keep = torch.ones(n, dtype=torch.bool)
    keep[bad] = False
    H = G[keep].to(torch.float64)
    m = H.median(dim=0).values if H.shape[0] % 2 else torch.sort(H, dim=0).values[H.shape[0] // 2 - 1 : H.shape[0] // 2 + 1].mean(0)
    r = float(torch.linalg.vector_norm(H - m, dim=1).max())
    bound = 2 * r / math.sqrt(1 - (f / (n - f)) ** 2) + 1e-5 * (1 + float(H.abs().max()))
    dist = float(torch.linalg.vector_norm(out.to(torch.float64) - m))
    assert dist <= bound, f"{what}: {out.tolist()} is {dist:.3g} from the honest median (bound {bound:.3g})"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_denormal_and_signed_zero_matrices(module, dtype):
    """A matrix of denormals only (distances underflow in float, recomputed in double) and
    one of +-0.0 only: distances are exact, every rule returns a value of the input's range."""
    tiny = 1e-45 if dtype == torch.float32 else 5e-324
    n = 7
    G = (torch.arange(n * 3, dtype=torch.float64).reshape(n, 3) % 5).to(dtype) * tiny
    D = module.pairwise_distances(G, squared=True)  # the squares underflow to 0: all rows tie
    assert bool((D >= 0).all()) and bool(torch.isfinite(D).all()) and torch.equal(D, D.t())
    for rule in ("median", "trimmed_mean", "meamed", "phocas", "krum", "multi_krum", "bulyan", "medoid", "nnm", "mda"):
        _, call, _ = RULE_CASES[rule]
        out = call(module, G, 1)
        assert bool(torch.isfinite(out).all()) and float(out.abs().max()) <= float(G.abs().max()), f"{rule}: {out.tolist()}"
    Z = torch.zeros(n, 3, dtype=dtype)
    Z[::2] = -0.0
    for rule in ("median", "trimmed_mean", "meamed", "phocas", "krum", "multi_krum", "bulyan", "medoid", "mda", "brsgd"):
        _, call, _ = RULE_CASES[rule]
        out = call(module, Z, 1)
        assert bool((out == 0).all()), f"{rule} of +-0.0 rows: {out.tolist()}"


# Every rule of RULE_CASES but centered_clipping, which starts from the zero vector and moves
# at most tau per iteration: it reaches the common row only when tau * iters is large enough.
STRUCTURED_RULES = [rule for rule in byzagg.RULES if rule in RULE_CASES and rule != "centered_clipping"]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", STRUCTURED_RULES)
def test_all_rows_equal_give_that_row(module, dtype, rule):
    least_n, call, _ = RULE_CASES[rule]
    for f in (0, 1, 2):
        for d in (1, 6):
            n = max(least_n(f), 1)
            row = torch.linspace(-3.5, 2.25, d, dtype=torch.float64).to(dtype)
            G = row.repeat(n, 1)
            out = call(module, G, f)
            out = out if rule == "nnm" else out.unsqueeze(0)
            what = f"{rule}(n={n}, f={f}, d={d}): {out.tolist()}"
            if rule == "geometric_median":  # a mean of equal rows rounds
                assert torch.allclose(out, row.expand_as(out), rtol=4e-7, atol=0), what
            else:
                assert torch.equal(out, row.expand_as(out)), what


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
def test_two_clusters_of_equal_size(module, dtype):
    """n = 2k rows, k at A and k at B: no majority. Coordinate-wise rules with the
    centre between them give (A + B) / 2; Krum-type rules tie between the clusters and pick
    the cluster of row 0 (ties to the lower index); every (n - f)-subset has the same
    diameter |A - B|, so MDA averages the lexicographically first one, rows 0..n-f-1."""
    for k, f in ((3, 1), (4, 1), (5, 2)):
        A = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
        B = torch.tensor([3.0, 2.0, -1.5], dtype=torch.float64)
        for first in ("A", "B"):
            G = torch.cat([A.repeat(k, 1), B.repeat(k, 1)]) if first == "A" else torch.cat([B.repeat(k, 1), A.repeat(k, 1)])
            G = torch.stack([G[i // 2 + (k if i % 2 else 0)] for i in range(2 * k)]).to(dtype)  # interleaved
            row0 = G[0]
            mid = ((A + B) / 2).to(dtype)
            assert torch.equal(module.median(G), mid)
            assert torch.equal(module.trimmed_mean(G, f), mid)
            if 2 * k >= 2 * f + 3:
                assert torch.equal(module.krum(G, f), row0), f"krum, k={k}, f={f}"
            if 2 * k >= 4 * f + 3:  # the selection alternates between the clusters
                assert torch.allclose(module.bulyan(G, f).double(), torch.tensor(D.bulyan(G, f), dtype=torch.float64)), f"bulyan, k={k}, f={f}"
            assert torch.equal(module.medoid(G), row0)
            expected = G[: 2 * k - f].to(torch.float64).mean(0)
            assert torch.allclose(module.mda(G, f).to(torch.float64), expected, rtol=1e-6), f"mda, k={k}, f={f}"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_d1_at_the_least_n(module, dtype, rule):
    """d = 1 and n at the rule's minimum, f = 0..3: runs, finite, equals the reference."""
    least_n, call, _ = RULE_CASES[rule]
    for f in (0, 1, 2, 3):
        n = max(least_n(f), 1)
        if rule == "mda" and math.comb(n, f) > byzagg.MDA_MAX_SUBSETS:
            continue
        G = poisoned(n, [], "nan", dtype, seed=f, d=1)
        out = call(module, G, f)
        assert_finite(out, G, f"{rule}(n={n}, f={f}, d=1)")
        ref = call(R, G, f)
        assert float((out.to(torch.float64) - ref.to(torch.float64)).abs().max()) <= 1e-5 * (1 + float(G.abs().max()))


# ----------------------------------------------------------------------------------------
# More than f bad rows: documented, never a crash

OVER_PATTERNS = ("nan", "posinf", "neginf", "mixed", "1e38")


def over_poisoned(n, bad, pattern, dtype):
    if pattern == "1e38":
        return extreme(n, bad, "pm1e38", dtype)
    return poisoned(n, bad, pattern, dtype)


def same_result(a, b, what):
    """The same shape, dtype and non-finite pattern; finite values close."""
    assert a.shape == b.shape and a.dtype == b.dtype, what
    x, y = a.to(torch.float64), b.to(torch.float64)
    assert torch.equal(torch.isnan(x), torch.isnan(y)), f"{what}: NaN pattern {x.tolist()} vs {y.tolist()}"
    fin = torch.isfinite(y)
    assert torch.equal(torch.isinf(x), torch.isinf(y)) and torch.equal(x[torch.isinf(y)], y[torch.isinf(y)]), what
    err = (x[fin] - y[fin]).abs() / y[fin].abs().clamp(min=1.0)
    assert err.numel() == 0 or float(err.max()) <= 2e-5, f"{what}: {x.tolist()} vs {y.tolist()}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("pattern", OVER_PATTERNS)
@pytest.mark.parametrize("rule", sorted(RULE_CASES))
def test_more_than_f_bad_rows(dtype, pattern, rule):
    least_n, call, _ = RULE_CASES[rule]
    f = 1
    n = least_n(f) + 1
    for count in range(f + 1, n + 1):
        bad = bad_row_sets(n, count)["spread"]
        G = over_poisoned(n, bad, pattern, dtype)
        what = f"{rule}(n={n}, f={f}) with {count} {pattern} rows"
        out = call(byzagg, G, f)
        ref = call(R, G, f)
        same_result(out, ref, what + ": native vs reference")
        finite = torch.isfinite(G).all(1)
        if rule.startswith("krum") or rule == "multi_krum":
            if bool(finite.any()) and rule == "krum":
                assert bool(torch.isfinite(out).all()), f"{what}: a finite row remains, krum picks it"
        if not bool(finite.any()) and rule == "median" and pattern == "nan":
            assert bool(torch.isnan(out).all()), f"{what}: every value NaN gives NaN"


# ----------------------------------------------------------------------------------------
# Documented tie-breaking exceptions (docs/reliability.md)


@pytest.mark.parametrize("module", MODULES)
def test_meamed_ties_keep_the_lower_values_so_negation_is_not_symmetric(module):
    # column 0, 1, 2, 3, 4 with f = 1: the 4 values nearest the median 2 tie between
    # {0..3} and {1..4}; the lower ones are kept: mean 1.5, and for the negated column -2.5.
    G = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0]], dtype=torch.float64)
    assert module.meamed(G, 1).tolist() == [1.5]
    assert module.meamed(-G, 1).tolist() == [-2.5]


@pytest.mark.parametrize("module", MODULES)
def test_meamed_can_leave_the_honest_range(module):
    """MeaMed (and Phocas, Bulyan's last step) are not bounded by the honest range: honest
    0, 0, 10 and Byzantine 10.1, 10.2 (n = 5, f = 2) give 10.1 > 10; the bound that holds
    is max + f / (n - f) * (max - min) (tests/test_properties.py)."""
    G = torch.tensor([[0.0], [0.0], [10.0], [10.1], [10.2]], dtype=torch.float64)
    out = float(module.meamed(G, 2))
    assert 10.0 < out <= 10.0 + 2 / 3 * 10.0
    assert math.isclose(out, 10.1, rel_tol=1e-12)


@pytest.mark.parametrize("module", MODULES)
def test_bulyan_f1_last_round_picks_the_lower_index(module):
    """Bulyan with f = 1 scores its last round with n' - f - 2 = 0 neighbours: every score is
    0 and the lowest remaining index wins, so the result depends on the order of the rows."""
    G = torch.tensor([[0.0], [1.0], [2.0], [3.0], [4.0], [5.0], [100.0]], dtype=torch.float64)
    forward = module.bulyan(G, 1)
    backward = module.bulyan(G.flip(0), 1)
    assert not torch.equal(forward, backward), "documented order dependence disappeared: update docs/reliability.md"


# ----------------------------------------------------------------------------------------
# The native ops take any int64 f: regression test for the 2f + 3 / 4f + 3 overflow

HUGE_F = [2**62, 2**62 + 1, 2**61 + 1, 2**63 - 1, -(2**63), -1]


@pytest.mark.parametrize("f", HUGE_F)
@pytest.mark.parametrize("op", [op for op in NATIVE_OPS if op in _rules.RULES_WITH_F])
def test_native_ops_reject_any_invalid_f(op, f):
    require_native("cpu")
    if op not in _ops.native_ops("cpu"):
        pytest.skip(f"{op} is not native")
    G = torch.randn(7, 4)
    args = (f, 1) if op == "krum" else (f,)
    requirement = "f >= 0" if f < 0 else {"krum_scores": "n >= 2f + 3", "krum": "n >= 2f + 3", "bulyan": "n >= 4f + 3"}.get(op, "n > 2f")
    with pytest.raises(RuntimeError, match=re.escape(f"{op} requires {requirement}, got n=7, f={f}")):
        getattr(torch.ops.byzagg, op)(G, *args)


@pytest.mark.parametrize("module", MODULES)
def test_geometric_median_with_far_rows_stays_near_the_honest_rows(module):
    G = extreme(5, [0, 1], "1e38", torch.float64)
    lo, hi = honest_box(G, [0, 1])
    out = module.geometric_median(G).to(torch.float64)
    assert bool(((out >= lo - (hi - lo)) & (out <= hi + (hi - lo))).all()), out.tolist()

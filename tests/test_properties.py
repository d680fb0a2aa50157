"""Properties of every rule (hypothesis), for byzagg (native where built) and
byzagg.reference, in float32 and float64.

- Permutation invariance of the rows. Exact (same bits) for the rules whose arithmetic
  does not depend on the order of the rows once the input has no ties: the coordinate-wise
  rules sort each column, and the Krum family ranks rows by (score, index) with scores
  computed per pair. Within a tolerance for the rules that sum over rows in index order
  (average, mda's mean, geometric_median, centered_clipping, nnm, brsgd). Documented
  exceptions: Krum-type ties go to the lower index and brsgd's C2 ties to the lower
  index, so with tied scores the chosen row depends on the order; Bulyan with f = 1 always
  has such a tie (its last round scores with n' - f - 2 = 0 neighbours) (brsgd is tested with
  beta = 1, where C2 holds every row, and with beta = 0.5 when its scores are not tied at
  the boundary of C2); bucketing is random by design: only its size-weighted mean of the
  bucket means (the average) is invariant.
- Translation F(G + c) = F(G) + c and scaling F(aG) = a F(G). Inputs are on a grid of
  multiples of 1/8 and a is a power of two, so that G + c and aG are exact in float32:
  the differences between rows, and so the distances and every selection, are then exactly
  those of G (scaled by a^2), and only the final means round. Rules without the property:
  centered_clipping with center=None starts from the zero vector, which does not move
  with G (it is equivariant with center c0 -> a c0 + c and tau -> |a| tau; with
  center=None only under scaling); brsgd's threshold is a distance, so it scales with
  |a|, and brsgd breaks ties towards the upper side (">= mean"), meamed, phocas and
  bulyan towards the lower values, so these four are tested with a > 0 only.
  geometric_median runs a fixed number of iterations here (tol=0): its stopping test
  tol * ||z|| is not translation invariant.
- Coordinate-wise rules against at most f arbitrary rows (NaN, +-inf, +-1e38, denormals,
  -0.0 or any float): median and trimmed_mean stay inside the per-coordinate [min, max]
  of the honest rows. meamed, phocas and bulyan do not in general (docs/reliability.md
  has a counterexample, test_adversarial.py tests it); what holds for them: with b of the
  Byzantine values inside the averaged window of k values, each coordinate is within
  b / k * diam of the honest range (diam = max - min of the honest values of that
  coordinate, b <= f, k = n - f, or beta for bulyan), and exactly inside the honest range
  when every Byzantine value is farther than diam from the honest range (a value enters
  the window only when it is nearer the center than an honest value it replaces).
- Krum / Multi-Krum / Bulyan under the attacks of the literature: every row whose Krum
  score is among the m lowest (m <= n - f) is within rho = Delta * sqrt((n - f - 2) /
  (n - 2f - 1)) of some honest row (Delta: the diameter of the honest rows); rows
  farther than that are never selected.
- Same bits for 1, 2 and 3 threads (native kernels).

Budget: BYZAGG_PROPERTY_EXAMPLES (default 12) examples per test; derandomized, no example
database, so runs are reproducible.
"""

from __future__ import annotations

import itertools
import math
import os

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import byzagg
from byzagg import _ops, _rules

import definitions as D
from utils import FLOAT_DTYPES as DTYPES
from utils import MODULES, call_kwargs, require_native, same_bits

EXAMPLES = int(os.environ.get("BYZAGG_PROPERTY_EXAMPLES", "12"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

EPS = {torch.float32: 2.0**-23, torch.float64: 2.0**-52}

# The least n for f of the coordinate-wise property tests: f is the number of Byzantine rows
# the rule tolerates (the median has no f of its own).
HALF = lambda f: 2 * f + 1  # noqa: E731  n > 2f
BULYAN = lambda f: 4 * f + 3  # noqa: E731
ANY = lambda f: 1  # noqa: E731


def bucket_generator():
    return torch.Generator().manual_seed(1234)


def least_n(rule):
    """f -> the least n for f of the rule table's requirement (1 for the rules without f)."""
    return lambda f: _rules.least_n(rule, f)


def sample_call(rule):
    """The rule table's sample call of `rule` (with f where it takes one)."""
    return lambda M, G, f, a, c: getattr(M, rule)(G, **call_kwargs(rule, f))


def _center(G, a, c):
    base = torch.linspace(-0.5, 0.75, G.shape[1], dtype=torch.float64)
    return (a * base + (0.0 if c is None else c.to(torch.float64))).to(G.dtype)


# rule -> (least n for f, call(module, G, f, a, c)); (a, c) is the frame G was moved to
# (G' = a G + c) so that parameters living in G's space move with it. Every rule of the
# table with its sample call, except where the properties need other parameters.
CALLS = {rule: (least_n(rule), sample_call(rule)) for rule in byzagg.RULES}
CALLS |= {
    # a fixed number of iterations: the stopping test tol * ||z|| is not translation invariant
    "geometric_median": (least_n("geometric_median"), lambda M, G, f, a, c: M.geometric_median(G, max_iter=40, tol=0.0)),
    # tau and center live in G's space
    "centered_clipping": (
        least_n("centered_clipping"),
        lambda M, G, f, a, c: M.centered_clipping(G, 0.75 * abs(a), iters=3, center=_center(G, a, c)),
    ),
    # the same permutation every call
    "bucketing": (least_n("bucketing"), lambda M, G, f, a, c: M.bucketing(G, 2, generator=bucket_generator())),
    # the threshold is a distance
    "brsgd": (least_n("brsgd"), lambda M, G, f, a, c: M.brsgd(G, beta=0.5, threshold=1.5 * abs(a))),
}

# The properties' own lists of documented exceptions (module docstring), on purpose.
# Same bits under a permutation of rows without ties (see the module docstring).
EXACT_PERMUTATION = {"median", "trimmed_mean", "meamed", "phocas", "krum", "multi_krum", "bulyan", "medoid"}
# Tie rules that are not symmetric under negation (tested with a > 0 only).
ONE_SIDED_TIES = {"meamed", "phocas", "bulyan", "brsgd"}
# The rules whose every coordinate is a mean of a window of sorted values (bulyan's last step
# included): the property's own list, not the coordinate family of the rule table (brsgd is
# not such a window; bulyan is of the distance family).
COORDINATE_RULES = ("median", "trimmed_mean", "meamed", "phocas", "bulyan")


def gaussian(n, d, seed, dtype, scale=1.0):
    """Rows without ties (almost surely): randn in float64, cast to dtype."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=torch.float64) * scale).to(dtype)


@st.composite
def shapes(draw, least_n, max_f=3, max_extra=5, max_d=8):
    f = draw(st.integers(0, max_f))
    n = draw(st.integers(max(least_n(f), 1), max(least_n(f), 1) + max_extra))
    d = draw(st.integers(1, max_d))
    return n, f, d


def close(got, want, atol, what):
    g, w = got.to(torch.float64), want.to(torch.float64)
    assert g.shape == w.shape, f"{what}: shape {tuple(g.shape)} != {tuple(w.shape)}"
    err = float((g - w).abs().max()) if g.numel() else 0.0
    assert err <= atol, f"{what}: max error {err:.3g} > {atol:.3g}\ngot  {g.tolist()}\nwant {w.tolist()}"


def every_rule(test):
    """test(module, dtype, rule, data) for every rule, module and dtype, with hypothesis."""
    test = given(data=st.data())(SETTINGS(test))
    for name, values in (("rule", sorted(CALLS)), ("dtype", DTYPES), ("module", MODULES)):
        test = pytest.mark.parametrize(name, values)(test)
    return test


# ----------------------------------------------------------------------------------------
# Permutation invariance


@every_rule
def test_permutation_invariance(module, dtype, rule, data):
    least_n, call = CALLS[rule]
    n, f, d = data.draw(shapes(least_n))
    if rule == "mda":
        assume(math.comb(n, f) <= byzagg.MDA_MAX_SUBSETS)
    # Bulyan with f = 1: its last round scores with n' - f - 2 = 0 neighbours, every score
    # is 0 and the lowest index wins (documented; test_adversarial.py shows it).
    # Bulyan with f = 2: its last round has 1 neighbour, and a mutual nearest pair always
    # ties. Krum with n - f - 2 = 1 likewise. Medoid with n = 2:
    # both rows tie.
    assume(not (rule == "bulyan" and f in (1, 2)))
    assume(not (rule in ("krum", "multi_krum") and n - f - 2 == 1))
    # On a line (d = 1) with n even the two middle rows tie as well.
    assume(not (rule == "medoid" and n % 2 == 0 and (n == 2 or d == 1)))
    G = gaussian(n, d, data.draw(st.integers(0, 2**31)), dtype, scale=data.draw(st.sampled_from([1e-3, 1.0, 1e3])))
    perm = torch.tensor(data.draw(st.permutations(list(range(n)))))
    out, permuted = call(module, G, f, 1.0, None), call(module, G[perm], f, 1.0, None)
    what = f"{rule}(n={n}, f={f}, d={d}) permutation {perm.tolist()}"
    scale = float(G.abs().max())
    atol = 64 * n * EPS[dtype] * scale
    if rule == "nnm":  # one row per worker: the rows move with the permutation
        close(permuted, out[perm], atol, what)
    elif rule == "bucketing":  # only the average of the bucket means is invariant
        sizes = torch.tensor([min(2, n - lo) for lo in range(0, n, 2)], dtype=torch.float64).unsqueeze(1)
        weighted = lambda B: (B.to(torch.float64) * sizes).sum(0) / n  # noqa: E731
        close(weighted(permuted), weighted(out), atol, what)
        close(weighted(out), G.to(torch.float64).mean(0), atol, what + " (mean of the bucket means)")
    elif rule == "brsgd":
        for beta in (1.0, 0.5):
            _, c2, scores = D.brsgd_sets(G, beta, 1.5)
            size = math.ceil(beta * n)
            ranked = sorted(scores, reverse=True)
            if size < n and ranked[size - 1] == ranked[size]:
                continue  # tied at C2's boundary: the lower index wins, the order matters
            a, b = module.brsgd(G, beta=beta, threshold=1.5), module.brsgd(G[perm], beta=beta, threshold=1.5)
            close(b, a, atol, f"{what}, beta={beta}")
    elif rule == "mda":  # ties of the diameter go to the lexicographically first subset
        rows = [r for r in range(n)]
        D2 = distances2(G, G)
        diameters = {S: float(D2[list(S)][:, list(S)].max()) for S in itertools.combinations(rows, n - f)}
        best = min(diameters.values())
        tied = [S for S, v in diameters.items() if v <= best * (1 + 64 * EPS[dtype]) + 1e-300]
        means = [G[list(S)].to(torch.float64).mean(0) for S in tied]
        errors = [float((permuted.to(torch.float64) - m).abs().max()) for m in means]
        assert min(errors) <= atol, f"{what}: {permuted.tolist()} is the mean of no least-diameter subset {tied}"
        if len(tied) == 1:
            close(permuted, out, atol, what)
    elif rule in EXACT_PERMUTATION:
        assert torch.equal(permuted, out), f"{what}: {permuted.tolist()} != {out.tolist()}"
    elif rule == "geometric_median":
        # The minimiser need not be unique (n = 2, or collinear rows with n even: a whole
        # segment minimises), so the *point* is not permutation invariant; its objective is:
        # both within API.md's relative 1e-5 of the minimum, so within that of each other
        # (plus the rounding of z to G's dtype).
        values = [D.geometric_median_objective(G.to(torch.float64), z.to(torch.float64).tolist()) for z in (out, permuted)]
        slack = 1e-5 + (1e-6 if dtype == torch.float32 else 0.0)
        assert abs(values[0] - values[1]) <= slack * max(values) + 64 * n * EPS[dtype] * scale, f"{what}: {values}"
    else:
        close(permuted, out, atol, what)


# ----------------------------------------------------------------------------------------
# Translation and scaling equivariance on exact grids


@st.composite
def grid_matrices(draw, least_n):
    n, f, d = draw(shapes(least_n))
    values = draw(st.lists(st.integers(-64, 64), min_size=n * d, max_size=n * d))
    shift = draw(st.lists(st.integers(-64, 64), min_size=d, max_size=d))
    G = torch.tensor(values, dtype=torch.float64).reshape(n, d) / 8
    return n, f, G, torch.tensor(shift, dtype=torch.float64) / 8


@every_rule
def test_translation_and_scaling(module, dtype, rule, data):
    least_n, call = CALLS[rule]
    n, f, G64, c64 = data.draw(grid_matrices(least_n))
    if rule == "mda":
        assume(math.comb(n, f) <= byzagg.MDA_MAX_SUBSETS)
    exponent = data.draw(st.integers(-3, 3))
    sign = 1.0 if rule in ONE_SIDED_TIES else data.draw(st.sampled_from([1.0, -1.0]))
    a = sign * 2.0**exponent
    G, c = G64.to(dtype), c64.to(dtype)
    base = call(module, G, f, 1.0, c * 0)
    magnitude = 1.0 + float(G64.abs().max()) + float(c64.abs().max())
    atol = 8 * EPS[dtype] * magnitude
    if rule == "geometric_median":
        atol = 1e-5 * magnitude if dtype == torch.float32 else 1e-10 * magnitude
    what = f"{rule}(n={n}, f={f}, d={G.shape[1]})"
    translated = call(module, G + c, f, 1.0, c)
    close(translated, base + c, atol, f"{what}: F(G + c) != F(G) + c, c={c.tolist()}")
    scaled = call(module, a * G, f, a, c * 0)
    close(scaled, a * base, abs(a) * atol, f"{what}: F(aG) != aF(G), a={a}")


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@SETTINGS
@given(data=st.data())
def test_centered_clipping_without_center_scales_but_does_not_translate(module, dtype, data):
    n, f, G64, c64 = data.draw(grid_matrices(ANY))
    a = 2.0 ** data.draw(st.integers(-3, 3)) * data.draw(st.sampled_from([1.0, -1.0]))
    G = G64.to(dtype)
    base = module.centered_clipping(G, 0.5, iters=2)
    magnitude = 1.0 + float(G64.abs().max())
    close(module.centered_clipping(a * G, 0.5 * abs(a), iters=2), a * base, abs(a) * 8 * EPS[dtype] * magnitude, "scaling")
    # No translation equivariance: the start (the zero vector) does not move. With rows
    # far from zero (c = 100 tau), the first step is clipped to length tau, so the result
    # stays within 2 tau of the origin instead of following G.
    far = torch.full_like(G, 50.0)
    moved = module.centered_clipping(G + far, 0.5, iters=2)
    assert float(torch.linalg.vector_norm(moved.to(torch.float64))) <= 2 * 0.5 * (1 + 1e-6)


# ----------------------------------------------------------------------------------------
# Coordinate-wise rules against at most f arbitrary rows

SPECIAL = [math.nan, math.inf, -math.inf, 1e38, -1e38, 1e-40, -1e-40, -0.0, 0.0, 5e-324]


@st.composite
def byzantine_values(draw, dtype):
    return draw(
        st.one_of(
            st.sampled_from(SPECIAL),
            st.floats(allow_nan=False, allow_infinity=False, width=32 if dtype == torch.float32 else 64),
            st.floats(-10, 10),
        )
    )


def distances2(A, B):
    """Exact squared distances in float64 (no Gram expansion)."""
    A, B = A.to(torch.float64), B.to(torch.float64)
    return ((A.unsqueeze(1) - B.unsqueeze(0)) ** 2).sum(-1)


def honest_range(H):
    lo, hi = H.min(0).values.to(torch.float64), H.max(0).values.to(torch.float64)
    return lo, hi, hi - lo


def assert_inside(out, lo, hi, slack, dtype, what):
    x = out.to(torch.float64)
    tol = 4 * EPS[dtype] * torch.maximum(lo.abs(), hi.abs()) + slack
    assert bool(torch.isfinite(x).all()), f"{what}: non-finite {x.tolist()}"
    bad = (x < lo - tol) | (x > hi + tol)
    assert not bool(bad.any()), f"{what}: {x.tolist()} outside [{lo.tolist()}, {hi.tolist()}] (slack {slack.tolist()})"


def window_slack(rule, n, f, diam):
    """How far beyond the honest range the rule may go (module docstring)."""
    if rule in ("median", "trimmed_mean") or f == 0:
        return torch.zeros_like(diam)
    k = n - f if rule in ("meamed", "phocas") else (n - 2 * f) - 2 * f  # bulyan: beta
    return min(f, k) / k * diam


def coordinate_call(M, rule, G, f):
    return M.median(G) if rule == "median" else getattr(M, rule)(G, f)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", COORDINATE_RULES)
@SETTINGS
@given(data=st.data())
def test_coordinate_rules_stay_near_the_honest_range(module, dtype, rule, data):
    least_n = BULYAN if rule == "bulyan" else HALF
    n, f, d = data.draw(shapes(least_n, max_f=3 if rule != "bulyan" else 2))
    f = max(f, 1) if n >= least_n(max(f, 1)) else f
    bad = data.draw(st.integers(0, f))
    G = gaussian(n, d, data.draw(st.integers(0, 2**31)), torch.float64, scale=data.draw(st.sampled_from([1e-3, 1.0, 1e3])))
    rows = data.draw(st.permutations(list(range(n))))[:bad]
    for r in rows:
        G[r] = torch.tensor([data.draw(byzantine_values(dtype)) for _ in range(d)], dtype=torch.float64)
    G = G.to(dtype)
    honest = torch.ones(n, dtype=torch.bool)
    honest[rows] = False
    lo, hi, diam = honest_range(G[honest])
    what = f"{rule}(n={n}, f={f}, d={d}) with Byzantine rows {rows}"
    out = coordinate_call(module, rule, G, f)
    assert_inside(out, lo, hi, window_slack(rule, n, f, diam), dtype, what)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rule", COORDINATE_RULES)
@SETTINGS
@given(data=st.data())
def test_far_byzantine_values_never_enter(module, dtype, rule, data):
    """Byzantine values beyond diam of the honest range (or non-finite): exactly inside it."""
    least_n = BULYAN if rule == "bulyan" else HALF
    f = data.draw(st.integers(1, 2 if rule == "bulyan" else 3))
    n = data.draw(st.integers(least_n(f), least_n(f) + 4))
    d = data.draw(st.integers(1, 6))
    G = gaussian(n, d, data.draw(st.integers(0, 2**31)), torch.float64) + 3.0
    rows = data.draw(st.permutations(list(range(n))))[: data.draw(st.integers(1, f))]
    honest = torch.ones(n, dtype=torch.bool)
    honest[rows] = False
    lo, hi, diam = honest_range(G[honest])
    for r in rows:
        kind = data.draw(st.sampled_from(["nan", "inf", "-inf", "1e38", "-1e38", "just-above", "just-below"]))
        if kind == "just-above":
            G[r] = hi + 1.001 * diam + 1e-3
        elif kind == "just-below":
            G[r] = lo - 1.001 * diam - 1e-3
        else:
            G[r] = float(kind)
    G = G.to(dtype)
    out = coordinate_call(module, rule, G, f)
    assert_inside(out, lo, hi, torch.zeros_like(lo), dtype, f"{rule}(n={n}, f={f}) with far rows {rows}")


# ----------------------------------------------------------------------------------------
# Krum, Multi-Krum and Bulyan under the attacks of the literature


def attack(kind, H, f, gen):
    """f Byzantine rows built from the honest rows H (float64)."""
    mean, std = H.mean(0), H.std(0)
    spread = float(distances2(H, H).max()) ** 0.5 + 1.0
    if kind == "far-identical":  # f identical outliers far away in a random direction
        direction = torch.randn(H.shape[1], generator=gen, dtype=torch.float64)
        return (mean + 50 * spread * direction / direction.norm()).repeat(f, 1)
    if kind == "far-scattered":
        return mean + 50 * spread * torch.randn(f, H.shape[1], generator=gen, dtype=torch.float64)
    if kind == "mean-offset":  # the honest mean plus a large offset on one coordinate
        row = mean.clone()
        row[0] += 20 * spread
        return row.repeat(f, 1)
    if kind == "little-is-enough":  # Baruch et al.: mean - 1.5 std, all identical
        return (mean - 1.5 * std).repeat(f, 1)
    if kind == "fall-of-empires":  # Xie et al.: -0.1 times the honest mean
        return (-0.1 * mean).repeat(f, 1)
    if kind == "inside-hull":  # random convex combinations of honest rows
        w = torch.rand(f, H.shape[0], generator=gen, dtype=torch.float64)
        return (w / w.sum(1, keepdim=True)) @ H
    raise AssertionError(kind)


ATTACKS = ["far-identical", "far-scattered", "mean-offset", "little-is-enough", "fall-of-empires", "inside-hull"]
FAR = {"far-identical", "far-scattered", "mean-offset"}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ATTACKS)
@SETTINGS
@given(data=st.data())
def test_krum_family_selects_within_the_honest_bound(module, dtype, kind, data):
    f = data.draw(st.integers(1, 3))
    n = data.draw(st.integers(2 * f + 3, 4 * f + 5))
    d = data.draw(st.integers(1, 8))
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**31)))
    H = torch.randn(n - f, d, generator=gen, dtype=torch.float64) + torch.randn(d, generator=gen, dtype=torch.float64) * 3
    byz = attack(kind, H, f, gen)
    order = torch.tensor(data.draw(st.permutations(list(range(n)))))
    G64 = torch.cat([H, byz])[order]
    honest = order < n - f
    G = G64.to(dtype)
    Hd = G[honest].to(torch.float64)
    delta2 = float(distances2(Hd, Hd).max())
    rho2 = (n - f - 2) * delta2 / (n - 2 * f - 1)
    nearest2 = distances2(G, Hd).min(1).values
    slack = 1e-4 if dtype == torch.float32 else 1e-9
    what = f"{kind}: n={n}, f={f}, d={d}, Byzantine rows {torch.nonzero(~honest).flatten().tolist()}"

    scores = module.krum_scores(G, f).to(torch.float64)
    for m in sorted({1, 2, n - f}):
        cut = torch.sort(scores).values[m - 1]
        chosen = torch.nonzero(scores <= cut * (1 + slack)).flatten()
        too_far = [int(i) for i in chosen if nearest2[i] > rho2 * (1 + slack) + 1e-30]
        assert not too_far, f"{what}: rows {too_far} score among the {m} lowest but lie beyond rho"
    out = module.krum(G, f)
    picked = [i for i in range(n) if torch.equal(G[i], out)]
    assert picked, f"{what}: krum returned no row of G"
    assert min(float(nearest2[i]) for i in picked) <= rho2 * (1 + slack) + 1e-30, f"{what}: krum beyond rho"
    if kind in FAR:  # the outliers are beyond rho: only honest rows are ever averaged
        assert all(bool(honest[i]) for i in picked), f"{what}: krum picked a far Byzantine row"
        atol = 16 * EPS[dtype] * (1 + float(Hd.abs().max()))
        close(module.multi_krum(G, f), Hd.mean(0), atol, f"{what}: multi_krum is the honest mean")
    # Bulyan where its precondition holds: each coordinate within the honest range up to
    # the window slack, exactly inside it for far outliers.
    if n >= 4 * f + 3:
        lo, hi, diam = honest_range(Hd)
        slack_b = torch.zeros_like(diam) if kind in FAR else window_slack("bulyan", n, f, diam)
        assert_inside(module.bulyan(G, f), lo, hi, slack_b, dtype, f"{what}: bulyan")


# ----------------------------------------------------------------------------------------
# Same bits for any number of threads (native kernels)

# Every function of the rule table: the rules as in CALLS, the building blocks with their
# sample call.
THREAD_CALLS = {rule: call for rule, (_, call) in CALLS.items()}
THREAD_CALLS |= {rule.name: sample_call(rule.name) for rule in _rules.TABLE if not rule.aggregation}
THREAD_LEAST_N = {rule: least for rule, (least, _) in CALLS.items()}
THREAD_LEAST_N |= {rule.name: least_n(rule.name) for rule in _rules.TABLE if not rule.aggregation}


@pytest.mark.parametrize("rule", sorted(THREAD_CALLS))
@settings(max_examples=max(2, EXAMPLES // 3), deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_native_same_bits_for_1_2_3_threads(rule, data):
    require_native("cpu")
    if _rules.BY_NAME[rule].op not in _ops.native_ops("cpu"):
        pytest.skip(f"{rule} has no native CPU kernel")
    f = data.draw(st.integers(0, 2))
    least = THREAD_LEAST_N[rule](f)
    n = data.draw(st.integers(max(least, 1), max(least, 1) + (3 if rule == "mda" else 30)))
    d = data.draw(st.sampled_from([1, 17, 4099, 20000, 70001]))
    dtype = data.draw(st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]))
    G = gaussian(n, d, data.draw(st.integers(0, 2**31)), dtype)
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            results.append(THREAD_CALLS[rule](byzagg, G, f, 1.0, None))
    finally:
        torch.set_num_threads(threads)
    for t, other in zip((2, 3), results[1:]):
        assert same_bits(results[0], other), f"{rule}(n={n}, f={f}, d={d}, {dtype}): 1 thread != {t} threads"

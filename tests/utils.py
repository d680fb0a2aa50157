"""Helpers shared by the test modules: no test module imports another, they all import this.

- switches and skips: `devices()`, `require_native(device)`, `native(op)`;
- comparisons: `same_bits`, `assert_close` (to a dtype's tolerance), `assert_finite`;
- inputs: `random_cases`, `adversarial_cases` (float64 matrices for the native-vs-reference
  tests), `poisoned` and `bad_row_sets` (at most f non-finite rows), `RULE_CASES` (the calls
  of the non-finite and adversarial tests, with their plain definitions);
- the sample arguments of every op and rule, from the rule table (byzagg/_rules.py):
  `call_kwargs(name, f)`, `op_args(name, G, f)`, `op_samples(G, f)`, `largest_f(name, n)`.

pytest's hooks stay in conftest.py.
"""

from __future__ import annotations

import inspect
import math
import os

import pytest
import torch

import byzagg
import byzagg.reference as R
from byzagg import _ops, _rules

import definitions as D

# ---------------------------------------------------------------------------------------
# Switches

# (BYZAGG_REQUIRE_CUDA is conftest.py's: its hook turns the cuda marker into skips.)
REQUIRE_NATIVE = os.environ.get("BYZAGG_REQUIRE_NATIVE") == "1"
FORCED_REFERENCE = os.environ.get("BYZAGG_BACKEND", "").lower() == "reference"


def devices():
    """'cpu', and 'cuda' marked so that it skips (or fails when required) without a GPU."""
    return ["cpu", pytest.param("cuda", marks=pytest.mark.cuda)]


def require_native(device):
    """Skip (fail with BYZAGG_REQUIRE_NATIVE=1) when the extension or its device kernels are missing."""
    if not _ops.NATIVE_LOADED:
        if REQUIRE_NATIVE and not FORCED_REFERENCE:
            pytest.fail(f"BYZAGG_REQUIRE_NATIVE=1 but {_ops.LOAD_STATUS}")
        pytest.skip(f"no native extension: {_ops.LOAD_STATUS}")
    if not _ops.native_ops(device):
        pytest.skip(f"the extension has no {device} kernels")


def native(op):
    """torch.ops.byzagg.<op>, or a skip (a failure with BYZAGG_REQUIRE_NATIVE=1) when the
    op has no CPU kernel."""
    if not _ops.NATIVE_LOADED:
        if REQUIRE_NATIVE and not FORCED_REFERENCE:
            pytest.fail(f"BYZAGG_REQUIRE_NATIVE=1 but {_ops.LOAD_STATUS}")
        pytest.skip(f"no native extension: {_ops.LOAD_STATUS}")
    if op not in _ops.native_ops("cpu"):
        pytest.skip(f"{op} has no native CPU kernel")
    return getattr(torch.ops.byzagg, op)


# ---------------------------------------------------------------------------------------
# Dtypes, modules, comparisons

ALL_DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
TOL = {torch.float64: 1e-12, torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}
# The public functions run through the dispatcher (native where built) and the reference.
MODULES = [pytest.param(byzagg, id="byzagg"), pytest.param(R, id="reference")]
FLOAT_DTYPES = [pytest.param(torch.float32, id="f32"), pytest.param(torch.float64, id="f64")]


def gen(seed):
    return torch.Generator().manual_seed(seed)


def same_bits(a, b):
    """Same dtype, shape and bits (NaN payloads and the sign of zero included)."""
    ints = {torch.float64: torch.int64, torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
    return (
        a.dtype == b.dtype
        and a.shape == b.shape
        and torch.equal(a.contiguous().view(ints[a.dtype]), b.contiguous().view(ints[b.dtype]))
    )


def assert_close(got, want, dtype, what, tol=None):
    """Same dtype, shape and non-finite pattern; finite values within the dtype's relative
    tolerance (relative to max(1, |want|))."""
    assert got.dtype == want.dtype and got.shape == want.shape, f"{what}: {got.dtype}{tuple(got.shape)}"
    g, w = got.double().cpu(), want.double().cpu()
    assert torch.equal(torch.isnan(g), torch.isnan(w)), f"{what}: NaN pattern differs"
    assert torch.equal(torch.isinf(g) * g.sign(), torch.isinf(w) * w.sign()), f"{what}: inf pattern differs"
    finite = torch.isfinite(w)
    tol = TOL[dtype] if tol is None else tol
    err = (g[finite] - w[finite]).abs() / w[finite].abs().clamp(min=1.0)
    assert err.numel() == 0 or err.max() <= tol, f"{what}: max relative error {err.max():.3g} > {tol}"


def assert_finite(out, G, what):
    assert out.dtype == G.dtype, f"{what}: dtype {out.dtype}, expected {G.dtype}"
    assert bool(torch.isfinite(out).all()), f"{what}: non-finite result {out.tolist()}\nG={G.tolist()}"


# ---------------------------------------------------------------------------------------
# Matrices for the native-vs-reference tests


def random_cases(seed=0):
    g = gen(seed)
    cases = []
    for n, d in [(1, 7), (2, 5), (3, 33), (4, 17), (5, 100), (7, 2049), (11, 257), (13, 4100), (51, 700), (67, 90)]:
        cases.append((f"randn-{n}x{d}", torch.randn(n, d, generator=g, dtype=torch.float64)))
    return cases


def adversarial_cases(seed=1):
    """(name, float64 matrix, f): the f adversarial rows are the rule's budget."""
    g = gen(seed)
    cases = []
    n, d, f = 15, 300, 3
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    X[n - f :] = 40.0 + 0.01 * torch.randn(f, d, generator=g, dtype=torch.float64)
    cases.append(("cluster", X, f))
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    signs = torch.where(torch.arange(d) % 2 == 0, 1.0, -1.0).double()
    for r in range(f):
        X[2 * r + 1] = 1e30 * signs * (1 + r)
    cases.append(("huge", X, f))
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    X[1::2] = X[0:-1:2]
    cases.append(("duplicates", X, f))
    X = torch.randn(1, d, generator=g, dtype=torch.float64).repeat(n, 1)
    cases.append(("equal", X, f))
    X = torch.randint(-2, 3, (n, d), generator=g).double()
    cases.append(("integers", X, f))
    X = torch.randn(19, 3000, generator=g, dtype=torch.float64)
    X[:4] = X[4] + 1e-6 * torch.randn(4, 3000, generator=g, dtype=torch.float64)
    cases.append(("near-duplicates", X, 4))
    return cases


# ---------------------------------------------------------------------------------------
# At most f non-finite rows (API.md's non-finite policy)

BAD_VALUES = (math.nan, math.inf, -math.inf)
D_COLS = 5


def poisoned(n, bad_rows, pattern, dtype, seed=0, d=D_COLS):
    """A seeded (n, d) matrix whose rows `bad_rows` hold non-finite values."""
    g = torch.Generator().manual_seed(seed + 31 * n + 7 * len(bad_rows))
    G = (torch.randn(n, d, generator=g, dtype=torch.float64) * 2 + 0.5).to(dtype)
    for r, row in enumerate(bad_rows):
        if pattern == "nan":
            G[row] = math.nan
        elif pattern == "posinf":
            G[row] = math.inf
        elif pattern == "neginf":
            G[row] = -math.inf
        elif pattern == "mixed":  # NaN, +inf and -inf within one row and across rows
            for j in range(d):
                G[row, j] = BAD_VALUES[(r + j) % 3]
        elif pattern == "entries":  # one bad entry, the rest of the row finite
            G[row, (3 * r + 1) % d] = BAD_VALUES[r % 3]
        else:
            raise AssertionError(pattern)
    return G


def bad_row_sets(n, count, seed=0):
    """The first `count` rows (lowest indices: tie-breaks must not favour them) and a
    seeded spread of `count` rows."""
    g = torch.Generator().manual_seed(seed + 1000 + n)
    spread = sorted(torch.randperm(n, generator=g)[:count].tolist())
    return {"first": list(range(count)), "spread": spread}


# The calls of the non-finite and adversarial tests: case -> (least n for f, call(module, G, f),
# definition(G, f) or None). An independent copy of the contract on purpose: each call is
# written out with its plain definition (tests/definitions.py) and the least n is API.md's
# requirement written again, so that a wrong rule table cannot make these tests agree with
# it; test_rule_table.py checks the two against each other (HALF, KRUM and BULYAN also give
# test_reference_definitions.py its least n). Rules without f take f as the number of bad
# rows they tolerate, with n > 2f.
HALF = lambda f: 2 * f + 1  # noqa: E731
KRUM = lambda f: 2 * f + 3  # noqa: E731
BULYAN = lambda f: 4 * f + 3  # noqa: E731

RULE_CASES = {
    "trimmed_mean": (HALF, lambda M, G, f: M.trimmed_mean(G, f), D.trimmed_mean),
    "meamed": (HALF, lambda M, G, f: M.meamed(G, f), D.meamed),
    "phocas": (HALF, lambda M, G, f: M.phocas(G, f), D.phocas),
    "krum": (KRUM, lambda M, G, f: M.krum(G, f), lambda G, f: D.krum(G, f)),
    "krum_m2": (KRUM, lambda M, G, f: M.krum(G, f, m=2), lambda G, f: D.krum(G, f, 2)),
    "multi_krum": (KRUM, lambda M, G, f: M.multi_krum(G, f), D.multi_krum),
    "bulyan": (BULYAN, lambda M, G, f: M.bulyan(G, f), D.bulyan),
    "mda": (HALF, lambda M, G, f: M.mda(G, f), D.mda),
    "nnm": (HALF, lambda M, G, f: M.nnm(G, f), D.nnm),
    # rules without f: f is the number of bad rows tolerated, with n > 2f
    "median": (HALF, lambda M, G, f: M.median(G), lambda G, f: D.median(G)),
    "medoid": (HALF, lambda M, G, f: M.medoid(G), lambda G, f: D.medoid(G)),
    "geometric_median": (HALF, lambda M, G, f: M.geometric_median(G), None),
    "centered_clipping": (
        HALF,
        lambda M, G, f: M.centered_clipping(G, 1.0, iters=3),
        lambda G, f: D.centered_clipping(G, 1.0, 3),
    ),
    "centered_clipping_center": (
        HALF,
        lambda M, G, f: M.centered_clipping(G, 0.7, iters=2, center=torch.full((G.shape[1],), 0.25, dtype=G.dtype)),
        lambda G, f: D.centered_clipping(G, 0.7, 2, [0.25] * G.shape[1]),
    ),
    "brsgd": (HALF, lambda M, G, f: M.brsgd(G), lambda G, f: D.brsgd(G)),
    "brsgd_threshold": (HALF, lambda M, G, f: M.brsgd(G, beta=0.8, threshold=3.0), lambda G, f: D.brsgd(G, 0.8, 3.0)),
}
# The rule each case calls (the cases not named after a rule).
RULE_CASE_RULE = {"krum_m2": "krum", "centered_clipping_center": "centered_clipping", "brsgd_threshold": "brsgd"}


# ---------------------------------------------------------------------------------------
# Sample arguments of every rule and op, from the rule table


def takes_f(name):
    """Whether the public function `name` takes f (it has a requirement on n and f)."""
    return name in _rules.RULES_WITH_F


def largest_f(name, n):
    """The largest f that `name` accepts with n rows (0 for the functions without f)."""
    if not takes_f(name):
        return 0
    holds = _rules.REQUIREMENTS[name][1]
    f = 0
    while holds(n, f + 1):
        f += 1
    return f


def call_kwargs(name, f=None, **overrides):
    """Keyword arguments after G of a typical call of byzagg.<name>: f (when it takes one),
    then the rule table's sample, then `overrides`."""
    kwargs = {"f": f} if takes_f(name) else {}
    return {**kwargs, **_rules.BY_NAME[name].sample, **overrides}


def op_parameters(name):
    """The parameters of byzagg.<name> after G that its op takes, in order: all but the
    keyword-only out= (which the op's out= overload takes)."""
    parameters = list(inspect.signature(getattr(byzagg, name)).parameters.values())[1:]
    return [p for p in parameters if p.kind is not inspect.Parameter.KEYWORD_ONLY]


def op_args(name, G, f=None, **overrides):
    """The positional arguments after G of torch.ops.byzagg.<op> for the rule table's row
    `name` called as `call_kwargs(name, f, **overrides)`: the public function's parameters
    in order, its defaults filled in (the ops take the same parameters, in the same order).
    f=None: the largest f the function accepts with G's rows."""
    assert name in _rules.OPS, f"{name} is not an op: its row calls {_rules.BY_NAME[name].op}"
    if f is None and takes_f(name):
        f = largest_f(name, G.shape[0])
    parameters = op_parameters(name)
    kwargs = call_kwargs(name, f, **overrides)
    unknown = set(kwargs) - {p.name for p in parameters}
    assert not unknown, f"{name} takes no {sorted(unknown)}"
    return tuple(kwargs[p.name] if p.name in kwargs else p.default for p in parameters)


# The operators without a native kernel: the dispatcher runs their reference. Checked against
# the extension in test_rule_table.py.
WITHOUT_NATIVE_OP = frozenset({"average", "bucketing"})
NATIVE_OPS = tuple(op for op in _rules.OPS if op not in WITHOUT_NATIVE_OP)

# Further calls of some ops beyond the table's sample, reaching their other branches (the
# other flag, an optional tensor given, every row averaged, a finite threshold):
# overrides(G, f) -> keyword arguments.
OP_VARIANTS = {
    "pairwise_distances": [lambda G, f: {"squared": True}],
    "krum": [lambda G, f: {"m": G.shape[0] - f}],
    "geometric_median": [
        lambda G, f: {"weights": torch.linspace(0.5, 1.5, G.shape[0], dtype=G.dtype, device=G.device), "tol": 0.0}
    ],
    "centered_clipping": [
        lambda G, f: {"tau": 0.5, "iters": 2, "center": torch.full((G.shape[1],), 0.25, dtype=G.dtype, device=G.device)}
    ],
    "brsgd": [lambda G, f: {"threshold": 3.0}],
}


def op_samples(G, f=None, ops=NATIVE_OPS):
    """(op, arguments after G) for every native op (or those of `ops`), in the rule table's
    order: the table's sample call, then OP_VARIANTS. f=None: the largest f each op accepts
    with G's rows. The one sample-input generator of opcheck, the compile tests and the
    native-vs-reference tests."""
    samples = []
    for op in ops:
        f_op = largest_f(op, G.shape[0]) if f is None else f
        samples.append((op, op_args(op, G, f_op)))
        for variant in OP_VARIANTS.get(op, []):
            samples.append((op, op_args(op, G, f_op, **variant(G, f_op))))
    return samples


def sample_matrix(n, d, dtype=torch.float32, device="cpu", seed=0):
    """A seeded (n, d) Gaussian matrix of `dtype`, moved to `device`."""
    return torch.randn(n, d, generator=gen(seed), dtype=dtype).to(device)

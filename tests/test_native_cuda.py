"""CUDA kernels against the CPU kernels and the reference, for every native op.

Every test is marked `cuda`: skipped without a GPU, a failure with BYZAGG_REQUIRE_CUDA=1.
Inputs: the random and adversarial cases of test_native_distances.py (clusters, +-1e30
rows, duplicates, all rows equal, integers with exact ties, near-duplicates), sizes that
take each coordinate-wise path (register network n <= 64, shared-memory bitonic sort up to
2048, torch's sort beyond), at most f non-finite rows, non-contiguous input, every dtype.

Agreement expected:
- coordinate-wise rules: the same arithmetic in the same order as the CPU: equal values
  (the sign of a zero aside);
- distance-based rules: distances to the dtype's tolerance; selections exactly where scores
  are separated, and on ties when the arithmetic is exact (integer inputs);
- iterative rules and BrSGD: float64 sums in another order: close to 1e-9 relative.
Plus: the same bits on two runs, no mutation of the input.
"""

from __future__ import annotations

import pytest
import torch

from byzagg import _ops, _rules

from utils import ALL_DTYPES as DTYPES
from utils import adversarial_cases, assert_close, random_cases, require_native, same_bits

pytestmark = pytest.mark.cuda

# The calls compared on both devices ("f" and "n-f" filled in per case), with the arguments
# the tolerances below were set for: kept as written rather than utils.op_samples (the rule
# table's sample calls), whose other iteration counts and stopping tolerances have not been
# run against these tolerances on a GPU.
COORDINATE = [("median", ()), ("trimmed_mean", ("f",)), ("meamed", ("f",)), ("phocas", ("f",))]
DISTANCE = [
    ("pairwise_distances", (False,)),
    ("pairwise_distances", (True,)),
    ("krum_scores", ("f",)),
    ("krum", ("f", 1)),
    ("krum", ("f", "n-f")),
    ("bulyan", ("f",)),
    ("nnm", ("f",)),
    ("medoid", ()),
]
ITERATIVE = [
    ("geometric_median", (None, 1e-8, 50, 1e-12)),
    ("centered_clipping", (2.0, 3, None)),
    ("brsgd", (0.5, float("inf"))),
    ("brsgd", (0.7, 20.0)),
]


def cuda_op(name):
    require_native("cuda")
    if name not in _ops.native_ops("cuda"):
        pytest.fail(f"{name} has no CUDA kernel")
    return getattr(torch.ops.byzagg, name)


def resolve_args(args, n, f):
    out = []
    for a in args:
        out.append({"f": f, "n-f": n - f}.get(a, a) if isinstance(a, str) else a)
    return tuple(out)


def accepts(name, n, f):
    """The rule table's requirement on (n, f) for op `name` (True for the ops without one)."""
    return name not in _rules.REQUIREMENTS or _rules.REQUIREMENTS[name][1](n, f)


def f_for(name, n):
    if name == "bulyan":
        return max(0, (n - 3) // 4)
    if name in ("krum", "krum_scores"):
        return max(0, (n - 3) // 2) // 2
    return max(0, (n - 1) // 2) // 2


def run_both(name, X, args):
    """The CUDA result (moved to the CPU) and the CPU native result on the same matrix."""
    op = cuda_op(name)
    Xc = X.cuda()
    before = Xc.clone()
    got = op(Xc, *[a.cuda() if torch.is_tensor(a) else a for a in args])
    again = op(Xc, *[a.cuda() if torch.is_tensor(a) else a for a in args])
    assert same_bits(Xc, before), f"{name}: input modified"
    assert same_bits(got, again), f"{name}: two runs differ"
    want = getattr(torch.ops.byzagg, name)(X, *args)
    return got.cpu(), want


def cases():
    out = [(name, X, None) for name, X in random_cases()]
    out += [(name, X, f) for name, X, f in adversarial_cases()]
    return out


CASES = cases()


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name, args", COORDINATE, ids=[c[0] for c in COORDINATE])
@pytest.mark.parametrize("n, d", [(1, 9), (2, 33), (16, 300), (17, 300), (51, 1000), (64, 70), (65, 70), (101, 40), (300, 20), (2049, 5), (2100, 3)])
def test_coordinate_rules_every_path(name, args, dtype, n, d):
    g = torch.Generator().manual_seed(n * 7919 + d)
    X = torch.randn(n, d, generator=g, dtype=torch.float64).to(dtype)
    X[: n // 5] = torch.nan  # a few rows of NaN: ordered last
    f = f_for(name, n)
    got, want = run_both(name, X, resolve_args(args, n, f))
    torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name, args", COORDINATE + DISTANCE + ITERATIVE, ids=[c[0] for c in COORDINATE + DISTANCE + ITERATIVE])
def test_cases_match_cpu(name, args, dtype):
    for case, X64, f in CASES:
        n = X64.shape[0]
        f = f_for(name, n) if f is None else f
        if not accepts(name, n, f):
            continue
        X = X64.to(dtype)
        got, want = run_both(name, X, resolve_args(args, n, f))
        if name in COORDINATE_NAMES:
            torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True, msg=lambda m: f"{case}: {m}")
        elif name in ("geometric_median", "centered_clipping", "brsgd"):
            assert_close(got, want, dtype, f"{name} {case}", tol=max(1e-9, _eps(dtype)))
        else:
            assert_close(got, want, dtype, f"{name} {case}")


COORDINATE_NAMES = {c[0] for c in COORDINATE}


def _eps(dtype):
    return {torch.float64: 0.0, torch.float32: 2e-6, torch.float16: 1e-3, torch.bfloat16: 8e-3}[dtype]


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf"])
@pytest.mark.parametrize("name, args", COORDINATE + DISTANCE + ITERATIVE, ids=[c[0] for c in COORDINATE + DISTANCE + ITERATIVE])
def test_non_finite_rows(name, args, bad):
    n, d = 15, 200
    g = torch.Generator().manual_seed(3)
    X = torch.randn(n, d, generator=g, dtype=torch.float32)
    f = 3
    X[[1, 6, 11], 7] = float(bad)
    got, want = run_both(name, X, resolve_args(args, n, f))
    if name in COORDINATE_NAMES:
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)
    else:
        assert_close(got, want, torch.float32, f"{name} with {bad} rows", tol=1e-5)


@pytest.mark.parametrize("name, args", COORDINATE + DISTANCE + ITERATIVE, ids=[c[0] for c in COORDINATE + DISTANCE + ITERATIVE])
def test_non_contiguous_input(name, args):
    g = torch.Generator().manual_seed(5)
    base = torch.randn(40, 23, generator=g, dtype=torch.float32)
    X = base.t()[:, ::2]  # (23, 20), strided
    n = X.shape[0]
    f = f_for(name, n)
    got, want = run_both(name, X, resolve_args(args, n, f))
    assert_close(got, want, torch.float32, f"{name} non-contiguous", tol=1e-5)


def test_weights_and_center_on_the_device():
    n, d = 9, 64
    g = torch.Generator().manual_seed(9)
    X = torch.randn(n, d, generator=g, dtype=torch.float64)
    w = torch.rand(n, generator=g, dtype=torch.float64) + 0.1
    c = torch.randn(d, generator=g, dtype=torch.float64)
    got, want = run_both("geometric_median", X, (w, 1e-8, 40, 0.0))
    assert_close(got, want, torch.float64, "weighted geometric_median", tol=1e-9)
    got, want = run_both("centered_clipping", X, (1.5, 4, c))
    assert_close(got, want, torch.float64, "centered_clipping from a center", tol=1e-9)

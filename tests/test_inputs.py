"""Arguments and inputs (API.md "Inputs and outputs"), for byzagg and byzagg.reference.

Every precondition error (its type and its message), wrong ranks, empty inputs, dtypes,
sequences, non-contiguous inputs, inputs never modified, determinism, half precision,
and `aggregate(name, ...)` against the direct call.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

import byzagg
import byzagg.reference as R
from byzagg import _rules

from utils import MODULES, same_bits

# An independent copy of the contract, on purpose: the names, parameters, requirements and
# least n below are API.md's, written again rather than read from byzagg/_rules.py, so that
# a wrong row in the rule table fails here instead of being tested against itself.
# test_the_rule_table_agrees_with_this_copy checks the two against each other.

# Every public function, with parameters valid for n = 7 (bulyan needs n >= 4f + 3).
N = 7


def params(name, n=N, d=None):
    """Keyword arguments of rule `name` valid for n rows (a fresh generator each time)."""
    return {
        "average": {},
        "median": {},
        "trimmed_mean": {"f": 1},
        "meamed": {"f": 2},
        "phocas": {"f": 2},
        "pairwise_distances": {"squared": False},
        "krum_scores": {"f": 1},
        "krum": {"f": 1, "m": 2},
        "multi_krum": {"f": 1},
        "bulyan": {"f": 1},
        "medoid": {},
        "geometric_median": {"eps": 1e-8},
        "mda": {"f": 2},
        "centered_clipping": {"tau": 1.5, "iters": 2},
        "nnm": {"f": 2},
        "bucketing": {"s": 3, "generator": torch.Generator().manual_seed(11)},
        "brsgd": {"beta": 0.5, "threshold": 4.0},
    }[name]


ALL = [
    "average",
    "median",
    "trimmed_mean",
    "meamed",
    "phocas",
    "pairwise_distances",
    "krum_scores",
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
]
ROW_RESULTS = {"nnm": N, "bucketing": math.ceil(N / 3)}  # rules returning one row per worker / bucket


def sample(n=N, d=5, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(n, d, generator=gen, dtype=torch.float64) * 2 + 0.3).to(dtype)


def run(module, name, G, **extra):
    return getattr(module, name)(G, **{**params(name), **extra})


def test_the_public_module_lists_every_rule():
    assert tuple(byzagg.RULES) == tuple(R.RULES)
    assert set(byzagg.RULES) == set(ALL) - {"pairwise_distances", "krum_scores"}
    for name in ALL:
        assert callable(getattr(byzagg, name)) and callable(getattr(R, name)), name
    assert byzagg.MDA_MAX_SUBSETS == 1_000_000


def test_the_rule_table_agrees_with_this_copy():
    """byzagg/_rules.py against this file's copy: the functions, which take f, the
    requirement texts and the least n."""
    assert set(_rules.BY_NAME) == set(ALL)
    assert _rules.RULES_WITH_F == {name for name in ALL if "f" in params(name)}
    requirements = {rule: requirement for rule, _, _, requirement in PRECONDITIONS}
    assert {name: text for name, (text, _) in _rules.REQUIREMENTS.items()} == requirements
    assert set(LEAST_N) == set(_rules.REQUIREMENTS)
    for rule in LEAST_N:
        factor = {"bulyan": 4}.get(rule, 2)
        for f in range(6):
            assert _rules.least_n(rule, f) == factor * f + LEAST_N[rule], (rule, f)


# ----------------------------------------------------------------------------------------
# Preconditions on n and f: ValueError naming the rule, n, f and the requirement

PRECONDITIONS = [
    *[(rule, n, f, "n > 2f") for rule in ("trimmed_mean", "meamed", "phocas", "mda", "nnm") for n, f in ((4, 2), (1, 1), (6, 3))],
    *[(rule, n, f, "n >= 2f + 3") for rule in ("krum", "multi_krum", "krum_scores") for n, f in ((10, 4), (2, 0), (4, 1))],
    *[("bulyan", n, f, "n >= 4f + 3") for n, f in ((10, 2), (2, 0), (6, 1))],
]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("rule, n, f, requirement", PRECONDITIONS)
def test_precondition_on_n_and_f(module, rule, n, f, requirement):
    G = sample(n)
    message = f"{rule} requires {requirement}, got n={n}, f={f}"
    with pytest.raises(ValueError, match=re.escape(message)):
        getattr(module, rule)(G, f=f)


LEAST_N = {"trimmed_mean": 1, "meamed": 1, "phocas": 1, "mda": 1, "nnm": 1, "krum": 3, "multi_krum": 3, "krum_scores": 3, "bulyan": 3}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("rule", sorted(LEAST_N))
@pytest.mark.parametrize("f", [0, 1, 2])
def test_the_least_n_is_accepted(module, rule, f):
    factor = {"bulyan": 4}.get(rule, 2)
    n = factor * f + LEAST_N[rule]
    out = getattr(module, rule)(sample(n, 3), f=f)
    assert bool(torch.isfinite(out).all()), f"{rule}(n={n}, f={f}) must work: {out}"
    if n > 1:
        with pytest.raises(ValueError, match=re.escape(f"{rule} requires")):
            getattr(module, rule)(sample(n - 1, 3), f=f)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("rule", sorted(LEAST_N))
def test_f_negative_or_not_an_int(module, rule):
    G = sample(11)
    for f in (-1, -(2**40)):
        with pytest.raises(ValueError, match=re.escape(f"{rule} requires f >= 0, got n=11, f={f}")):
            getattr(module, rule)(G, f=f)
    for bad in (1.0, "1", True, None, 1.5):
        with pytest.raises(TypeError, match=rf"{rule}.*f must be an int"):
            getattr(module, rule)(G, f=bad)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("rule", ["krum", "multi_krum"])
def test_m(module, rule):
    G = sample(7)
    with pytest.raises(ValueError, match=re.escape(f"{rule} requires 1 <= m <= n - f, got n=7, f=1, m=7")):
        getattr(module, rule)(G, f=1, m=7)
    for m in (0, -2):
        with pytest.raises(ValueError, match=re.escape(f"{rule} requires 1 <= m <= n - f, got n=7, f=1, m={m}")):
            getattr(module, rule)(G, f=1, m=m)
    for bad in (1.0, "2", True):
        with pytest.raises(TypeError, match=rf"{rule}.*m must be an int"):
            getattr(module, rule)(G, f=1, m=bad)
    assert getattr(module, rule)(G, f=1, m=6).shape == (5,)  # m = n - f is allowed


@pytest.mark.parametrize("module", MODULES)
def test_mda_subset_limit(module):
    G = sample(25, 2)
    count = math.comb(25, 12)
    assert count > 1_000_000
    message = f"mda requires C(n, f) <= 1000000 subsets, got n=25, f=12: C(n, f)={count}"
    with pytest.raises(ValueError, match=re.escape(message)):
        module.mda(G, 12)


# ----------------------------------------------------------------------------------------
# Other parameters

BAD_PARAMETERS = [
    # (rule, keyword arguments, error type, message pattern)
    ("centered_clipping", {"tau": 0.0}, ValueError, r"centered_clipping: tau must be > 0"),
    ("centered_clipping", {"tau": -1.0}, ValueError, r"centered_clipping: tau must be > 0"),
    ("centered_clipping", {"tau": math.nan}, ValueError, r"centered_clipping: tau must be finite"),
    ("centered_clipping", {"tau": math.inf}, ValueError, r"centered_clipping: tau must be finite"),
    ("centered_clipping", {"tau": "1"}, TypeError, r"centered_clipping: tau must be a real number"),
    ("centered_clipping", {"tau": 1.0, "iters": 0}, ValueError, r"centered_clipping: iters must be >= 1"),
    ("centered_clipping", {"tau": 1.0, "iters": 1.5}, TypeError, r"centered_clipping: iters must be an int"),
    ("centered_clipping", {"tau": 1.0, "center": "zeros"}, TypeError, r"centered_clipping: center must be a tensor"),
    ("centered_clipping", {"tau": 1.0, "center": torch.zeros(4)}, ValueError, r"centered_clipping: center must have 5"),
    ("centered_clipping", {"tau": 1.0, "center": torch.zeros(5, dtype=torch.int64)}, TypeError, r"centered_clipping: center must have a floating dtype"),
    ("centered_clipping", {"tau": 1.0, "center": torch.tensor([0.0, 0, 0, 0, math.nan])}, ValueError, r"centered_clipping: center must be finite"),
    ("centered_clipping", {"tau": 1.0, "center": torch.tensor([0.0, 0, 0, 0, math.inf])}, ValueError, r"centered_clipping: center must be finite"),
    ("bucketing", {"s": 0}, ValueError, r"bucketing: s must be >= 1"),
    ("bucketing", {"s": -1}, ValueError, r"bucketing: s must be >= 1"),
    ("bucketing", {"s": 2.0}, TypeError, r"bucketing: s must be an int"),
    ("bucketing", {"s": True}, TypeError, r"bucketing: s must be an int"),
    ("bucketing", {"s": 2, "generator": 7}, TypeError, r"bucketing: generator must be a torch.Generator"),
    ("brsgd", {"beta": 0.0}, ValueError, r"brsgd.*beta"),
    ("brsgd", {"beta": -0.5}, ValueError, r"brsgd.*beta"),
    ("brsgd", {"beta": 1.5}, ValueError, re.escape("brsgd requires 0 < beta <= 1, got beta=1.5")),
    ("brsgd", {"beta": math.nan}, ValueError, r"brsgd: beta must be finite"),
    ("brsgd", {"beta": "half"}, TypeError, r"brsgd: beta must be a real number"),
    ("brsgd", {"threshold": -1.0}, ValueError, r"brsgd: threshold must be >= 0"),
    ("brsgd", {"threshold": -math.inf}, ValueError, r"brsgd: threshold must be >= 0"),
    ("brsgd", {"threshold": math.nan}, ValueError, r"brsgd: threshold must be finite"),
    ("brsgd", {"threshold": None}, TypeError, r"brsgd: threshold must be a real number"),
    ("geometric_median", {"eps": 0.0}, ValueError, r"geometric_median: eps must be > 0"),
    ("geometric_median", {"eps": -1e-8}, ValueError, r"geometric_median: eps must be > 0"),
    ("geometric_median", {"eps": math.inf}, ValueError, r"geometric_median: eps must be finite"),
    ("geometric_median", {"max_iter": 0}, ValueError, r"geometric_median: max_iter must be >= 1"),
    ("geometric_median", {"max_iter": 10.0}, TypeError, r"geometric_median: max_iter must be an int"),
    ("geometric_median", {"tol": -1e-7}, ValueError, r"geometric_median: tol must be >= 0"),
    ("geometric_median", {"tol": math.nan}, ValueError, r"geometric_median: tol must be finite"),
    ("geometric_median", {"weights": torch.tensor([1.0, 1, 1, 1, 1, 1, -1])}, ValueError, r"geometric_median: weights must be >= 0"),
    ("geometric_median", {"weights": torch.ones(6)}, ValueError, r"geometric_median: weights must have 7 elements"),
    ("geometric_median", {"weights": torch.tensor([1.0, 1, 1, 1, 1, 1, math.nan])}, ValueError, r"geometric_median: weights must be finite"),
    ("geometric_median", {"weights": torch.tensor([1.0, 1, 1, 1, 1, 1, math.inf])}, ValueError, r"geometric_median: weights must be finite"),
    ("geometric_median", {"weights": torch.ones(7, dtype=torch.int64)}, TypeError, r"geometric_median: weights must have a floating dtype"),
    ("geometric_median", {"weights": [1.0] * 7}, TypeError, r"geometric_median: weights must be a tensor"),
    ("pairwise_distances", {"squared": 1}, TypeError, r"pairwise_distances: squared must be a bool"),
    ("pairwise_distances", {"squared": "yes"}, TypeError, r"pairwise_distances: squared must be a bool"),
]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("rule, kwargs, error, pattern", BAD_PARAMETERS, ids=lambda x: None)
def test_bad_parameters(module, rule, kwargs, error, pattern):
    G = sample(7, 5)
    with pytest.raises(error, match=pattern):
        getattr(module, rule)(G, **kwargs)


@pytest.mark.parametrize("module", MODULES)
def test_accepted_parameter_edges(module):
    G = sample(7, 5)
    assert bool(torch.isfinite(module.brsgd(G, beta=1.0, threshold=math.inf)).all())
    assert bool(torch.isfinite(module.brsgd(G, beta=1e-9, threshold=0.0)).all())
    assert bool(torch.isfinite(module.geometric_median(G, tol=0.0, max_iter=1)).all())
    assert bool(torch.isfinite(module.geometric_median(G, weights=torch.tensor([0.0, 0, 0, 0, 0, 0, 1.0]))).all())
    assert module.bucketing(G, 100).shape == (1, 5)
    assert bool(torch.isfinite(module.centered_clipping(G, 1e-12, iters=1, center=torch.ones(1, 5))).all())


@pytest.mark.parametrize("module", MODULES)
def test_aggregate_names(module):
    G = sample(7, 5)
    with pytest.raises(ValueError, match=r"aggregate: unknown rule 'krumm'"):
        module.aggregate("krumm", G, f=1)
    with pytest.raises(TypeError):
        module.aggregate("krum", G, ff=1)  # misspelled keyword
    with pytest.raises(TypeError):
        module.aggregate("krum", G)  # f missing


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name", ALL)
def test_misspelled_keyword(module, name):
    G = sample(7, 5)
    with pytest.raises(TypeError):
        getattr(module, name)(G, **params(name), colour=1)
    if "f" in params(name):
        with pytest.raises(TypeError):
            getattr(module, name)(G, F=1)


# ----------------------------------------------------------------------------------------
# G itself: rank, emptiness, dtype, sequences


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name", ALL)
def test_wrong_rank_and_empty_input(module, name):
    f = getattr(module, name)
    kwargs = params(name)
    for bad in (torch.randn(7), torch.randn(7, 2, 3), torch.tensor(1.0)):
        with pytest.raises(ValueError, match=rf"{name}: G must be a 2-D tensor"):
            f(bad, **kwargs)
    for empty in (torch.zeros(0, 3), torch.zeros(7, 0)):
        with pytest.raises(ValueError, match=rf"{name}: empty input"):
            f(empty, **kwargs)
    with pytest.raises(ValueError, match=rf"{name}: empty input"):
        f([], **kwargs)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64, torch.complex128])
def test_non_float_dtypes_are_type_errors(module, name, dtype):
    G = torch.ones(7, 3, dtype=dtype)
    with pytest.raises(TypeError, match=rf"{name}: G must have a floating dtype"):
        getattr(module, name)(G, **params(name))
    with pytest.raises(TypeError, match=rf"{name}: G must have a floating dtype"):
        getattr(module, name)(list(G), **params(name))


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name", ALL)
def test_bad_sequences(module, name):
    f = getattr(module, name)
    kwargs = params(name)
    rows = [torch.randn(2, 3, dtype=torch.float64) for _ in range(7)]
    with pytest.raises(ValueError, match=rf"{name}: all tensors must have one shape"):
        f(rows[:6] + [torch.randn(3, 2, dtype=torch.float64)], **kwargs)
    with pytest.raises(TypeError, match=rf"{name}: all tensors must have one dtype"):
        f(rows[:6] + [rows[6].float()], **kwargs)
    with pytest.raises(ValueError, match=rf"{name}: all tensors must be on one device"):
        f(rows[:6] + [torch.empty(2, 3, dtype=torch.float64, device="meta")], **kwargs)
    with pytest.raises(TypeError, match=rf"{name}: element 6 of the sequence is a list"):
        f(rows[:6] + [[1.0] * 6], **kwargs)
    for bad in ("abcdefg", 3.0, None):
        with pytest.raises(TypeError, match=rf"{name}: G must be a 2-D tensor or a sequence of tensors"):
            f(bad, **kwargs)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("container", [list, tuple])
def test_sequence_input_keeps_the_workers_shape(module, name, container):
    rows = [torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(i)) for i in range(N)]
    out = run(module, name, container(rows))
    direct = run(module, name, torch.stack([r.reshape(-1) for r in rows]))
    if name == "pairwise_distances":
        expected_shape = (N, N)
    elif name == "krum_scores":
        expected_shape = (N,)
    elif name in ROW_RESULTS:
        expected_shape = (ROW_RESULTS[name], 2, 3)
    else:
        expected_shape = (2, 3)
    assert tuple(out.shape) == expected_shape, f"{name} on a sequence of (2, 3) tensors: shape {tuple(out.shape)}"
    assert same_bits(out.reshape(direct.shape), direct), f"{name}: the sequence and the stacked matrix differ"


# ----------------------------------------------------------------------------------------
# Layout, purity, determinism


def layouts(G):
    """Non-contiguous views with G's values: a transposed view and a strided slice."""
    n, d = G.shape
    transposed = G.T.contiguous().T
    wide = torch.full((2 * n, 3 * d), 7.0, dtype=G.dtype)
    wide[::2, 1::3] = G
    strided = wide[::2, 1::3]
    assert not transposed.is_contiguous() and not strided.is_contiguous()
    assert torch.equal(transposed, G) and torch.equal(strided, G)
    return {"transposed": transposed, "strided": strided}


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_non_contiguous_input_gives_the_contiguous_result(module, name, dtype):
    G = sample(N, 5, dtype)
    expected = run(module, name, G)
    for label, view in layouts(G).items():
        out = run(module, name, view)
        assert out.dtype == expected.dtype and out.shape == expected.shape
        # the same values; reductions may associate differently on another layout
        assert torch.allclose(out, expected, rtol=1e-12 if dtype == torch.float64 else 1e-6, atol=0), (
            f"{name} on a {label} view: {out.tolist()} != {expected.tolist()}"
        )


def with_non_finite(G):
    H = G.clone()
    H[1, 0] = math.nan
    H[3, 2] = math.inf
    H[5, 4] = -math.inf
    return H


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
@pytest.mark.parametrize("non_finite", [False, True], ids=["finite", "non-finite"])
def test_inputs_never_modified_and_results_deterministic(module, name, dtype, non_finite):
    G = sample(N, 5, dtype)
    if non_finite:
        G = with_non_finite(G)
    before = G.clone()
    extra = {}
    if name == "centered_clipping":
        extra["center"] = torch.full((5,), 0.5, dtype=dtype)
    if name == "geometric_median":
        extra["weights"] = torch.linspace(0.5, 2.0, N, dtype=torch.float64)
    kept = {k: v.clone() for k, v in extra.items()}
    first = run(module, name, G, **extra)
    assert same_bits(G, before), f"{name} modified its input G"
    for k in extra:
        assert same_bits(extra[k], kept[k]), f"{name} modified its argument {k}"
    second = run(module, name, G, **extra)
    assert same_bits(first, second), f"{name}: two calls on the same input gave different bits"
    # the result is a new tensor: writing into it leaves G alone
    first.fill_(123.0)
    assert same_bits(G, before), f"{name}: the result shares memory with G"
    # a sequence input is not modified either
    rows = [g.clone() for g in before]
    run(module, name, rows, **extra)
    assert all(same_bits(r, b) for r, b in zip(rows, before)), f"{name} modified a tensor of its sequence input"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype, rtol", [(torch.float16, 2e-3), (torch.bfloat16, 1.6e-2)], ids=["float16", "bfloat16"])
def test_half_precision(module, name, dtype, rtol):
    G = sample(N, 6, dtype, seed=3)
    out = run(module, name, G)
    want_dtype = torch.float64 if name == "krum_scores" else dtype  # the scores selection ranks
    assert out.dtype == want_dtype, f"{name} on {dtype} returned {out.dtype}"
    expected = run(module, name, G.to(torch.float64))  # the same values, in float64
    assert out.shape == expected.shape
    scale = float(G.abs().max())
    err = (out.to(torch.float64) - expected).abs()
    assert bool((err <= rtol * (scale + expected.abs())).all()), (
        f"{name} on {dtype}: {out.tolist()} far from the float64 result {expected.tolist()}"
    )


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("name", byzagg.RULES)
def test_aggregate_equals_the_direct_call(module, name):
    G = sample(N, 5, torch.float32)
    direct = run(module, name, G)
    by_name = module.aggregate(name, G, **params(name))
    assert same_bits(by_name, direct), f"aggregate({name!r}) differs from {name}()"


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_public_equals_reference(name, dtype):
    # on CPU without the extension the dispatcher runs the reference; with it, the native
    # kernels must agree with the oracle
    G = sample(N, 5, dtype, seed=9)
    out, ref = run(byzagg, name, G), run(R, name, G)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert out.dtype == ref.dtype and out.shape == ref.shape
    assert torch.allclose(out, ref, rtol=tol, atol=tol), f"byzagg.{name} differs from byzagg.reference.{name}"

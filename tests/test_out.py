"""out=: every rule that returns a d-vector writes into a caller's buffer (docs/api.md, "out=").

- the bits of the call without out, written into out, which is returned (the same tensor,
  the same memory), for every rule and sample variant, every dtype, through the dispatcher
  (native where built) and the reference; non-contiguous G and out, sequences of tensors,
  non-finite rows;
- the checks: shape (never resized), dtype, device, memory shared with an input or within
  out, autograd (as torch: no out= with inputs that require grad), aggregate's out=;
- the native out= overloads: registered beside every op that returns a d-vector, torch's
  opcheck on each, their own checks, and torch.compile through them.
Run it under BYZAGG_CPU_ISA=generic/avx2 and BYZAGG_BACKEND=reference for the other paths.
"""

from __future__ import annotations

import math

import pytest
import torch

import byzagg
from byzagg import _ops, _rules

from utils import ALL_DTYPES, MODULES, OP_VARIANTS, call_kwargs, gen, native, op_args, require_native, same_bits

N, D, F = 11, 37, 2
VECTOR_RULES = [rule for rule in byzagg.RULES if _rules.BY_NAME[rule].result == "vector"]


def calls():
    """(id, rule, kwargs(G)): each vector rule with the table's sample call, then the
    variants of utils.OP_VARIANTS for the rules that run those ops."""
    cases = []
    for rule in VECTOR_RULES:
        cases.append((rule, rule, lambda G, rule=rule: call_kwargs(rule, F)))
        for k, variant in enumerate(OP_VARIANTS.get(rule, [])):
            cases.append(
                (f"{rule}-{k}", rule, lambda G, rule=rule, variant=variant: call_kwargs(rule, F, **variant(G, F)))
            )
    return cases


CALLS = calls()
CALL_IDS = [case[0] for case in CALLS]


def matrix(dtype=torch.float32, n=N, d=D, seed=0):
    return torch.randn(n, d, generator=gen(seed), dtype=torch.float64).to(dtype)


def garbage_like(result):
    """A buffer of the result's shape and dtype filled with values no rule returns."""
    return torch.full_like(result, 12345.0)


def check_into(function, G, kwargs, out):
    """function(G, **kwargs, out=out) returns out itself, unmoved, holding the bits of the
    call without out."""
    want = function(G, **kwargs)
    pointer = out.data_ptr()
    got = function(G, **kwargs, out=out)
    assert got is out and out.data_ptr() == pointer
    assert same_bits(out, want), f"out= differs: {out} vs {want}"


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("case", range(len(CALLS)), ids=CALL_IDS)
def test_out_gives_the_same_bits(module, dtype, case):
    _, rule, kwargs = CALLS[case]
    G = matrix(dtype)
    check_into(getattr(module, rule), G, kwargs(G), garbage_like(G[0]))


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("case", range(len(CALLS)), ids=CALL_IDS)
def test_out_with_strided_G_and_out(module, case):
    _, rule, kwargs = CALLS[case]
    G = matrix(torch.float32, n=D, d=N).t()  # (N, D), not contiguous
    assert not G.is_contiguous()
    check_into(getattr(module, rule), G, kwargs(G), torch.full((2 * D,), 7.0)[::2])


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("rule", VECTOR_RULES)
@pytest.mark.parametrize("layout", ["contiguous", "transposed"])
def test_out_with_a_sequence_takes_the_workers_shape(module, rule, layout):
    workers = [torch.randn(3, 5, generator=gen(i)) for i in range(N)]
    out = torch.zeros(3, 5) if layout == "contiguous" else torch.zeros(5, 3).t()
    check_into(getattr(module, rule), workers, call_kwargs(rule, F), out)
    with pytest.raises(ValueError, match=r"out must have the result's shape \(3, 5\), got \(15,\)"):
        getattr(module, rule)(workers, **call_kwargs(rule, F), out=torch.empty(15))


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("rule", VECTOR_RULES)
def test_out_with_non_finite_rows(module, rule):
    G = matrix(torch.float64)
    G[1] = math.nan
    G[4, 3] = math.inf
    check_into(getattr(module, rule), G, call_kwargs(rule, F), torch.empty(D, dtype=torch.float64))


@pytest.mark.parametrize("module", MODULES)
def test_out_reused_every_step(module):
    """The training loop's use: one buffer, a new G every step."""
    out = torch.empty(D)
    for step in range(3):
        G = matrix(seed=step)
        assert module.median(G, out=out) is out
        assert same_bits(out, module.median(G))


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("rule", VECTOR_RULES)
def test_aggregate_takes_out(module, rule):
    G = matrix()
    out = torch.empty(D)
    assert module.aggregate(rule, G, f=F, out=out, **_rules.BY_NAME[rule].sample) is out
    assert same_bits(out, module.aggregate(rule, G, f=F, **_rules.BY_NAME[rule].sample))


@pytest.mark.parametrize("rule", ["nnm", "bucketing"])
def test_the_row_rules_take_no_out(rule):
    with pytest.raises(TypeError, match="takes no out="):
        byzagg.aggregate(rule, matrix(), f=F, out=torch.empty(D), **_rules.BY_NAME[rule].sample)
    with pytest.raises(TypeError, match="out"):
        getattr(byzagg, rule)(matrix(), **call_kwargs(rule, F), out=torch.empty(D))


# ---------------------------------------------------------------------------------------
# Checks


def wrong_outs(G):
    """(id, out, error, message) for the (N, D) matrix G."""
    return [
        ("longer", torch.empty(D + 1), ValueError, r"out must have the result's shape \(37,\), got \(38,\)"),
        ("2-D", torch.empty(1, D), ValueError, r"shape \(37,\), got \(1, 37\) \(out is never resized\)"),
        ("empty", torch.empty(0), ValueError, "out must have the result's shape"),
        ("dtype", torch.empty(D, dtype=torch.float64), TypeError, "G's dtype torch.float32, got torch.float64"),
        ("integer", torch.empty(D, dtype=torch.int32), TypeError, "out must have G's dtype"),
        ("device", torch.empty(D, device="meta"), ValueError, "out must be on G's device cpu, got meta"),
        ("row of G", G[3], ValueError, "out shares memory with an input"),
        ("strided over G", G.view(-1)[::N], ValueError, "out shares memory with an input"),
        ("within G", G.view(-1)[5 : 5 + D], ValueError, "out shares memory with an input"),
        ("expanded", torch.zeros(1).expand(D), ValueError, "out has elements that share memory"),
        ("list", [0.0] * D, TypeError, "out must be a tensor, got list"),
    ]


WRONG_IDS = [case[0] for case in wrong_outs(torch.zeros(N, D))]


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("index", range(len(WRONG_IDS)), ids=WRONG_IDS)
@pytest.mark.parametrize("rule", VECTOR_RULES)
def test_a_wrong_out_is_refused_with_its_reason(module, index, rule):
    G = matrix()
    _, out, error, message = wrong_outs(G)[index]
    before = G.clone()
    with pytest.raises(error, match=message) as raised:
        getattr(module, rule)(G, **call_kwargs(rule, F), out=out)
    assert rule in str(raised.value)
    assert torch.equal(G, before), "G was modified"


@pytest.mark.parametrize("module", MODULES)
def test_out_must_not_overlap_a_sequence_element_or_a_tensor_parameter(module):
    workers = [torch.randn(D, generator=gen(i)) for i in range(N)]
    with pytest.raises(ValueError, match="median: out shares memory"):
        module.median(workers, out=workers[2])
    G = matrix()
    center = torch.zeros(D)
    with pytest.raises(ValueError, match="centered_clipping: out shares memory"):
        module.centered_clipping(G, 1.0, center=center, out=center)
    out = torch.ones(D)
    with pytest.raises(ValueError, match="geometric_median: out shares memory"):
        module.geometric_median(G, weights=out[:N], out=out)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("rule", VECTOR_RULES)
def test_out_refuses_autograd_as_torch_does(module, rule):
    G = matrix().requires_grad_(True)
    message = rf"{rule}\(\): functions with out=\.\.\. arguments don't support automatic differentiation"
    with pytest.raises(RuntimeError, match=message):
        getattr(module, rule)(G, **call_kwargs(rule, F), out=torch.empty(D))
    with torch.no_grad():  # outside autograd it is a plain call
        check_into(getattr(module, rule), G, call_kwargs(rule, F), torch.empty(D))


def test_out_refuses_an_out_that_requires_grad():
    with pytest.raises(RuntimeError, match="don't support automatic differentiation"):
        byzagg.median(matrix(), out=torch.empty(D, requires_grad=True))


# ---------------------------------------------------------------------------------------
# The native out= overloads


def test_every_native_vector_op_has_an_out_overload():
    require_native("cpu")
    vector_ops = {_rules.BY_NAME[rule].op for rule in VECTOR_RULES} & set(_ops.native_ops("cpu"))
    assert set(_ops.OUT_OPS) == vector_ops
    for op in vector_ops:
        schema = str(getattr(torch.ops.byzagg, op).out._schema)
        assert schema.endswith("*, Tensor(a!) out) -> ()"), schema


NATIVE_OUT_OPS = sorted({_rules.BY_NAME[rule].op for rule in VECTOR_RULES} - {"average"})


@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
@pytest.mark.parametrize("op", NATIVE_OUT_OPS)
def test_native_out_overload_writes_in_place(op, dtype):
    overload = native(op).out
    G = matrix(dtype)
    args = op_args(op, G, F)
    out = torch.full((D,), 3.0, dtype=dtype)
    pointer = out.data_ptr()
    assert overload(G, *args, out=out) is None
    assert out.data_ptr() == pointer
    assert same_bits(out, getattr(torch.ops.byzagg, op)(G, *args))
    strided = torch.zeros(2 * D, dtype=dtype)[::2]
    overload(G, *args, out=strided)
    assert same_bits(strided.contiguous(), out)


@pytest.mark.parametrize("op", NATIVE_OUT_OPS)
def test_native_out_overload_checks_out(op):
    overload = native(op).out
    G = matrix()
    args = op_args(op, G, F)
    for out, message in [
        (torch.empty(D + 1), rf"{op}: out must have shape \(37,\), got \[38\]"),
        (torch.empty(D, dtype=torch.float64), f"{op}: out must have G's dtype Float, got Double"),
        (G[2], "unsupported operation: some elements of the input tensor and the written-to tensor"),
        (torch.zeros(1).expand(D), "unsupported operation: more than one element of the written-to tensor"),
    ]:
        with pytest.raises(RuntimeError, match=message):
            overload(G, *args, out=out)


@pytest.mark.parametrize("op", NATIVE_OUT_OPS)
def test_opcheck_on_out_overloads(op):
    overload = native(op).out
    G = matrix()
    torch.library.opcheck(overload, (G, *op_args(op, G, F)), {"out": torch.empty(D)})


@pytest.mark.parametrize("rule", ["median", "krum", "geometric_median", "average"])
def test_compiled_out_matches_eager(rule):
    require_native("cpu")
    torch._dynamo.reset()
    kwargs = call_kwargs(rule, F)

    def step(X, buffer):
        getattr(byzagg, rule)(X, **kwargs, out=buffer)
        return buffer * 2

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    G = matrix()
    got_buffer, want_buffer = torch.empty(D), torch.empty(D)
    got = compiled(G, got_buffer)
    want = step(G, want_buffer)
    assert same_bits(got, want) and same_bits(got_buffer, want_buffer)

"""The rule table (byzagg/_rules.py) against the tests' independent copies of the contract
and against the sample generator of utils.py: the copies kept on purpose (the definitions,
the non-finite cases) must not drift from the table, and the generator must call each op as
the public function does."""

from __future__ import annotations

import pytest
import torch

import byzagg
from byzagg import _ops, _rules

import definitions as D
from utils import (
    NATIVE_OPS,
    OP_VARIANTS,
    RULE_CASE_RULE,
    RULE_CASES,
    WITHOUT_NATIVE_OP,
    call_kwargs,
    gen,
    largest_f,
    op_args,
    op_parameters,
    op_samples,
    require_native,
    same_bits,
)


def test_every_function_has_a_plain_definition():
    # the geometric median is defined by its minimum (the contract is the objective's value)
    definition = {"geometric_median": "geometric_median_minimum"}
    missing = [name for name in _rules.BY_NAME if not callable(getattr(D, definition.get(name, name), None))]
    assert not missing, f"tests/definitions.py has no definition of {missing}"


def test_the_non_finite_cases_cover_every_rule_with_the_tables_least_n():
    """utils.RULE_CASES: every rule but average and bucketing (test_nonfinite.py has their own
    tests: they propagate), at the least n of the table for the rules with f."""
    called = {RULE_CASE_RULE.get(case, case) for case in RULE_CASES}
    assert called <= set(byzagg.RULES)
    assert called == set(byzagg.RULES) - {"average", "bucketing"}
    for case, (least_n, _, _) in RULE_CASES.items():
        rule = RULE_CASE_RULE.get(case, case)
        for f in range(5):
            if rule in _rules.RULES_WITH_F:
                assert least_n(f) == _rules.least_n(rule, f), (case, f)
            else:  # f: the bad rows a rule without f tolerates, n > 2f
                assert least_n(f) == 2 * f + 1, (case, f)


def test_the_ops_without_a_native_kernel():
    require_native("cpu")
    assert set(_rules.OPS) - set(_ops.native_ops("cpu")) == WITHOUT_NATIVE_OP


def test_op_samples_cover_every_native_op():
    samples = op_samples(torch.zeros(11, 5), 2)
    assert {op for op, _ in samples} == set(NATIVE_OPS)
    assert set(OP_VARIANTS) <= set(NATIVE_OPS), "a variant of an op that has no sample"


def _schema_arguments(op):
    return getattr(torch.ops.byzagg, op).default._schema.arguments[1:]


@pytest.mark.parametrize("op", NATIVE_OPS)
def test_op_args_call_the_op_as_the_public_function_does(op):
    """The op called with op_args(op, G) gives the bits of byzagg.<op>(G, **call_kwargs(op, f)),
    and the op's schema names the public function's parameters, in order."""
    require_native("cpu")
    names = [argument.name for argument in _schema_arguments(op)]
    assert names == [p.name for p in op_parameters(op)]
    G = torch.randn(9, 6, generator=gen(3))
    f = largest_f(op, 9)
    assert same_bits(getattr(torch.ops.byzagg, op)(G, *op_args(op, G)), getattr(byzagg, op)(G, **call_kwargs(op, f)))

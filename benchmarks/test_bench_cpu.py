"""CPU scaling benchmarks of byzagg's rules against their baselines, reference and peers.

Cases (see conftest.py): point (n, d) x {baselines, rule x implementation}, where the
implementations are byzagg (native where built), byzagg.reference (plain PyTorch), and
ByzFL's aggregator when `benchmarks/peers.py` can import it (torchvision is stubbed there,
see its docstring). f = n // 4; geometric_median runs exactly GM_ITERS iterations (tol=0);
centered_clipping runs with iters 1 and 3. Before a byzagg case is timed its result is
compared with byzagg.reference on the same tensor (on its first columns only when the
reference would be too slow on all of them: extra_info["checked_columns"]).

Timing: pedantic mode, one warm-up call, rounds chosen from a probe call (3 rounds above
0.2 s, one round after the probe above 2 s, more for fast calls, several iterations per
round below 1 ms). The report uses
the minimum. Reference, peer and torch.median / cdist cases whose estimated time per
call exceeds SLOW_LIMIT_S (20 s on the full grid, 5 s on the quick grid) are skipped, and so is every case of a point with
n * d * 4 bytes over 4 GB.
"""

from __future__ import annotations

import time

import pytest
import torch

import byzagg
import byzagg.reference as reference
from byzagg import _ops
from conftest import (
    BYZFL_RULES,
    MEMORY_CAP_BYTES,
    NATIVE_LIMIT_S,
    RULE_BY_KEY,
    SLOW_LIMIT_S,
    estimate_s,
    f_of,
    matrix,
    params_of,
    skip,
    valid,
)


def _call(impl, rule, G, params):
    if rule.name == "bucketing":
        params = dict(params, generator=torch.Generator().manual_seed(0))
    return impl(G, **params)


def _implementation(kind, rule):
    if kind == "byzagg":
        return getattr(byzagg, rule.name)
    if kind == "reference":
        return getattr(reference, rule.name)
    return BYZFL_RULES[rule.name]


def _baseline(name, G):
    return {
        "sum": lambda: G.sum(0),
        "gram": lambda: G @ G.T,
        "torch_median": lambda: torch.median(G, 0),
        "cdist": lambda: torch.cdist(G, G),
    }[name]


def _check_against_reference(rule, G, params, est_ref_full):
    """byzagg vs reference on G (or its first columns when the reference is slow)."""
    n, d = G.shape
    cols = d
    while cols > 16 and est_ref_full * cols / d > 1.0:
        cols //= 4
    Gc = G[:, :cols].contiguous() if cols < d else G
    got = _call(getattr(byzagg, rule.name), rule, Gc, params)
    want = _call(getattr(reference, rule.name), rule, Gc, params)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, equal_nan=True, msg=lambda m: f"{rule.key}: {m}")
    return cols


def _timed(benchmark, fn):
    t0 = time.perf_counter()
    fn()  # probe (and first warm-up)
    t = time.perf_counter() - t0
    if t > 2.0:  # slow calls: the probe was the warm-up; one timed round
        benchmark.pedantic(fn, rounds=1, warmup_rounds=0, iterations=1)
        return
    iterations = 1 if t >= 1e-3 else max(1, int(2e-3 / max(t, 1e-7)))
    rounds = 3 if t > 0.2 else min(30, max(3, int(0.6 / max(t * iterations, 1e-7))))
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=iterations)


@pytest.fixture
def isa_cap(case, monkeypatch):
    """BYZAGG_CPU_ISA for the case (read by the native kernels at every call)."""
    if case.isa:
        monkeypatch.setenv("BYZAGG_CPU_ISA", case.isa)
    return case.isa


def test_bench(benchmark, case, request, isa_cap):
    n, d = case.n, case.d
    info = benchmark.extra_info
    info.update(n=n, d=d, kind=case.kind, what=case.what, rep=case.rep, threads=torch.get_num_threads())
    if isa_cap:
        info["isa_cap"] = isa_cap
        assert _ops.cpu_isa() == isa_cap, f"BYZAGG_CPU_ISA={isa_cap} not taken: {_ops.cpu_isa()}"
    benchmark.group = f"n={n} d={d:g}"
    if n * d * 4 > MEMORY_CAP_BYTES:
        skip(case, f"memory cap: n*d*4 = {n * d * 4 / 1e9:.1f} GB > {MEMORY_CAP_BYTES / 1e9:g} GB")

    slow_limit = SLOW_LIMIT_S[request.config.getoption("--bench-grid")]
    if case.kind == "baseline":
        est = estimate_s("baseline", case.what, n, d)
        limit = NATIVE_LIMIT_S if case.what in ("sum", "gram") else slow_limit
        if est > limit:
            skip(case, f"estimated {est:.0f} s per call > {limit:g} s")
        G = matrix(n, d)
        info.update(family="baseline", iters=1, estimate_s=est)
        _timed(benchmark, _baseline(case.what, G))
        return

    rule = RULE_BY_KEY[case.what]
    why = valid(rule, n)
    if why:
        skip(case, why)
    est = estimate_s(case.kind, rule, n, d)
    limit = NATIVE_LIMIT_S if case.kind == "byzagg" else slow_limit
    if est > limit:
        skip(case, f"estimated {est:.0f} s per call > {limit:g} s")
    G = matrix(n, d)
    params = params_of(rule, n, d)
    info.update(family=rule.family, rule=rule.name, iters=rule.iters, f=f_of(n), estimate_s=est,
                params={k: v for k, v in params.items() if not isinstance(v, torch.Generator)})
    impl = _implementation(case.kind, rule)

    if case.kind == "byzagg":
        info["checked_columns"] = _check_against_reference(rule, G, params, estimate_s("reference", rule, n, d))
    elif case.kind == "byzfl":
        # not asserted: the peers' definitions differ in places (peers.py); recorded only
        try:
            ours = _call(getattr(byzagg, rule.name), rule, G, params)
            theirs = impl(G, **params)
            info["byzfl_max_abs_diff"] = float((ours.double() - theirs.double()).abs().max())
        except Exception as exc:  # pragma: no cover
            info["byzfl_error"] = repr(exc)

    _timed(benchmark, lambda: _call(impl, rule, G, params))

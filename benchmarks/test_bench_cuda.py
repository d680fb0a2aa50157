"""GPU benchmarks: byzagg's CUDA kernels against the baselines of the same run.

    python -m pytest benchmarks/test_bench_cuda.py --benchmark-json benchmarks/results/gpu-raw.json
    python benchmarks/report_cuda.py benchmarks/results/gpu-raw.json

Every case is skipped without a GPU. Points: n in {11, 25, 51, 101, 256, 1024} x d in
{1e5, 1e6, 1e7, 1e8}, skipped where G would take more than GPU_MEMORY_FRACTION of the
device's memory. Per point, in one run: one read of G (`G.sum(0)`), the cuBLAS Gram product
`G @ G.T`, `torch.median(G, 0)`, `torch.cdist(G, G)`, then each rule by byzagg (native
CUDA) and by byzagg.reference on CUDA (skipped where estimated too slow). Before timing,
byzagg's result is compared with the reference's (on the first columns when the reference
is slow).

Timing: CUDA events around each call on the current stream, after warm-up calls; the
median of the event times goes to extra_info["cuda_ms"] (pytest-benchmark's own wall-clock
figures include a synchronisation per call). Ratios are formed by report_cuda.py.
"""

from __future__ import annotations

import math
import statistics

import pytest
import torch

import byzagg
import byzagg.reference as reference
from conftest import RULES, f_of, params_of, valid

NS = (11, 25, 51, 101, 256, 1024)
DS = (10**5, 10**6, 10**7, 10**8)
GPU_MEMORY_FRACTION = 0.3
REFERENCE_LIMIT_MS = 2000.0  # skip reference cases estimated slower than this
BASELINES = ("sum", "gram", "torch_median", "cdist")
CUDA_RULES = [rule for rule in RULES if rule.name not in ("bucketing", "mda")]  # mda: reference only on CUDA

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
pytestmark = needs_gpu

_POINT: dict = {}


def gpu_matrix(n: int, d: int) -> torch.Tensor:
    key = (n, d)
    if key not in _POINT:
        _POINT.clear()
        torch.cuda.empty_cache()
        gen = torch.Generator(device="cuda").manual_seed(1000 * n + int(math.log10(d) * 10))
        G = torch.randn(n, d, generator=gen, device="cuda", dtype=torch.float32)
        f = f_of(n)
        if f:
            G[:f] += 10.0  # f shifted ("Byzantine") rows
        _POINT[key] = G
    return _POINT[key]


def fits(n: int, d: int) -> bool:
    total = torch.cuda.get_device_properties(0).total_memory
    return n * d * 4 <= GPU_MEMORY_FRACTION * total


def cuda_time_ms(fn, repeats: int | None = None) -> list[float]:
    """Per-call times from CUDA events, after two warm-up calls."""
    fn()
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    first = start.elapsed_time(end)
    repeats = repeats or max(3, min(50, int(200.0 / max(first, 1e-3))))
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times


def _points():
    return [(n, d) for n in NS for d in DS]


def _cases():
    cases = []
    for n, d in _points():
        for name in BASELINES:
            cases.append(pytest.param(n, d, "baseline", name, id=f"n{n}-d{d:g}-baseline-{name}"))
        for rule in CUDA_RULES:
            for kind in ("byzagg", "reference"):
                cases.append(pytest.param(n, d, kind, rule.key, id=f"n{n}-d{d:g}-{kind}-{rule.key}"))
    return cases


def _record(benchmark, fn, info):
    times = cuda_time_ms(fn)
    info.update(cuda_ms=statistics.median(times), cuda_ms_min=min(times), repeats=len(times))

    def synchronised():
        fn()
        torch.cuda.synchronize()

    benchmark.pedantic(synchronised, rounds=3, warmup_rounds=1, iterations=1)


@pytest.mark.parametrize("n, d, kind, what", _cases())
def test_bench_cuda(benchmark, n, d, kind, what):
    if not fits(n, d):
        pytest.skip(f"G of {n * d * 4 / 1e9:.1f} GB exceeds {GPU_MEMORY_FRACTION:g} of the GPU's memory")
    info = benchmark.extra_info
    info.update(n=n, d=d, kind=kind, what=what, device=torch.cuda.get_device_name(0), torch=torch.__version__,
                cuda=torch.version.cuda, backend=byzagg.backend("cuda"))
    benchmark.group = f"n={n} d={d:g}"
    G = gpu_matrix(n, d)
    if kind == "baseline":
        if what == "torch_median" and n * d > 2e9:
            pytest.skip("torch.median: too slow at this size")
        fn = {
            "sum": lambda: G.sum(0),
            "gram": lambda: G @ G.T,
            "torch_median": lambda: torch.median(G, 0),
            "cdist": lambda: torch.cdist(G, G),
        }[what]
        info.update(family="baseline", iters=1)
        _record(benchmark, fn, info)
        return
    rule = next(r for r in CUDA_RULES if r.key == what)
    why = valid(rule, n)
    if why:
        pytest.skip(why)
    params = params_of(rule, n, d)
    info.update(family=rule.family, rule=rule.name, iters=rule.iters, f=f_of(n), params=params)
    impl = getattr(byzagg if kind == "byzagg" else reference, rule.name)
    if kind == "reference":
        # the reference loops over rows in Python for the distance rules: estimate from a slice
        cols = min(d, 10**5)
        times = cuda_time_ms(lambda: impl(G[:, :cols], **params), repeats=1)
        estimate = times[0] * d / cols
        if estimate > REFERENCE_LIMIT_MS:
            pytest.skip(f"reference estimated {estimate:.0f} ms per call")
    else:
        cols = min(d, 10**6)
        Gc = G[:, :cols]
        torch.testing.assert_close(impl(Gc, **params), getattr(reference, rule.name)(Gc, **params), rtol=1e-4,
                                   atol=1e-4, equal_nan=True)
        info["checked_columns"] = cols
    _record(benchmark, lambda: impl(G, **params), info)

"""Benchmark grid, shared tensors and skip bookkeeping for benchmarks/test_bench_cpu.py.

Run only when named (pyproject's testpaths is ["tests"]):

    python -m pytest benchmarks --bench-grid quick --benchmark-json benchmarks/results/cpu-quick.json

Threads are pinned to 2 (torch.set_num_threads(2)) at import, before any tensor is made.
Every case of one point (n, d) runs next to the baselines of that point: `G.sum(0)` and
`G @ G.T` first and again last (the report takes the lower of the two), then
`torch.median(G, 0)` and `torch.cdist(G, G)`, then every rule x implementation.
Skipped cases (with the reason) are written into the benchmark JSON under "byzagg".
"""

from __future__ import annotations

import math
import os
import platform
from dataclasses import dataclass, field

import pytest
import torch

THREADS = int(os.environ.get("BYZAGG_BENCH_THREADS", "2"))
torch.set_num_threads(THREADS)

import byzagg  # noqa: E402
from byzagg import _ops  # noqa: E402
from byzagg import _rules as _rules_table  # noqa: E402

try:  # sibling module; benchmarks/ is on sys.path through rootdir-relative conftest import
    import peers  # noqa: E402
except ImportError:  # pragma: no cover
    from benchmarks import peers  # noqa: E402

MEMORY_CAP_BYTES = 4e9  # full grid: skip points where n * d * 4 bytes > 4 GB
# reference / peer / torch.median / cdist: skip when one call would take longer (estimated);
# the quick grid uses a lower limit so that it stays a few minutes long
SLOW_LIMIT_S = {"quick": 5.0, "full": 20.0, "linear": 5.0}
NATIVE_LIMIT_S = 120.0  # byzagg and the two anchor baselines: only to keep the grid finite
GM_ITERS = 10  # geometric_median: max_iter fixed, tol = 0 -> exactly GM_ITERS iterations
SKIPS: list[dict] = []

# long columns (issue 21): the coordinate-wise rules at n = 101, d = 1e6 and n = 1001,
# d = 1e5, beside the two baselines they are judged against (quick grid: these rules only)
LONG_COLUMNS = {(101, 10**6), (1001, 10**5)}
# rules also run on each lesser vector path this CPU has (BYZAGG_CPU_ISA set for the case):
# at the target point, and the coordinate-wise ones at the long-column points
CW_RULES = ("median", "trimmed_mean", "meamed", "phocas")
ISA_RULES = CW_RULES + ("pairwise_distances", "krum")
TARGET_POINT = (51, 10**6)

GRIDS = {
    # the target point, an n sweep at d = 1e5, a d sweep at n = 11 and the long columns
    "quick": sorted(
        {TARGET_POINT}
        | {(n, 10**5) for n in (5, 11, 51, 101)}
        | {(11, d) for d in (10**4, 10**5, 10**6, 3 * 10**6, 10**7)}
        | LONG_COLUMNS
    ),
    # the grid: n from 5 to 1001, d from 1e3 to 1e7 (and 2.5e7 at n = 11)
    "full": sorted(
        {(n, d) for n in (5, 11, 51, 101, 251, 501, 1001) for d in (10**3, 10**4, 10**5, 10**6, 10**7)}
        | {(11, 3 * 10**6)}
        | {(11, 25 * 10**6)}
    ),
    # the d sweep for the linear-in-d fit, n = 11, from G about the size of the L3 cache
    # (44 MB) to 1.1 GB; meant to be run with the allocator held warm (benchmarks/README.md)
    "linear": sorted({(11, d) for d in (10**6, 3 * 10**6, 6 * 10**6, 10**7, 25 * 10**6)}),
}


def pytest_addoption(parser):
    group = parser.getgroup("byzagg benchmarks")
    group.addoption(
        "--bench-grid",
        choices=sorted(GRIDS),
        default="quick",
        help="quick: target point n=51,d=1e6 plus small n and d sweeps (minutes); full: the issue's grid",
    )
    group.addoption(
        "--bench-only",
        default="",
        help="comma-separated rule names to keep (baselines always run)",
    )


# ----------------------------------------------------------------------------------------
# Rules and implementations.


@dataclass(frozen=True)
class Rule:
    key: str  # name in results (centered_clipping_3, ...)
    name: str  # byzagg function
    family: str  # plot family
    params: dict = field(default_factory=dict)  # may hold the placeholders "f", "tau"
    iters: int = 1  # time / iters = time per iteration
    native: str | None = None  # op that must be native for the reference to be a distinct implementation


# Plot family of each family of the rule table.
FAMILY_LABELS = {"averaging": "averaging", "coordinate": "coordinate-wise", "distance": "distance-based",
                 "iterative": "iterative"}
# Parameters of the benchmarked calls, beside the table's samples ("f" and "tau" are
# placeholders filled per point); centered clipping is measured at 1 and 3 iterations.
BENCH_PARAMS = {
    "geometric_median": [("geometric_median", {"max_iter": GM_ITERS, "tol": 0.0}, GM_ITERS)],
    "centered_clipping": [
        ("centered_clipping_1", {"tau": "tau", "iters": 1}, 1),
        ("centered_clipping_3", {"tau": "tau", "iters": 3}, 3),
    ],
    "krum": [("krum", {}, 1)],
}


def _rules():
    rules = []
    for entry in _rules_table.TABLE:
        f = {"f": "f"} if entry.requirement is not None else {}
        sample = {**entry.sample, **f}
        for key, params, iters in BENCH_PARAMS.get(entry.name, [(entry.name, sample, 1)]):
            rules.append(Rule(key, entry.name, FAMILY_LABELS[entry.family], {**f, **params}, iters, native=entry.op))
    return rules


RULES = _rules()
BYZFL_RULES = peers.byzfl_rules()
BASELINES = ["sum", "gram", "torch_median", "cdist"]


def native_ops():
    return set(_ops.native_ops("cpu")) if _ops.NATIVE_LOADED else set()


def f_of(n):
    return n // 4


def params_of(rule: Rule, n: int, d: int) -> dict:
    out = {}
    for k, v in rule.params.items():
        if v == "f":
            v = f_of(n)
        elif v == "tau":
            v = math.sqrt(d)  # rows are ~N(0, 1): norms ~ sqrt(d), so clipping is active
        out[k] = v
    return out


def valid(rule: Rule, n: int) -> str | None:
    """Why the rule is undefined at n with f = n // 4, or None."""
    f = f_of(n)
    if rule.name in ("trimmed_mean", "meamed", "phocas", "nnm", "mda", "krum", "multi_krum") and not n > 2 * f:
        return "needs n > 2f"
    if rule.name in ("krum", "multi_krum", "krum_scores") and n - f - 2 < 1:
        return "needs n - f - 2 >= 1"
    if rule.name == "bulyan" and n < 4 * f + 3:
        return f"bulyan needs n >= 4f + 3 (n={n}, f={f})"
    if rule.name == "mda" and math.comb(n, f) > byzagg.MDA_MAX_SUBSETS:
        return f"mda needs C(n, f) <= {byzagg.MDA_MAX_SUBSETS}: C({n}, {f}) = {math.comb(n, f):.3g}"
    return None


# ----------------------------------------------------------------------------------------
# Rough cost model (seconds for one call, 2 threads, this machine) to skip hopeless cases.
# Calibrated at n = 51, d = 1e6: reference median 4.3 s, reference krum 73 s (exact float64
# distances, a Python loop over rows), torch.median 2 s, torch.cdist 1.5 s, G @ G.T 0.26 s.


def estimate_s(kind: str, rule: Rule | None, n: int, d: int) -> float:
    N, Q = n * d, n * n * d
    lg = max(1.0, math.log2(max(n, 2)) / math.log2(51))
    if kind == "baseline":
        return {"sum": 1.5e-9 * N, "gram": 1.2e-10 * Q, "torch_median": 4e-8 * N * lg, "cdist": 6e-10 * Q}[rule]
    name = rule.name
    if kind == "byzagg":
        if name == "mda" or name in ("average", "bucketing"):
            return estimate_s("reference", rule, n, d)
        base = 3e-9 * N
        if rule.family == "distance-based":
            base += 1.5e-10 * Q
        return base * rule.iters
    if kind == "reference":
        if name in ("average", "bucketing"):
            return 3e-9 * N
        if rule.family == "coordinate-wise":
            return 1e-7 * N * lg
        if rule.family == "distance-based":
            t = 3e-8 * Q
            if name == "bulyan":
                t += 1e-7 * N * lg
            if name == "mda":
                t += 1e-7 * math.comb(n, f_of(n)) * (n - f_of(n)) ** 2 / 64
            return t
        return 3e-8 * N * (rule.iters + 1)
    if kind == "byzfl":
        if name in ("krum", "multi_krum"):
            return 1e-9 * Q + 3e-9 * N
        if name == "median":
            return 4e-8 * N * lg
        if name in ("trimmed_mean", "meamed"):
            return 1.2e-7 * N * lg
        return 6e-9 * N * rule.iters
    raise ValueError(kind)


# ----------------------------------------------------------------------------------------
# Cases.


@dataclass(frozen=True)
class Case:
    n: int
    d: int
    kind: str  # "baseline" | "byzagg" | "reference" | "byzfl"
    what: str  # baseline name or rule key
    rep: int = 0  # baselines sum/gram run twice per point (0: first, 1: last)
    isa: str = ""  # byzagg cases: BYZAGG_CPU_ISA for the call ("" = the best this CPU runs)

    @property
    def id(self):
        rep = f"-r{self.rep}" if self.kind == "baseline" and self.what in ("sum", "gram") else ""
        isa = f"-{self.isa}" if self.isa else ""
        return f"n{self.n}-d{self.d:.0e}-{self.what}-{self.kind}{isa}{rep}".replace("+0", "")


def lesser_isas() -> list[str]:
    """The vector paths below the best this CPU runs (avx2 and generic on an AVX-512 CPU,
    generic on an AVX2 one): what BYZAGG_CPU_ISA can select here; none without the native
    kernels."""
    saved = os.environ.pop("BYZAGG_CPU_ISA", None)
    try:
        best = _ops.cpu_isa()
    finally:
        if saved is not None:
            os.environ["BYZAGG_CPU_ISA"] = saved
    order = ["generic", "avx2", "avx512"]
    return order[: order.index(best)] if best in order else []


def cases_for(grid: str, only: set[str]) -> list[Case]:
    natives = native_ops()
    isas = lesser_isas()
    out = []
    for n, d in GRIDS[grid]:
        long = grid == "quick" and (n, d) in LONG_COLUMNS
        # long columns: judged against one read of G and torch.median only
        anchors = ("sum",) if long else ("sum", "gram")
        pt = [Case(n, d, "baseline", b, 0) for b in anchors]
        pt += [Case(n, d, "baseline", b) for b in ("torch_median",) + (() if long else ("cdist",))]
        for rule in RULES:
            if only and rule.key not in only and rule.name not in only:
                continue
            if long and rule.key not in CW_RULES:
                continue
            pt.append(Case(n, d, "byzagg", rule.key))
            if grid == "quick" and rule.native in natives and (
                long or ((n, d) == TARGET_POINT and rule.key in ISA_RULES)
            ):  # (at the long-column points only the coordinate-wise rules are left)
                pt += [Case(n, d, "byzagg", rule.key, isa=isa) for isa in isas]
            # reference as a separate implementation only where byzagg has a native kernel
            pt.append(Case(n, d, "reference", rule.key) if rule.native in natives else None)
            if rule.name in BYZFL_RULES:
                pt.append(Case(n, d, "byzfl", rule.key))
        pt += [Case(n, d, "baseline", b, 1) for b in anchors]
        out += [c for c in pt if c is not None]
    return out


RULE_BY_KEY = {r.key: r for r in RULES}


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        grid = metafunc.config.getoption("--bench-grid")
        only = {s.strip() for s in metafunc.config.getoption("--bench-only").split(",") if s.strip()}
        cases = cases_for(grid, only)
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


# ----------------------------------------------------------------------------------------
# The matrix of one point, kept while the point's cases run (one at a time in memory).

_G_CACHE: dict = {}


def matrix(n: int, d: int) -> torch.Tensor:
    key = (n, d)
    if key not in _G_CACHE:
        _G_CACHE.clear()
        gen = torch.Generator().manual_seed(1000 * n + int(math.log10(d) * 10))
        G = torch.randn(n, d, generator=gen, dtype=torch.float32)
        f = f_of(n)
        if f:
            G[:f] += 10.0  # f shifted ("Byzantine") rows
        _G_CACHE[key] = G
    return _G_CACHE[key]


def skip(case: Case, reason: str):
    SKIPS.append({"n": case.n, "d": case.d, "kind": case.kind, "what": case.what, "reason": reason})
    pytest.skip(reason)


def l3_cache_bytes() -> int | None:
    """Size of the L3 cache of CPU 0 from sysfs (Linux), or None."""
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as fh:
            text = fh.read().strip()
    except OSError:
        return None
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:].upper(), 1)
    digits = text[:-1] if text[-1:].upper() in "KMG" else text
    return int(digits) * scale if digits.isdigit() else None


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["byzagg"] = {
        "grid": config.getoption("--bench-grid"),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "backend": byzagg.backend(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "byzfl": peers.BYZFL_VERSION,
        "byzfl_error": peers.BYZFL_ERROR,
        "torchvision_stubbed": peers.TORCHVISION_STUBBED,
        "gm_iters": GM_ITERS,
        "slow_limit_s": SLOW_LIMIT_S[config.getoption("--bench-grid")],
        "memory_cap_bytes": MEMORY_CAP_BYTES,
        "l3_cache_bytes": l3_cache_bytes(),
        # allocator settings that change what a fresh output costs (first-touch page faults)
        "env": {k: os.environ[k] for k in ("GLIBC_TUNABLES", "THP_MEM_ALLOC_ENABLE", "LD_PRELOAD") if k in os.environ},
        "skips": SKIPS,
    }

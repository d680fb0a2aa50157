"""The same answer on every CPU: each native op gives identical bits whatever vector ISA
its kernels run (BYZAGG_CPU_ISA = generic, avx2, avx512, as far as this CPU has them).

Every rule is computed in one subprocess per ISA on the same inputs (random rows of
several shapes so that every vector tail and several chunks are walked, near-duplicate
rows whose Krum scores differ only in the last bits, two equal clusters, huge and tiny
values, non-finite rows) and the results are compared bit for bit. An AVX-512 machine
thus checks what an AVX2-only or an ARM machine computes.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from byzagg import _ops

ISAS = ("generic", "avx2", "avx512")

SCRIPT = r"""
import math, sys, torch, byzagg

def cases():
    g = torch.Generator().manual_seed(11)
    for n, d in ((5, 1), (7, 15), (9, 17), (11, 33), (23, 2049 + 7), (13, 5000), (40, 301), (70, 45)):
        yield f"randn {n}x{d}", torch.randn(n, d, generator=g, dtype=torch.float64)
    # near-duplicates: scores equal in float32, different in float64 (issue 12's case)
    base = torch.randn(1, 333, generator=g, dtype=torch.float64)
    X = base.repeat(14, 1) + 1e-7 * torch.randn(14, 333, generator=g, dtype=torch.float64)
    X[10:] = 50 * torch.randn(4, 333, generator=g, dtype=torch.float64)
    yield "near-duplicates", X
    # two equal clusters (structural ties)
    a, b = torch.randn(1, 101, generator=g, dtype=torch.float64), torch.randn(1, 101, generator=g, dtype=torch.float64)
    yield "two clusters", torch.cat([a.repeat(6, 1), b.repeat(6, 1), torch.randn(3, 101, generator=g, dtype=torch.float64)])
    X = torch.randn(15, 257, generator=g, dtype=torch.float64)
    X[0] *= 1e30
    X[1] *= 1e-30
    yield "huge and tiny", X
    X = torch.randn(15, 130, generator=g, dtype=torch.float64)
    X[2, 7] = math.nan
    X[5, :3] = math.inf
    X[9, 100] = -math.inf
    yield "non-finite", X

out = {}
for name, X in cases():
    n = X.shape[0]
    f = max(0, (n - 3) // 4)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        G = X.to(dtype)
        key = (name, str(dtype))
        ops = torch.ops.byzagg
        out[key + ("pairwise_distances",)] = ops.pairwise_distances(G, True)
        out[key + ("median",)] = ops.median(G)
        for rule in ("trimmed_mean", "meamed", "phocas", "nnm"):
            out[key + (rule,)] = getattr(ops, rule)(G, f)
        kf = (n - 3) // 2
        out[key + ("krum_scores",)] = ops.krum_scores(G, kf)
        for m in (1, 2, n - kf):
            out[key + ("krum", m)] = ops.krum(G, kf, m)
        out[key + ("bulyan",)] = ops.bulyan(G, f)
        out[key + ("medoid",)] = ops.medoid(G)
        if math.comb(n, f) <= 5000:
            out[key + ("mda",)] = ops.mda(G, f)
        out[key + ("centered_clipping",)] = ops.centered_clipping(G, 1.0, 3, None)
        out[key + ("brsgd",)] = ops.brsgd(G, 0.5, math.inf)
        if dtype != torch.bfloat16:
            out[key + ("geometric_median",)] = ops.geometric_median(G, None, 1e-8, 30, 1e-7)
out["isa"] = torch.ops.byzagg.cpu_isa()
torch.save(out, sys.argv[1])
print("ok")
"""


def isas_here() -> list[str]:
    best = _ops.cpu_isa()
    return list(ISAS[: ISAS.index(best) + 1]) if best else []


def results_on_each_isa(script: str, tmp_path) -> tuple[list[str], dict]:
    """The ISAs this CPU runs (skips below two) and, per ISA, what `script` saved when run
    in a subprocess under BYZAGG_CPU_ISA = that ISA."""
    if not _ops.NATIVE_LOADED:
        pytest.skip(f"no native kernels: {_ops.LOAD_STATUS}")
    names = isas_here()
    if len(names) < 2:
        pytest.skip(f"this CPU runs only the {names} path")
    results = {}
    for isa in names:
        path = tmp_path / f"{isa}.pt"
        env = dict(os.environ, BYZAGG_CPU_ISA=isa)
        run = subprocess.run([sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True,
                             timeout=600)
        assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-3000:]
        results[isa] = torch.load(path)
        assert results[isa].pop("isa") == isa
    return names, results


def test_every_op_same_bits_on_every_isa(tmp_path):
    names, results = results_on_each_isa(SCRIPT, tmp_path)
    first = names[0]
    assert len(results[first]) > 300
    for isa in names[1:]:
        assert results[isa].keys() == results[first].keys()
        for key, want in results[first].items():
            got = results[isa][key]
            same = (got == want) | (torch.isnan(got) & torch.isnan(want))
            assert got.dtype == want.dtype and bool(same.all()), f"{isa} differs from {first} at {key}"


ZEROS_SCRIPT = r"""
import sys, torch, byzagg

# Columns of many ties: signed zeros, small integers, infinities and NaN. The vector paths
# (AVX-512, AVX2 and the portable vector extensions) use the same compare-exchange
# (min = a < b ? a : b, max = a > b ? a : b), so they agree even on a zero's sign.
g = torch.Generator().manual_seed(5)
values = torch.tensor([-0.0, 0.0, -0.0, 0.0, 1.0, -1.0, 2.0, float("inf"), float("-inf"), float("nan")],
                      dtype=torch.float64)
out = {}
for n in (2, 5, 8, 17, 51, 64, 65, 100):
    d = 8 * 16 + 5  # every vector width's blocks, and a tail for the scalar path
    X = values[torch.randint(0, 7, (n, d), generator=g)]
    X[:, -40:] = values[torch.randint(0, len(values), (n, 40), generator=g)]
    f = max(0, (n - 3) // 4)
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        G = X.to(dtype)
        out[(n, str(dtype), "median")] = torch.ops.byzagg.median(G)
        for rule in ("trimmed_mean", "meamed", "phocas"):
            out[(n, str(dtype), rule)] = getattr(torch.ops.byzagg, rule)(G, f)
out["isa"] = torch.ops.byzagg.cpu_isa()
torch.save(out, sys.argv[1])
print("ok")
"""


def test_coordinate_rules_same_bytes_on_every_isa_signed_zeros_included(tmp_path):
    """The coordinate-wise rules' results are the same bytes on every vector path (a
    zero's sign included; NaN's sign and payload aside) on columns full of ties, ±0,
    infinities and NaN."""
    names, results = results_on_each_isa(ZEROS_SCRIPT, tmp_path)
    first = names[0]
    signed_zeros = sum(int(((v == 0) & torch.signbit(v)).sum()) for v in results[first].values())
    assert signed_zeros > 0  # the case tests what it says

    def as_bytes(x):  # a NaN's sign and payload depend on operand order: any NaN is NaN
        return torch.where(torch.isnan(x), torch.full_like(x, math.nan), x).view(torch.uint8).tolist()

    for isa in names[1:]:
        for key, want in results[first].items():
            got = results[isa][key]
            assert got.dtype == want.dtype
            assert as_bytes(got) == as_bytes(want), f"{isa} differs from {first} at {key}"


def test_unknown_isa_is_a_clear_error():
    if not _ops.NATIVE_LOADED:
        pytest.skip(f"no native kernels: {_ops.LOAD_STATUS}")
    code = "import torch, byzagg\ntorch.ops.byzagg.median(torch.randn(5, 3))\n"
    env = dict(os.environ, BYZAGG_CPU_ISA="sse9")
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0
    assert "BYZAGG_CPU_ISA must be generic, avx2 or avx512" in run.stderr and "sse9" in run.stderr


def test_krum_choice_is_read_off_its_scores():
    """krum_scores returns the float64 values the selection ranks: on near-duplicate rows
    (equal scores in float32) Krum takes the first minimum of those scores."""
    import byzagg

    g = torch.Generator().manual_seed(3)
    base = torch.randn(1, 333, generator=g)
    G = base.repeat(14, 1) + 1e-7 * torch.randn(14, 333, generator=g)
    G[10:] = 50 * torch.randn(4, 333, generator=g)
    for f in (1, 4):
        scores = byzagg.krum_scores(G, f)
        assert scores.dtype == torch.float64
        best = int(torch.argmin(scores))  # argmin returns the first minimum
        assert torch.equal(byzagg.krum(G, f), G[best])
        order = sorted(range(G.shape[0]), key=lambda i: (float(scores[i]), i))
        m = G.shape[0] - f
        torch.testing.assert_close(byzagg.krum(G, f, m), G[order[:m]].double().mean(0).float(), rtol=1e-5, atol=1e-5)

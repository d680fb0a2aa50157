"""Native kernels of the coordinate-wise rules (median, trimmed_mean, meamed, phocas) against
the reference, for every dtype and device, every path of the sorting networks and every ISA.

The reference is itself checked against plain definitions in test_reference_definitions.py;
brsgd, the coordinate family's other rule, is tested in test_iterative.py.
"""

import math
import os

import pytest
import torch

import byzagg
from byzagg import _rules, reference

from utils import ALL_DTYPES as DTYPES
from utils import assert_close, devices, op_args, require_native

# The coordinate family's order statistics; brsgd, the family's other rule, takes beta and a
# threshold and is tested in test_iterative.py.
COORDINATE_OPS = [name for name in _rules.family("coordinate") if name != "brsgd"]


def make_cases(seed=0):
    gen = torch.Generator().manual_seed(seed)
    cases = []
    for n, d in [(1, 7), (2, 5), (3, 33), (4, 64), (5, 100), (10, 31), (11, 257), (51, 1000), (64, 65), (65, 70), (101, 40)]:
        cases.append((f"randn-{n}x{d}", torch.randn(n, d, generator=gen, dtype=torch.float64)))
    X = torch.randint(-3, 4, (21, 300), generator=gen).to(torch.float64)  # many exact ties
    cases.append(("ties-21x300", X))
    X = torch.randn(15, 50, generator=gen, dtype=torch.float64)
    X[:3] = 1e30
    X[3:5] = -1e30
    cases.append(("outliers-15x50", X))
    X = torch.randn(1, 80, generator=gen, dtype=torch.float64).repeat(9, 1)
    cases.append(("equal-rows-9x80", X))
    X = torch.randn(12, 40, generator=gen, dtype=torch.float64)
    X[6:] = X[:6]
    cases.append(("duplicated-12x40", X))
    return cases


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("op", COORDINATE_OPS)
def test_coordinate_ops_match_reference(op, dtype, device):
    require_native(device)
    native, ref = getattr(torch.ops.byzagg, op), getattr(reference, op)
    for name, X in make_cases():
        G = X.to(device=device, dtype=dtype)
        if not torch.isfinite(G).all():  # 1e30 overflows half precision: covered separately
            continue
        args = op_args(op, G, (G.shape[0] - 1) // 3 if op == "trimmed_mean" else None)
        assert_close(native(G, *args), ref(G, *args), dtype, f"{op} {name} {dtype}")


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("op", COORDINATE_OPS)
def test_coordinate_ops_median_bitwise(op, device):
    """Median and trimmed mean on exactly representable ties agree to the bit."""
    require_native(device)
    gen = torch.Generator().manual_seed(3)
    G = torch.randint(-8, 9, (17, 513), generator=gen).float().to(device)
    f = 4
    args = op_args(op, G, f)
    got, want = getattr(torch.ops.byzagg, op)(G, *args), getattr(reference, op)(G, *args)
    assert torch.equal(got, want), f"{op}: max difference {(got - want).abs().max()}"


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=str)
@pytest.mark.parametrize("op", COORDINATE_OPS)
@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "mixed", "entries"])
def test_coordinate_ops_nonfinite(op, dtype, device, bad):
    require_native(device)
    gen = torch.Generator().manual_seed(11)
    n, d, f = 13, 97, 6
    G = torch.randn(n, d, generator=gen, dtype=dtype)
    values = {"nan": [math.nan], "inf": [math.inf], "-inf": [-math.inf], "mixed": [math.nan, math.inf, -math.inf]}
    if bad == "entries":
        for j in range(d):  # at most f non-finite values in every column, spread over rows
            rows = torch.randperm(n, generator=gen)[:f]
            G[rows, j] = torch.tensor([math.nan, math.inf, -math.inf] * 2, dtype=dtype)[:f]
    else:
        for i, row in enumerate(torch.randperm(n, generator=gen)[:f]):
            G[row] = values[bad][i % len(values[bad])]
    G = G.to(device)
    args = op_args(op, G, f)
    got = getattr(torch.ops.byzagg, op)(G, *args)
    assert torch.isfinite(got).all(), f"{op}: non-finite result with {f} bad rows"
    assert_close(got, getattr(reference, op)(G, *args), dtype, f"{op} {bad}")


@pytest.mark.parametrize("device", devices())
def test_native_non_contiguous_and_no_mutation(device):
    require_native(device)
    gen = torch.Generator().manual_seed(5)
    base = torch.randn(40, 23, generator=gen).to(device)
    G = base.t()  # (23, 40), not contiguous
    before = G.clone()
    for op in COORDINATE_OPS:
        args = op_args(op, G, 5)
        got = getattr(byzagg, op)(G, *args)
        assert torch.equal(got, getattr(byzagg, op)(G.contiguous(), *args)), op
        assert torch.equal(G, before), f"{op} modified its input"


@pytest.mark.parametrize("device", devices())
def test_native_deterministic_across_threads(device):
    require_native(device)
    G = torch.randn(33, 5000, generator=torch.Generator().manual_seed(2)).to(device)
    threads = torch.get_num_threads()
    try:
        results = {}
        for t in (1, max(2, threads)):
            torch.set_num_threads(t)
            results[t] = [getattr(byzagg, op)(G, *(() if op == "median" else (8,))) for op in COORDINATE_OPS]
        first, second = results.values()
        for op, a, b in zip(COORDINATE_OPS, first, second):
            assert torch.equal(a, b), f"{op} differs across thread counts"
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("op", COORDINATE_OPS)
def test_native_op_rejects_bad_input(op):
    require_native("cpu")
    fn = getattr(torch.ops.byzagg, op)
    args = () if op == "median" else (3,)
    with pytest.raises(RuntimeError, match="2-D"):
        fn(torch.randn(5), *args)
    if op != "median":
        with pytest.raises(RuntimeError, match=f"{op} requires n > 2f, got n=6, f=3"):
            fn(torch.randn(6, 4), 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16], ids=str)
def test_coordinate_ops_every_network_size(dtype):
    """Every n of the SIMD network path (2..64, padded to multiples of 8) and both sides of it,
    with column counts that leave scalar tails, NaN in some blocks, and exact ties."""
    require_native("cpu")
    gen = torch.Generator().manual_seed(7)
    for n in range(2, 67):
        d = 300 + n  # staged half-precision blocks are 256 wide: leaves a tail too
        G = torch.randint(-6, 7, (n, d), generator=gen).to(dtype) if n % 3 == 0 else torch.randn(n, d, generator=gen).to(dtype)
        f_max = (n - 1) // 2
        if f_max >= 1:
            G[n - 1, 40:90] = math.nan  # one bad row over a few blocks
            G[0, 60:70] = math.inf
        for op in COORDINATE_OPS:
            for f in ([0] if op == "median" else sorted({0, f_max // 2, f_max})):
                args = op_args(op, G, f)
                assert_close(
                    getattr(torch.ops.byzagg, op)(G, *args), getattr(reference, op)(G, *args), dtype, f"{op} n={n} f={f}"
                )


@pytest.mark.parametrize("isa", ["avx2", "generic"])
def test_coordinate_ops_other_isas(isa):
    """The AVX2 and scalar paths (BYZAGG_CPU_ISA caps the choice, read once per process)."""
    require_native("cpu")
    import subprocess
    import sys

    code = (
        "import torch, byzagg\n"
        "from byzagg import reference\n"
        "g = torch.Generator().manual_seed(1)\n"
        "for n in (3, 8, 17, 51, 64):\n"
        "    G = torch.randn(n, 203, generator=g)\n"
        "    G[0, :50] = float('nan')\n"
        "    f = (n - 1) // 2\n"
        "    for op, a in (('median', ()), ('trimmed_mean', (f,)), ('meamed', (f,)), ('phocas', (f,))):\n"
        "        x, y = getattr(torch.ops.byzagg, op)(G, *a), getattr(reference, op)(G, *a)\n"
        "        assert torch.allclose(x, y, rtol=2e-6, atol=2e-6, equal_nan=True), (op, n)\n"
        "print('ok')\n"
    )
    env = dict(os.environ, BYZAGG_CPU_ISA=isa)
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


# The long-column cases (64 < n <= 4096 and one beyond), built by the same code in the test's
# subprocesses and in the test: d > 256 columns makes several tiles of the kernel's column
# buffer (256 to 1024 bytes of a row at a time), with a tail of fewer than a vector.
LONG_CASES_CODE = """
import torch
def long_cases():
    g = torch.Generator().manual_seed(7)
    shapes = ((65, 203), (65, 600), (100, 203), (128, 70), (129, 203), (257, 90), (1001, 37), (1001, 150),
              (4096, 33), (4097, 17))
    for n, d in shapes:
        for dtype in (torch.float32, torch.float64):
            for kind in ("randn", "ties", "nonfinite", "nan-count"):
                if kind == "nan-count":  # column c: about n / 2 - d / 2 + c NaN rows, so the middle crosses them
                    G = torch.randn(n, d, generator=g, dtype=dtype)
                    for c in range(d):
                        G[: max(0, min(n, n // 2 - d // 2 + c)), c] = float("nan")
                elif kind == "randn":
                    G = torch.randn(n, d, generator=g, dtype=dtype)
                elif kind == "ties":
                    G = torch.randint(-3, 4, (n, d), generator=g).to(dtype)
                    G[:, ::3] = -0.0
                else:
                    G = torch.randn(n, d, generator=g, dtype=dtype)
                    k = (n - 1) // 2
                    G[:k, ::5] = float("nan")
                    G[n - 1, 1::4] = float("inf")
                    G[0, 2::4] = -float("inf")
                    G[1:n // 3, 3::7] = float("nan")
                yield (n, d, str(dtype), kind), G
"""

LONG_COLUMNS_CODE = LONG_CASES_CODE + """
import sys, byzagg
out = {}
for key, G in long_cases():
    fmax = (key[0] - 1) // 2
    for op in ("median", "trimmed_mean", "meamed", "phocas"):
        for f in ([0] if op == "median" else sorted({0, fmax // 2, fmax})):
            a = () if op == "median" else (f,)
            out[key + (op, f)] = getattr(torch.ops.byzagg, op)(G, *a)
# half precision (widened to float a block of 256 columns at a time, so d >= 512)
h = torch.Generator().manual_seed(8)
for n, d in ((129, 600), (1001, 520)):
    for dtype in (torch.float16, torch.bfloat16):
        G = torch.randn(n, d, generator=h).to(dtype)
        G[: n // 3, ::5] = float("nan")
        G[n - 1, 1::4] = float("inf")
        fmax = (n - 1) // 2
        for op in ("median", "trimmed_mean", "meamed", "phocas"):
            for f in ([0] if op == "median" else sorted({0, fmax // 2, fmax})):
                a = () if op == "median" else (f,)
                out[(n, d, str(dtype), "half", op, f)] = getattr(torch.ops.byzagg, op)(G, *a)
torch.save(out, sys.argv[1])
print("ok")
"""


def test_coordinate_long_columns_every_isa(tmp_path):
    """64 < n <= 4096: the merge sort over SIMD lanes (AVX-512, AVX2, the portable vectors)
    gives the same values on every ISA (n = 4097 takes the scalar path everywhere), with NaN,
    infinities, ties and signed zeros, float and double (and half precision, widened in
    blocks), every f class, several column tiles; and every float and double case matches
    the reference."""
    require_native("cpu")
    import subprocess
    import sys

    results = {}
    for isa in ("best", "avx2", "generic"):
        env = dict(os.environ)
        env.pop("BYZAGG_CPU_ISA", None)
        if isa != "best":
            env["BYZAGG_CPU_ISA"] = isa
        path = tmp_path / f"{isa}.pt"
        run = subprocess.run([sys.executable, "-c", LONG_COLUMNS_CODE, str(path)], env=env, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-2000:]
        results[isa] = torch.load(path)
    assert len(results["generic"]) > 300
    for key, want in results["generic"].items():
        for isa in ("best", "avx2"):
            got = results[isa][key]
            same = (got == want) | (torch.isnan(got) & torch.isnan(want))
            assert bool(same.all()), f"{isa} vs generic at {key}: {got[~same][:4].tolist()} vs {want[~same][:4].tolist()}"
    # every float and double case against the reference (the ISA paths equal it, above)
    scope = {}
    exec(LONG_CASES_CODE, scope)
    checked = 0
    for key, G in scope["long_cases"]():
        fmax = (key[0] - 1) // 2
        for op in COORDINATE_OPS:
            for f in ([0] if op == "median" else sorted({0, fmax // 2, fmax})):
                assert_close(results["generic"][key + (op, f)], getattr(reference, op)(G, *op_args(op, G, f)),
                             G.dtype, f"{op} {key} f={f}")
                checked += 1
    assert checked == len([k for k in results["generic"] if k[3] != "half"])

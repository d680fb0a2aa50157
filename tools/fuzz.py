"""Fuzz the native ops (torch.ops.byzagg.*) against byzagg.reference.

Hypothesis draws an op, a shape, a dtype (float16, bfloat16, float32, float64), a memory
layout (contiguous, transposed view, strided view, storage offset, zero-stride rows),
values (Gaussian at any scale, small integers with exact ties, sprinkled NaN, +-inf,
+-1e38, the largest finite value, denormals, -0.0) and the op's integer and real
arguments, valid or not (f from -2^63 to 2^63 - 1). A valid call must give the
reference's result (the same non-finite pattern, finite values within the tolerance of
the dtype) and leave its input untouched; an invalid one must raise RuntimeError. Any
other exception, a crash, or (under tools/fuzz_asan.sh) an AddressSanitizer/UBSan report
is a bug. Runs until --minutes have passed, in batches of --batch cases with fresh seeds.

    python tools/fuzz.py --minutes 20            # the extension built in place
    tools/fuzz_asan.sh --minutes 20              # the same under ASan + UBSan

Not part of the pytest run. Prints (and with --report writes as JSON) cases tried, time,
failures; the first failing input is saved to --failure (a torch.save file).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections import Counter

import torch
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

import byzagg
from byzagg import _ops, _rules, reference

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
TOL = {torch.float64: 1e-9, torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}
SPECIAL = [math.nan, math.inf, -math.inf, 1e38, -1e38, 1e-40, -1e-310, -0.0, 5e-324, 65504.0]
# The ops that take f, from the rule table.
TAKES_F = {rule.op for rule in _rules.TABLE if rule.requirement is not None}


def requirement(op, n, f):
    """Whether (n, f) is valid for op (the rule table's requirement)."""
    if op not in _rules.REQUIREMENTS:
        return True
    return 0 <= f and _rules.REQUIREMENTS[op][1](n, f)


def valid_f(op, n):
    """The largest f that op accepts with n rows (0 for the ops without f)."""
    if op not in TAKES_F:
        return 0
    f = 0
    while requirement(op, n, f + 1):
        f += 1
    return f


@st.composite
def matrices(draw):
    n = draw(st.one_of(st.integers(1, 12), st.integers(13, 70)))
    d = draw(st.one_of(st.integers(1, 40), st.integers(41, 600), st.sampled_from([2047, 2048, 2049, 4097])))
    dtype = draw(st.sampled_from(DTYPES))
    kind = draw(st.sampled_from(["gaussian", "integers", "constant", "two-clusters"]))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    if kind == "gaussian":
        scale = draw(st.sampled_from([1e-30, 1e-6, 1.0, 1e4, 1e30]))
        X = torch.randn(n, d, generator=gen, dtype=torch.float64) * scale
    elif kind == "integers":
        X = torch.randint(-8, 9, (n, d), generator=gen).to(torch.float64)
    elif kind == "constant":
        X = torch.randn(1, d, generator=gen, dtype=torch.float64).repeat(n, 1)
    else:
        X = torch.randn(2, d, generator=gen, dtype=torch.float64).repeat_interleave((n + 1) // 2, 0)[:n]
    specials = draw(st.integers(0, 3))
    for _ in range(specials):
        value = draw(st.sampled_from(SPECIAL))
        if draw(st.booleans()):  # a whole row
            X[draw(st.integers(0, n - 1))] = value
        else:
            X[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = value
    X = X.to(dtype)
    layout = draw(st.sampled_from(["contiguous", "transposed", "strided", "offset", "expanded"]))
    if layout == "transposed":
        G = X.t().contiguous().t()
    elif layout == "strided":
        big = torch.zeros(n, 2 * d + 1, dtype=dtype)
        big[:, 1::2] = X
        G = big[:, 1::2]
    elif layout == "offset":
        big = torch.zeros(n * d + 7, dtype=dtype)
        big[7:] = X.reshape(-1)
        G = big[7:].view(n, d)
    elif layout == "expanded":  # every row is one row of memory (stride 0)
        G = X[:1].expand(n, d)
    else:
        G = X
    return G, layout


def arguments(draw, op, n, d, dtype):
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    f_choice = draw(st.sampled_from(["valid", "valid", "valid", "small", "extreme"]))
    if f_choice == "valid":
        f = draw(st.integers(0, max(0, valid_f(op, n))))
    elif f_choice == "small":
        f = draw(st.integers(-3, n + 3))
    else:
        f = draw(st.sampled_from([INT64_MIN, -(2**62), 2**62, 2**62 + 1, 2**61 + 1, INT64_MAX]))
    if op in ("median", "medoid"):
        return ()
    if op in TAKES_F - {"krum"}:
        return (f,)
    if op == "krum":
        m = draw(st.one_of(st.integers(1, max(1, n - max(f, 0))), st.integers(-2, n + 2), st.sampled_from([INT64_MAX, INT64_MIN])))
        return (f, m)
    if op == "pairwise_distances":
        return (draw(st.booleans()),)
    if op == "geometric_median":
        weights = None
        if draw(st.booleans()):
            weights = torch.rand(n, generator=gen, dtype=torch.float64).to(dtype)
        return (weights, draw(st.sampled_from([1e-8, 1e-3])), draw(st.integers(1, 30)), draw(st.sampled_from([0.0, 1e-7])))
    if op == "centered_clipping":
        center = None
        if draw(st.booleans()):
            center = torch.randn(d, generator=gen, dtype=torch.float64).to(dtype)
        return (draw(st.sampled_from([1e-3, 1.0, 1e3])), draw(st.integers(1, 5)), center)
    if op == "brsgd":
        return (draw(st.sampled_from([1e-6, 0.3, 0.5, 1.0])), draw(st.sampled_from([0.0, 1.0, 100.0, math.inf])))
    raise AssertionError(op)


def valid(op, n, args):
    if op in TAKES_F:
        f = args[0]
        if not requirement(op, n, f):
            return False
        if op == "krum" and not 1 <= args[1] <= n - f:
            return False
        if op == "mda" and math.comb(n, f) > byzagg.MDA_MAX_SUBSETS:
            return False
    return True


def reference_call(op, G, args):
    """The reference on the same (validated) input: the public reference functions."""
    if op == "krum":
        return reference.krum(G, args[0], m=args[1])
    if op == "pairwise_distances":
        return reference.pairwise_distances(G, squared=args[0])
    if op == "geometric_median":
        w, eps, max_iter, tol = args
        return reference.geometric_median(G, weights=w, eps=eps, max_iter=max_iter, tol=tol)
    if op == "centered_clipping":
        tau, iters, center = args
        return reference.centered_clipping(G, tau, iters=iters, center=center)
    if op == "brsgd":
        return reference.brsgd(G, beta=args[0], threshold=args[1])
    return getattr(reference, op)(G, *args)


class Mismatch(AssertionError):
    pass


def gm_objective(G, z, weights):
    """sum_i w_i ||z - g_i|| over the finite rows, in float64."""
    X = G.double()
    finite = torch.isfinite(X).all(dim=1)
    w = torch.ones(X.shape[0], dtype=torch.float64) if weights is None else weights.double().reshape(-1)
    return float((w[finite] * torch.linalg.vector_norm(X[finite] - z.double(), dim=1)).sum())


def compare(op, G, got, want, args=()):
    if got.shape != want.shape or got.dtype != want.dtype:
        raise Mismatch(f"{op}: shape/dtype {tuple(got.shape)} {got.dtype} != {tuple(want.shape)} {want.dtype}")
    g, w = got.double(), want.double()
    if not torch.equal(torch.isnan(g), torch.isnan(w)):
        raise Mismatch(f"{op}: NaN pattern differs: {int(torch.isnan(g).sum())} vs {int(torch.isnan(w).sum())}")
    both = ~torch.isnan(w)
    inf = torch.isinf(w) & both
    if not torch.equal(g[inf], w[inf]) or bool(torch.isinf(g[both & ~inf]).any()):
        raise Mismatch(f"{op}: infinities differ")
    finite = both & ~inf
    values = G.double()
    values = values[torch.isfinite(values)].abs()
    scale = max(1.0, float(values.max())) if values.numel() else 1.0
    tol = TOL[G.dtype]
    if op == "geometric_median":
        tol = max(tol, 1e-4)
    err = (g[finite] - w[finite]).abs()
    # Every result is a mean (or a distance) of values of the input's scale, summed in
    # another order by each side: rounding is relative to that scale, not to the result
    # (a mean near 0 of values near 3e4 differs by ~1e-3 in float32).
    bound = tol * scale + tol * w[finite].abs()
    if op in ("pairwise_distances", "krum_scores"):
        bound = bound + tol * scale * scale * 1e-6
    if err.numel() and bool((err > bound).any()) and op == "geometric_median" and bool(torch.isfinite(w).all()):
        # the minimiser need not be unique (two equal clusters: a whole segment): equally
        # good points are both right; the objectives must agree
        mine, theirs = gm_objective(G, g, args[0] if args else None), gm_objective(G, w, args[0] if args else None)
        if abs(mine - theirs) <= tol * max(1.0, abs(theirs)):
            return
    if err.numel() and bool((err > bound).any()):
        raise Mismatch(f"{op}: max error {float(err.max()):.3g} (tolerance {tol} relative, scale {scale:.3g})")


def run(minutes, batch, first_seed, failure_path, report):
    ops = _ops.native_ops("cpu")
    stats = Counter()
    seconds = Counter()
    failures = []
    start = time.monotonic()

    @settings(
        max_examples=batch,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(data=st.data())
    def case(data):
        G, layout = data.draw(matrices())
        op = data.draw(st.sampled_from(ops))
        n, d = G.shape
        args = arguments(data.draw, op, n, d, G.dtype)
        native = getattr(torch.ops.byzagg, op)
        before = G.clone()
        stats["cases"] += 1
        stats[f"op:{op}"] += 1
        stats[f"layout:{layout}"] += 1
        stats[f"dtype:{str(G.dtype).replace('torch.', '')}"] += 1
        if not valid(op, n, args):
            try:
                native(G, *args)
            except RuntimeError:
                stats["rejected"] += 1
                return
            raise Mismatch(f"{op} accepted invalid arguments n={n}, args={args}")
        if op == "mda" and math.comb(n, args[0]) > 5000:  # the reference enumerates subsets: too slow
            native(G, *args)
            stats["native-only"] += 1
            return
        t0 = time.monotonic()
        got = native(G, *args)
        if not torch.equal(G.nan_to_num(), before.nan_to_num()) or not torch.equal(G.isnan(), before.isnan()):
            raise Mismatch(f"{op} modified its input")
        t1 = time.monotonic()
        want = reference_call(op, G, args)
        seconds[f"native:{op}"] += t1 - t0
        seconds[f"reference:{op}"] += time.monotonic() - t1
        stats["compared"] += 1
        try:
            compare(op, G, got, want, args)
        except Mismatch:
            torch.save({"op": op, "G": G.contiguous(), "layout": layout, "args": args, "got": got, "want": want}, failure_path)
            raise

    round_ = 0
    while time.monotonic() - start < minutes * 60:
        try:
            seed(first_seed + round_)(case)()
        except Exception as error:  # record and go on with the next seed
            failures.append(f"seed {first_seed + round_}: {type(error).__name__}: {str(error)[:500]}")
            print(failures[-1], file=sys.stderr, flush=True)
        round_ += 1
        elapsed = time.monotonic() - start
        print(f"[{elapsed:7.1f} s] batches {round_}, cases {stats['cases']}, compared {stats['compared']}, "
              f"rejected {stats['rejected']}, failures {len(failures)}", flush=True)
    summary = {
        "seconds": round(time.monotonic() - start, 1),
        "batches": round_,
        "first_seed": first_seed,
        "cases": stats["cases"],
        "compared": stats["compared"],
        "rejected": stats["rejected"],
        "failures": failures,
        "backend": byzagg.backend(),
        "counts": dict(sorted(stats.items())),
        "seconds_per_op": {k: round(v, 2) for k, v in sorted(seconds.items())},
    }
    print(json.dumps(summary, indent=2))
    if report:
        with open(report, "w") as handle:
            json.dump(summary, handle, indent=2)
    return 1 if failures else 0


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--batch", type=int, default=200, help="cases per hypothesis run (one seed)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; batch i uses seed + i")
    parser.add_argument("--failure", default="fuzz-failure.pt")
    parser.add_argument("--report", default=None, help="write the summary as JSON here")
    parser.add_argument("--require-native", action="store_true", help="fail unless the extension loaded")
    args = parser.parse_args(argv)
    if not _ops.native_ops("cpu"):
        print(f"no native CPU ops: {byzagg.backend()}", file=sys.stderr)
        return 2 if args.require_native else 0
    return run(args.minutes, args.batch, args.seed, args.failure, args.report)


if __name__ == "__main__":
    sys.exit(main())

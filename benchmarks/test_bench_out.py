"""out= against a fresh result, with the default allocator: does the slope in d hold?

Issue 21: every call returned a fresh d-vector, and at d >= 1e7 (float32: over glibc's
32 MB mmap threshold) each call's first-touch page faults cost about as much as reading G
once. Here median and average run at n = 11 and d = 1e6 .. 3e7, each with a fresh result
and with out= (one buffer made before the timing, as a training loop keeps it), beside two
baselines of the same run: one read of G written into a kept buffer
(`torch.sum(G, 0, out=buffer)`, the floor) and `G.sum(0)` (one read and a fresh result).
Per d the cases run in that order, the reads first and again last (the report takes the
lower). Every case records the load average (os.getloadavg) beside its time: the machine
is shared.

    python -m pytest benchmarks/test_bench_out.py --benchmark-json benchmarks/results/cpu-out.json
    python benchmarks/test_bench_out.py benchmarks/results/cpu-out.json --out benchmarks/results/cpu-out.md

(the report reads .json.gz as well, and takes each case's least time over several files).

Run it with the default allocator (no GLIBC_TUNABLES): that is the point.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import time

import pytest
import torch

import byzagg

N = 11
DS = (10**6, 3 * 10**6, 10**7, 3 * 10**7)
# Per d: (what, repetition); "read" twice, around the rules.
WHATS = ("read", "sum", "median", "median_out", "average", "average_out", "read")
CASES = [(d, what, k) for d in DS for k, what in enumerate(WHATS)]


def matrix(d):
    return torch.randn(N, d, generator=torch.Generator().manual_seed(d % 1000003), dtype=torch.float32)


_G = {}


def shared_matrix(d):
    if d not in _G:
        _G.clear()
        _G[d] = matrix(d)
    return _G[d]


def call(what, G, buffer):
    return {
        "read": lambda: torch.sum(G, 0, out=buffer),
        "sum": lambda: G.sum(0),
        "median": lambda: byzagg.median(G),
        "median_out": lambda: byzagg.median(G, out=buffer),
        "average": lambda: byzagg.average(G),
        "average_out": lambda: byzagg.average(G, out=buffer),
    }[what]


@pytest.mark.parametrize("d, what, k", CASES, ids=[f"d={d:g}-{what}-{k}" for d, what, k in CASES])
def test_out(benchmark, d, what, k):
    G = shared_matrix(d)
    buffer = torch.empty(d)
    fn = call(what, G, buffer)
    if what.endswith("_out"):  # the same bits as without out=
        assert torch.equal(fn(), call(what[: -len("_out")], G, buffer)())
    t0 = time.perf_counter()
    fn()
    t = time.perf_counter() - t0
    rounds = 9 if t > 0.05 else 25
    benchmark.group = f"n={N} d={d:g}"
    benchmark.extra_info.update(
        n=N, d=d, what=what, rep=k, threads=torch.get_num_threads(), load_before=os.getloadavg()
    )
    benchmark.pedantic(fn, rounds=rounds, warmup_rounds=1, iterations=1)
    benchmark.extra_info["load_after"] = os.getloadavg()


# ---------------------------------------------------------------------------------------
# Report: python benchmarks/test_bench_out.py results.json --out results.md


def slope(points):
    """Least-squares slope of log time against log d."""
    xs = [math.log(d) for d, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def report(paths, out):
    times, loads, threads = {}, {}, set()
    meta = []
    for path in paths:
        with (gzip.open if path.endswith(".gz") else open)(path, "rt") as fh:
            data = json.load(fh)
        cpu = data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "?")
        meta.append((os.path.basename(path), cpu, data.get("datetime", "?")))
        for bench in data["benchmarks"]:
            info = bench["extra_info"]
            key = (info["d"], info["what"])
            best = bench["stats"]["min"]
            times[key] = min(best, times.get(key, math.inf))
            loads.setdefault(info["d"], []).extend([info["load_before"][0], info["load_after"][0]])
            threads.add(info["threads"])
    ds = sorted({d for d, _ in times})
    whats = ["sum", "median", "median_out", "average", "average_out"]
    lines = [
        "# out= against a fresh result (issue 21), default allocator",
        "",
        f"n = {N}, float32, {'/'.join(map(str, sorted(threads)))} threads; times are the least over the rounds;",
        "ratios are to one read of G into a kept buffer (`torch.sum(G, 0, out=buffer)`, the",
        "lower of the two reads around each d's cases). Load: the 1-minute load average",
        "(os.getloadavg) before and after each case of that d, min-max: the 2-core machine is",
        "shared with training grids.",
        "",
        "| d | one read (ms) | " + " | ".join(f"{w} / read" for w in whats) + " | load |",
        "|---|---|" + "---|" * len(whats) + "---|",
    ]
    for d in ds:
        read = times[(d, "read")]
        ratios = " | ".join(f"{times[(d, w)] / read:.2f}" if (d, w) in times else "-" for w in whats)
        lines.append(f"| {d:g} | {read * 1e3:.1f} | {ratios} | {min(loads[d]):.1f}-{max(loads[d]):.1f} |")
    # out of cache: G at least 3 times a 32 MB L3 (as the linear sweep's fit)
    far = [d for d in ds if N * d * 4 >= 3 * 32 * 2**20]
    lines += [
        "",
        "Log-log slope of time in d (least squares; 1.0 is linear), over every d and over the d",
        "whose G is at least 3x a 32 MB L3 cache:",
        "",
    ]
    lines += [f"| case | slope, d = {ds[0]:g}..{ds[-1]:g} | slope, d = {far[0]:g}..{far[-1]:g} |", "|---|---|---|"]
    for w in ["read", *whats]:
        every = [(d, times[(d, w)]) for d in ds if (d, w) in times]
        out_of_cache = [(d, t) for d, t in every if d in far]
        if len(every) >= 2 and len(out_of_cache) >= 2:
            lines.append(f"| {w} | {slope(every):.2f} | {slope(out_of_cache):.2f} |")
    big = [d for d in ds if d >= 10**7]
    if big:
        lines += ["", "Cost of a fresh result at d >= 1e7 (fresh / out=, same run):", ""]
        for rule in ("median", "average"):
            parts = [f"d={d:g}: {times[(d, rule)] / times[(d, rule + '_out')]:.2f}x" for d in big]
            lines.append(f"- {rule}: " + ", ".join(parts))
    lines += ["", "Runs: " + "; ".join(f"{p} ({cpu}, {when})" for p, cpu, when in meta), ""]
    text = "\n".join(lines)
    if out:
        with open(out, "w") as fh:
            fh.write(text)
    print(text)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="pytest-benchmark JSON files (the least time of each case is kept)")
    parser.add_argument("--out", help="markdown file to write")
    args = parser.parse_args()
    report(args.results, args.out)

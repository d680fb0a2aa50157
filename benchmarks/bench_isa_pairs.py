"""Generic against AVX2 (or any two values of BYZAGG_CPU_ISA), call by call in one process.

The coordinate-wise rules at n = 51, d = 10^6, f = 12, float32, 2 threads: per rule, REPS
times `G.sum(0)` (one read of G), the rule on the first ISA, the rule on the second, and
`G.sum(0)` again; prints the median times and the median of the per-pair ratios. The
kernels read BYZAGG_CPU_ISA at each call, so the two paths alternate on the same G and a
load that comes and goes on a shared machine hits both alike (benchmarks/results/
cpu-issue21-portable.md).

    python benchmarks/bench_isa_pairs.py [--reps 7] [--isas avx2,generic]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

import byzagg


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--isas", default="avx2,generic", help="two values of BYZAGG_CPU_ISA, comma-separated")
    args = parser.parse_args()
    first, second = args.isas.split(",")
    torch.set_num_threads(2)
    G = torch.randn(51, 10**6, generator=torch.Generator().manual_seed(51))
    G[:12] += 10.0
    rules = {
        "median": lambda: byzagg.median(G),
        "trimmed_mean": lambda: byzagg.trimmed_mean(G, 12),
        "meamed": lambda: byzagg.meamed(G, 12),
        "phocas": lambda: byzagg.phocas(G, 12),
    }
    print(byzagg.backend("cpu"))
    for isa in (first, second):  # warm-up
        os.environ["BYZAGG_CPU_ISA"] = isa
        for rule in rules.values():
            rule()
    for name, rule in rules.items():
        rows = []
        for _ in range(args.reps):
            read = seconds(lambda: G.sum(0))
            os.environ["BYZAGG_CPU_ISA"] = first
            a = seconds(rule)
            os.environ["BYZAGG_CPU_ISA"] = second
            b = seconds(rule)
            rows.append((min(read, seconds(lambda: G.sum(0))), a, b))
        read, a, b = (statistics.median(r[k] for r in rows) for k in range(3))
        pair = statistics.median(r[2] / r[1] for r in rows)
        print(f"{name}: G.sum(0) {read * 1e3:.0f} ms, {first} {a * 1e3:.0f} ms ({a / read:.2f}x), "
              f"{second} {b * 1e3:.0f} ms ({b / read:.2f}x), {second} / {first} pair by pair {pair:.2f}")


if __name__ == "__main__":
    main()

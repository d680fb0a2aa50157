"""The coordinate-wise rules as ratios to one read of G, per vector path, at chosen shapes.

Per shape (n x d, float32, f = n // 4, the first f rows shifted by +10, 2 threads), per rule
and per value of BYZAGG_CPU_ISA (read by the kernels at each call): REPS times `G.sum(0)`,
the rule, `G.sum(0)` again; the ratio of each rule call to the lesser of its two reads, and
the median of those ratios. Used to compare two builds of the kernels on one machine: run
it alternately with PYTHONPATH on each build (results/cpu-issue21-long-columns.md).

    python benchmarks/bench_long_columns.py [--shapes 101x1e6,1001x1e5] [--isas avx512,avx2,generic]
        [--rules median,trimmed_mean,meamed,phocas] [--reps 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics

import torch

import byzagg
from bench_isa_pairs import seconds  # this folder is on the path when run as a script


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", default="51x1e6,101x1e6,1001x1e5")
    parser.add_argument("--isas", default="avx512,avx2,generic", help="values of BYZAGG_CPU_ISA (ones the CPU lacks are left out)")
    parser.add_argument("--rules", default="median,trimmed_mean,meamed,phocas")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", help="write the ratios here too")
    args = parser.parse_args()
    torch.set_num_threads(2)
    best = torch.ops.byzagg.cpu_isa()  # the best path this CPU has
    order = ["generic", "avx2", "avx512"]
    isas = [i for i in args.isas.split(",") if order.index(i) <= order.index(best)]
    results = []
    for shape in args.shapes.split(","):
        n, d = (int(float(x)) for x in shape.split("x"))
        G = torch.randn(n, d, generator=torch.Generator().manual_seed(n))
        f = n // 4
        G[:f] += 10.0
        for rule in args.rules.split(","):
            call = (lambda: byzagg.median(G)) if rule == "median" else (lambda r=rule: getattr(byzagg, r)(G, f))
            line = []
            for isa in isas:
                os.environ["BYZAGG_CPU_ISA"] = isa
                call()  # warm-up
                ratios = []
                for _ in range(args.reps):
                    before = seconds(lambda: G.sum(0))
                    t = seconds(call)
                    ratios.append(t / min(before, seconds(lambda: G.sum(0))))
                ratio = statistics.median(ratios)
                results.append({"n": n, "d": d, "rule": rule, "isa": isa, "ratio": ratio, "ratios": ratios})
                line.append(f"{isa} {ratio:6.2f}x")
            print(f"n={n} d={d:.0e} {rule:13s}", "  ".join(line), flush=True)
    os.environ.pop("BYZAGG_CPU_ISA", None)
    if args.json:
        with open(args.json + ".tmp", "w") as fh:
            json.dump({"load": os.getloadavg(), "results": results}, fh, indent=1)
        os.replace(args.json + ".tmp", args.json)


if __name__ == "__main__":
    main()

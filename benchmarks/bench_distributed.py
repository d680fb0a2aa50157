"""robust_allreduce against torch.distributed.all_reduce, gloo on 127.0.0.1 (not a test).

    python benchmarks/bench_distributed.py --procs 4 --d 1e5 1e6 1e7 --out benchmarks/results/distributed.md

One process per rank (spawned here), one thread each, float32. For each d: the plain
all_reduce (sum, then / n: the mean DDP computes), then robust_allreduce per rule and path.
Each case's time is the median over --repeats calls (after one warm-up), of the slowest
rank (a barrier before each call; every rank measures, rank 0 reports the maximum). The
result is checked against byzagg.distributed.simulate before timing. The traffic model
(bytes each rank sends, byzagg.distributed.traffic_bytes) is printed beside the times.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

CASES = (  # (rule, f, path)
    ("average", None, "sharded"),
    ("median", None, "gather"),
    ("median", None, "sharded"),
    ("trimmed_mean", 1, "gather"),
    ("trimmed_mean", 1, "sharded"),
    ("krum", None, "gather"),
    ("krum", None, "sharded"),
    ("bulyan", None, "sharded"),
    ("geometric_median", None, "gather"),
)


def _f(rule, f, n):
    if f is not None:
        return f
    if rule == "krum":
        return (n - 3) // 2
    if rule == "bulyan":
        return (n - 3) // 4
    return None


def _timed(fn, repeats):
    times = []
    for k in range(repeats + 1):
        dist.barrier()
        start = time.perf_counter()
        fn()
        elapsed = torch.tensor([time.perf_counter() - start], dtype=torch.float64)
        dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
        if k > 0:
            times.append(float(elapsed))
    return statistics.median(times)


def _worker(rank, n, port, sizes, repeats, queue, rules):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=n, timeout=datetime.timedelta(seconds=600)
    )
    import byzagg
    import byzagg.distributed as bd

    rows = []
    for d in sizes:
        G = torch.randn(n, d, generator=torch.Generator().manual_seed(d))
        mine = G[rank].clone()

        def plain():
            x = mine.clone()
            dist.all_reduce(x)
            x /= n

        base = _timed(plain, repeats)
        rows.append((d, "all_reduce (mean)", "-", base, base))
        for rule, f, path in CASES:
            if rules and rule not in rules:
                continue
            f = _f(rule, f, n)
            if rule == "bulyan" and n < 4 * f + 3 or rule == "krum" and n < 2 * f + 3:
                continue
            if rule == "geometric_median" and d > 10**6:  # up to 100 passes over G: minutes at 1e7
                continue
            out = bd.robust_allreduce(mine, rule, f=f, path=path)
            if rank == 0 and not torch.equal(out, bd.simulate(G, rule, f=f, path=path)):
                raise AssertionError(f"{rule} {path} d={d}: differs from simulate")
            seconds = _timed(lambda: bd.robust_allreduce(mine, rule, f=f, path=path), repeats)
            label = rule if f is None else f"{rule} f={f}"
            rows.append((d, label, path, seconds, base))
        del G
    if rank == 0:
        queue.put((rows, byzagg.backend()))
    dist.barrier()
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--procs", type=int, nargs="+", default=[4])
    parser.add_argument("--d", type=float, nargs="+", default=[1e5, 1e6, 1e7])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="append a markdown section to this file")
    parser.add_argument("--rules", nargs="*", default=None, help="only these rules (default: all cases)")
    args = parser.parse_args(argv)
    sizes = [int(d) for d in args.d]
    import byzagg.distributed as bd

    sections = []
    for n in args.procs:
        context = mp.get_context("spawn")
        queue = context.Queue()
        port = _free_port()
        processes = [
            context.Process(target=_worker, args=(r, n, port, sizes, args.repeats, queue, args.rules)) for r in range(n)
        ]
        for p in processes:
            p.start()
        rows, backend = queue.get(timeout=3600)
        for p in processes:
            p.join(timeout=60)
        lines = [
            f"### {n} processes (gloo, 127.0.0.1, 1 thread each), float32, median of {args.repeats}",
            "",
            f"byzagg backend: {backend}",
            "",
            "| d | rule | path | time (ms) | / all_reduce | traffic per rank (MB sent) | / all_reduce's |",
            "|---|---|---|---|---|---|---|",
        ]
        for d, label, path, seconds, base in rows:
            rule = label.split()[0]
            if rule == "all_reduce":
                traffic = 2 * (n - 1) * d * 4 / n
                ratio_traffic = 1.0
            else:
                model = bd.traffic_bytes(rule, n, d, 4, path)
                traffic = model["total"]
                ratio_traffic = traffic / model["all_reduce (ring) for comparison"]
            lines.append(
                f"| {d:.0e} | {label} | {path} | {seconds * 1e3:.1f} | {seconds / base:.2f} | "
                f"{traffic / 1e6:.2f} | {ratio_traffic:.2f} |"
            )
        sections.append("\n".join(lines))
        print(sections[-1], flush=True)
    if args.out:
        header = (
            f"\nRun {time.strftime('%Y-%m-%d %H:%M')} on {platform.machine()}, {os.cpu_count()} cores, "
            f"torch {torch.__version__}: `{' '.join(['python', *sys.argv])}`\n\n"
        )
        with open(args.out, "a") as fh:
            fh.write(header + "\n\n".join(sections) + "\n")


if __name__ == "__main__":
    main()

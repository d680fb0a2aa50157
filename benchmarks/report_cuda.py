"""Turns a GPU benchmark JSON (test_bench_cuda.py) into benchmarks/results/gpu-<device>.json
and .md: per point, each rule's time as a ratio to one read of G (`G.sum(0)`) and to the
cuBLAS Gram product, and byzagg's speed-up over torch.median and over its reference on
CUDA. Times are medians of CUDA-event timings (extra_info["cuda_ms"]).

    python benchmarks/report_cuda.py benchmarks/results/gpu-raw.json
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from collections import defaultdict
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def load(path: Path):
    data = json.loads(path.read_text())
    times = defaultdict(dict)  # (n, d) -> {(kind, what): ms}
    meta = {}
    for bench in data["benchmarks"]:
        info = bench["extra_info"]
        if "cuda_ms" not in info:
            continue
        times[(info["n"], info["d"])][(info["kind"], info["what"])] = info["cuda_ms"]
        meta = {k: info[k] for k in ("device", "torch", "cuda", "backend") if k in info}
    return times, meta


def ratio(a, b):
    return f"{a / b:.2f}x" if a is not None and b else "-"


def table(times) -> list[str]:
    lines = [
        "| n | d | rule | byzagg ms | / read of G | / Gram | torch.median / byzagg | reference / byzagg |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (n, d), row in sorted(times.items()):
        read = row.get(("baseline", "sum"))
        gram = row.get(("baseline", "gram"))
        tmed = row.get(("baseline", "torch_median"))
        for (kind, what), ms in sorted(row.items()):
            if kind != "byzagg":
                continue
            ref = row.get(("reference", what))
            lines.append(
                f"| {n} | {d:.0e} | {what} | {ms:.3f} | {ratio(ms, read)} | {ratio(ms, gram)} | "
                f"{ratio(tmed, ms) if tmed else '-'} | {ratio(ref, ms) if ref else '-'} |"
            )
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__)
        return 2
    source = Path(argv[0])
    times, meta = load(source)
    if not times:
        print(f"{source}: no CUDA timings (was a GPU present?)")
        return 1
    slug = re.sub(r"[^a-z0-9]+", "-", meta.get("device", "gpu").lower()).strip("-")
    RESULTS.mkdir(exist_ok=True)
    target = RESULTS / f"gpu-{slug}.json"
    if source.resolve() != target.resolve():
        shutil.copyfile(source, target)
    header = [
        f"# GPU benchmarks: {meta.get('device', '?')}",
        "",
        f"torch {meta.get('torch')}, CUDA {meta.get('cuda')}; {meta.get('backend', '')}.",
        "float32; times are medians of CUDA-event timings of one call after warm-up, in one run;",
        "ratios against that run's baselines. Raw data: " + target.name + ".",
        "",
    ]
    (RESULTS / f"gpu-{slug}.md").write_text("\n".join(header + table(times)) + "\n")
    print(f"wrote {RESULTS / f'gpu-{slug}.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

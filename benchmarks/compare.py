"""Compare two pytest-benchmark JSON files of the CPU grid (plain or gzip'd), run before and
after a change: for every byzagg rule and point, its time as a ratio to the `sum` baseline
(one read of G) of the same run, before and after, and after / before. Ratios, not times:
each run's baseline absorbs the machine's load at that moment.

    python benchmarks/compare.py before.json.gz after.json.gz > table.md
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics


def load(path: str) -> dict:
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as stream:
        benchmarks = json.load(stream)["benchmarks"]
    times: dict = {}
    for bench in benchmarks:
        info = bench["extra_info"]
        key = (info["n"], info["d"], info["kind"], info["what"])
        times.setdefault(key, []).append(bench["stats"]["median"] / info.get("iters", 1))
    return {key: min(values) for key, values in times.items()}


def rows(before: dict, after: dict) -> list[tuple]:
    out = []
    for (n, d, kind, what), time_before in sorted(before.items()):
        if kind != "byzagg" or (n, d, kind, what) not in after:
            continue
        sum_before, sum_after = before.get((n, d, "baseline", "sum")), after.get((n, d, "baseline", "sum"))
        if not sum_before or not sum_after:
            continue
        ratio_before, ratio_after = time_before / sum_before, after[(n, d, kind, what)] / sum_after
        out.append((what, n, d, ratio_before, ratio_after, ratio_after / ratio_before))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    args = parser.parse_args(argv)
    table = rows(load(args.before), load(args.after))
    if not table:
        raise SystemExit("no point measured in both files")
    print("| rule | n | d | before (x one read) | after (x one read) | after / before |")
    print("|---|---|---|---|---|---|")
    for what, n, d, ratio_before, ratio_after, change in table:
        print(f"| {what} | {n} | {d:.0e} | {ratio_before:.2f} | {ratio_after:.2f} | {change:.2f} |")
    changes = [row[5] for row in table]
    print(
        f"\n{len(table)} points; after / before: median {statistics.median(changes):.2f}, "
        f"min {min(changes):.2f}, max {max(changes):.2f}"
    )
    per_rule: dict = {}
    for row in table:
        per_rule.setdefault(row[0], []).append(row[5])
    print(
        "\nper rule (median of after / before over its points): "
        + ", ".join(f"{rule} {statistics.median(values):.2f}" for rule, values in sorted(per_rule.items()))
    )


if __name__ == "__main__":
    main()

"""Flower's robust strategies against byzagg's through byzagg.flower.Robust: time and correctness.

    python benchmarks/bench_flower.py --out benchmarks/results/flower.md [--quick] [--max-d 1000000]

Both sides get the same reply messages (one ArrayRecord of model weights per client, as a
ClientApp sends them) in one process and go through the whole aggregate_train of their
strategy: reading the replies' arrays, the rule, writing the ArrayRecord. Pairs:
FedAvg / average, Krum / krum, MultiKrum (n - f selected) / multi_krum, FedMedian / median,
FedTrimmedAvg (beta cutting f per side) / trimmed_mean, Bulyan / bulyan. Times are the least
of `repeats` calls (the machine is shared: the ratios are what to read). Flower's
FedMedian, FedTrimmedAvg and Bulyan empty the reply records they read, so every call gets
fresh records (made outside the timing, sharing the same Array objects).

Correctness cases (same process, same replies):
- float32 cancellation: model weights with ||w||^2 ~ d = 1e6 and honest updates whose
  pairwise squared distances are ~2 (plus two Byzantine clients farther away): the error
  of Flower's Gram-expansion distances, and which client each Krum selects, against exact
  float64 distances;
- a NaN client: how much of each strategy's output is NaN;
- agreement on well-conditioned data at odd and even n (max |difference| of the outputs);
- Bulyan's selection: the paper's repeated Krum (scores recomputed on the rows not yet
  selected; byzagg.bulyan) against Flower's one-shot Multi-Krum selection of theta rows.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import UTC, datetime

# --threads N: the threads of both sides (torch's OpenMP; NumPy's BLAS, used by Flower's
# Krum), set before NumPy and torch are imported. Default: their own defaults.
if "--threads" in sys.argv[1:-1]:
    _threads = sys.argv[sys.argv.index("--threads") + 1]
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_name] = _threads

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

import flwr
import numpy as np
import torch
from flwr.app import Array, ArrayRecord, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp.strategy import Bulyan, FedAvg, FedMedian, FedTrimmedAvg, Krum, MultiKrum
from flwr.serverapp.strategy.multikrum import compute_distances, select_multikrum

import byzagg
from byzagg.flower import Robust

GRID_N = (11, 51, 101)
GRID_D = (100_000, 1_000_000)
BYZANTINE_OFFSET = 1.5  # the cancellation case: the Byzantine clients' distance to the honest mean


def f_for(n: int) -> int:
    """The largest f that every rule of the comparison accepts (Bulyan: n >= 4f + 3)."""
    return (n - 3) // 4


def pairs(n: int, f: int):
    """(name, Flower strategy, byzagg strategy) with the same rule and f."""
    return [
        ("average", FedAvg(), Robust("average")),
        ("krum", Krum(num_malicious_nodes=f), Robust("krum", f=f)),
        ("multi_krum", MultiKrum(num_malicious_nodes=f, num_nodes_to_select=n - f), Robust("multi_krum", f=f)),
        ("median", FedMedian(), Robust("median")),
        ("trimmed_mean", FedTrimmedAvg(beta=(f + 0.5) / n), Robust("trimmed_mean", f=f)),
        ("bulyan", Bulyan(num_malicious_nodes=f), Robust("bulyan", f=f)),
    ]


# ---------------------------------------------------------------------------------------
# replies


def _metadata(node_id: int) -> Metadata:
    return Metadata(
        run_id=1,
        message_id=f"m{node_id}",
        src_node_id=node_id,
        dst_node_id=0,
        reply_to_message_id="",
        group_id="1",
        created_at=time.time(),
        ttl=3600.0,
        message_type="train",
    )


def model_layout(d: int) -> list[tuple[str, int]]:
    """A model of d parameters in three arrays (a weight matrix, a second one, a bias)."""
    big, second = int(d * 0.8), int(d * 0.19)
    return [("layer1.weight", big), ("layer2.weight", second), ("layer2.bias", d - big - second)]


def split(row: np.ndarray, layout) -> dict[str, Array]:
    out, offset = {}, 0
    for name, size in layout:
        out[name] = Array(np.ascontiguousarray(row[offset : offset + size]))
        offset += size
    return out


class Replies:
    """n clients' weight rows as Arrays (serialised once) and fresh reply messages on demand."""

    def __init__(self, weights: np.ndarray, global_row: np.ndarray):
        self.layout = model_layout(weights.shape[1])
        self.arrays = [split(row, self.layout) for row in weights]
        self.global_record = ArrayRecord(split(global_row, self.layout))

    def messages(self) -> list[Message]:
        out = []
        for i, arrays in enumerate(self.arrays):
            content = RecordDict({"arrays": ArrayRecord(dict(arrays)), "metrics": MetricRecord({"num-examples": 10})})
            out.append(Message(content=content, metadata=_metadata(i + 1)))
        return out


def flat(record: ArrayRecord) -> np.ndarray:
    return np.concatenate([record[k].numpy().reshape(-1) for k in record.keys()])


def aggregate(strategy, replies: Replies) -> tuple[np.ndarray, float]:
    """One aggregate_train on fresh replies: (the flat result, seconds)."""
    messages = replies.messages()
    if isinstance(strategy, Robust):
        strategy.remember_global(replies.global_record)
    start = time.perf_counter()
    arrays, _ = strategy.aggregate_train(1, messages)
    seconds = time.perf_counter() - start
    return flat(arrays), seconds


def clients(n: int, d: int, seed: int, weight_scale: float = 0.1, update_scale: float = 0.01):
    """(global row, (n, d) float32 client weights): global + small i.i.d. updates."""
    rng = np.random.default_rng(seed)
    global_row = (rng.standard_normal(d) * weight_scale).astype(np.float32)
    updates = (rng.standard_normal((n, d)) * update_scale).astype(np.float32)
    return global_row, global_row[None, :] + updates


# ---------------------------------------------------------------------------------------
# timing


def time_grid(grid_n, grid_d, repeats_small: int, repeats_large: int, log):
    rows = []
    for d in grid_d:
        for n in grid_n:
            f = f_for(n)
            global_row, weights = clients(n, d, seed=n + d)
            replies = Replies(weights, global_row)
            del weights
            repeats = repeats_small if d <= 100_000 else repeats_large
            for name, flower_strategy, byzagg_strategy in pairs(n, f):
                times = {}
                results = {}
                for side, strategy in (("flower", flower_strategy), ("byzagg", byzagg_strategy)):
                    best = float("inf")
                    for _ in range(repeats):
                        result, seconds = aggregate(strategy, replies)
                        best = min(best, seconds)
                    times[side] = best
                    results[side] = result
                difference = float(np.max(np.abs(results["flower"].astype(np.float64) - results["byzagg"])))
                rows.append(
                    dict(
                        rule=name,
                        n=n,
                        d=d,
                        f=f,
                        flower=times["flower"],
                        byzagg=times["byzagg"],
                        difference=difference,
                        repeats=repeats,
                    )
                )
                log(
                    f"n={n:4d} d={d:8d} f={f:3d} {name:13s} flower {times['flower'] * 1e3:9.1f} ms  "
                    f"byzagg {times['byzagg'] * 1e3:8.1f} ms  ratio {times['flower'] / times['byzagg']:6.1f}  "
                    f"max|diff| {difference:.2e}"
                )
            del replies
    return rows


# ---------------------------------------------------------------------------------------
# correctness cases


def exact_krum_choice(G64: np.ndarray, f: int) -> tuple[int, np.ndarray]:
    """Krum's choice from exact float64 distances (the definition): (index, scores)."""
    diff = G64[:, None, :] - G64[None, :, :]
    D = np.einsum("ijk,ijk->ij", diff, diff) if G64.shape[1] <= 10_000 else None
    if D is None:
        n = len(G64)
        D = np.zeros((n, n))
        for i in range(n):
            D[i] = ((G64 - G64[i]) ** 2).sum(axis=1)
    n = len(G64)
    k = n - f - 2
    scores = np.array([np.sort(np.delete(D[i], i))[:k].sum() for i in range(n)])
    return int(np.argmin(scores)), D


def which_client(result: np.ndarray, weights: np.ndarray) -> int:
    return int(np.argmin(np.abs(weights.astype(np.float64) - result[None, :].astype(np.float64)).max(axis=1)))


def cancellation_case(trials: int, log) -> dict:
    """||w||^2 ~ 1e6, honest pairwise squared distances ~2, 2 Byzantine clients farther."""
    n, f, d = 11, 2, 1_000_000
    outcome = dict(n=n, f=f, d=d, trials=trials, flower_wrong=0, byzagg_wrong=0, flower_byzantine=0,
                   byzagg_byzantine=0, error_min=0.0, error_max=0.0, true_min=float("inf"), true_max=0.0)
    for trial in range(trials):
        rng = np.random.default_rng(1000 + trial)
        global_row = rng.standard_normal(d).astype(np.float32)  # ||w||^2 ~ 1e6
        updates = rng.standard_normal((n, d)) * (1.0 / np.sqrt(d))  # ||u_i - u_j||^2 ~ 2
        direction = rng.standard_normal(d)
        updates[:f] = updates[f:].mean(axis=0) + BYZANTINE_OFFSET * direction / np.linalg.norm(direction)  # Byzantine
        weights = (global_row[None, :] + updates).astype(np.float32)
        true_choice, D = exact_krum_choice(weights.astype(np.float64) - global_row.astype(np.float64), f)
        replies = Replies(weights, global_row)
        flower_records = [m.content["arrays"] for m in replies.messages()]
        gram = compute_distances(flower_records).astype(np.float64)
        off = ~np.eye(n, dtype=bool)
        error = gram[off] - D[off]
        outcome["error_min"] = min(outcome["error_min"], float(error.min()))
        outcome["error_max"] = max(outcome["error_max"], float(error.max()))
        honest = D[f:, f:][~np.eye(n - f, dtype=bool)]
        outcome["true_min"] = min(outcome["true_min"], float(honest.min()))
        outcome["true_max"] = max(outcome["true_max"], float(honest.max()))
        flower_result, _ = aggregate(Krum(num_malicious_nodes=f), replies)
        byzagg_result, _ = aggregate(Robust("krum", f=f), replies)
        flower_choice = which_client(flower_result, weights)
        byzagg_choice = which_client(byzagg_result, weights)
        outcome["flower_wrong"] += flower_choice != true_choice
        outcome["byzagg_wrong"] += byzagg_choice != true_choice
        outcome["flower_byzantine"] += flower_choice < f
        outcome["byzagg_byzantine"] += byzagg_choice < f
        log(f"cancellation trial {trial}: exact choice {true_choice}, Flower {flower_choice}, byzagg {byzagg_choice}")
    return outcome


def nan_case(n: int, d: int) -> list[tuple[str, float, float]]:
    """One client all NaN: the fraction of NaN in each side's output."""
    f = f_for(n)
    global_row, weights = clients(n, d, seed=7)
    weights[0] = np.nan
    replies = Replies(weights, global_row)
    rows = []
    for name, flower_strategy, byzagg_strategy in pairs(n, f):
        flower_result, _ = aggregate(flower_strategy, replies)
        byzagg_result, _ = aggregate(byzagg_strategy, replies)
        rows.append((name, float(np.isnan(flower_result).mean()), float(np.isnan(byzagg_result).mean())))
    return rows


def agreement_case(ns, d: int) -> list[tuple[str, int, int, float, float]]:
    """Max |Flower - byzagg| on well-conditioned data (weights ~0.1, updates ~0.01)."""
    rows = []
    for n in ns:
        f = f_for(n)
        global_row, weights = clients(n, d, seed=11 + n)
        replies = Replies(weights, global_row)
        for name, flower_strategy, byzagg_strategy in pairs(n, f):
            flower_result, _ = aggregate(flower_strategy, replies)
            byzagg_result, _ = aggregate(byzagg_strategy, replies)
            difference = float(np.max(np.abs(flower_result.astype(np.float64) - byzagg_result)))
            scale = float(np.max(np.abs(weights - global_row[None, :])))
            rows.append((name, n, f, difference, scale))
    return rows


def paper_bulyan_selection(G: torch.Tensor, f: int) -> list[int]:
    """The paper's selection: Krum applied repeatedly to the rows not yet selected, its
    scores recomputed on that set with n' - f - 2 neighbours (at least 0)."""
    D = byzagg.pairwise_distances(G, squared=True).double()
    remaining = list(range(G.shape[0]))
    theta = G.shape[0] - 2 * f
    selected = []
    for _ in range(theta):
        k = max(len(remaining) - f - 2, 0)
        best, best_score = None, None
        for i in remaining:
            others = torch.tensor([D[i, j] for j in remaining if j != i], dtype=torch.float64)
            score = float(others.sort().values[:k].sum()) if k else 0.0
            if best_score is None or score < best_score:
                best, best_score = i, score
        selected.append(best)
        remaining.remove(best)
    return sorted(selected)


def bulyan_from_selection(G: torch.Tensor, selection: list[int], f: int) -> torch.Tensor:
    """Bulyan's second step on the selected rows: per coordinate, the mean of the
    beta = theta - 2f values nearest their median."""
    rows = G[selection].double()
    beta = len(selection) - 2 * f
    median = rows.median(dim=0).values if len(selection) % 2 else rows.sort(dim=0).values[
        len(selection) // 2 - 1 : len(selection) // 2 + 1].mean(dim=0)
    order = (rows - median).abs().argsort(dim=0, stable=True)[:beta]
    return rows.gather(0, order).mean(dim=0)


def bulyan_case(trials: int, n: int = 11, d: int = 50) -> dict:
    """Random clients (two clusters, so that the selections can differ): how often Flower's
    one-shot selection differs from the paper's, and the outputs then."""
    f = f_for(n)
    differ, output_differs, largest, paper_gap = 0, 0, 0.0, 0.0
    for trial in range(trials):
        rng = np.random.default_rng(5000 + trial)
        weights = rng.standard_normal((n, d)).astype(np.float32)
        weights[: f + 1] += rng.standard_normal(d).astype(np.float32) * 1.5  # a second cluster
        global_row = np.zeros(d, dtype=np.float32)
        replies = Replies(weights, global_row)
        records = [m.content for m in replies.messages()]
        chosen = select_multikrum(records, num_malicious_nodes=f, num_nodes_to_select=n - 2 * f)
        flower_selection = sorted(which_client(flat(c["arrays"]), weights) for c in chosen)
        paper_selection = paper_bulyan_selection(torch.from_numpy(weights), f)
        flower_result, _ = aggregate(Bulyan(num_malicious_nodes=f), replies)
        byzagg_result, _ = aggregate(Robust("bulyan", f=f), replies)
        paper = bulyan_from_selection(torch.from_numpy(weights), paper_selection, f).numpy()
        paper_gap = max(paper_gap, float(np.max(np.abs(paper - byzagg_result))))
        if flower_selection != paper_selection:
            differ += 1
            gap = float(np.max(np.abs(flower_result.astype(np.float64) - byzagg_result)))
            output_differs += gap > 1e-5
            largest = max(largest, gap)
    return dict(
        n=n, f=f, d=d, trials=trials, differ=differ, output_differs=output_differs, largest=largest, paper_gap=paper_gap
    )


# ---------------------------------------------------------------------------------------
# report


def write_report(path, rows, cancellation, nan_rows, agreement, bulyan, settings, elapsed):
    lines = [
        "# Flower's strategies against byzagg's, through byzagg.flower.Robust",
        "",
        (f"Generated by `python benchmarks/bench_flower.py {settings['argv']}` on "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, {elapsed / 60:.1f} min: flwr {flwr.__version__}, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads; OPENBLAS_NUM_THREADS="
        f"{os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}), load average {os.getloadavg()[0]:.1f} at the end, byzagg backend: {byzagg.backend()}, "
        f"Python {platform.python_version()}, {os.cpu_count()} cores (shared: read the ratios, not the ms)."),
        "",
        "Each time is one whole `aggregate_train(server_round, replies)` of the strategy on the same",
        "reply messages (float32 model weights in three arrays), the least of the repeats: reading the",
        "arrays, the rule, writing the result. f = (n - 3) // 4, the largest f Bulyan accepts.",
        "ratio = Flower's time / byzagg's time (> 1: byzagg faster). max|diff| = the largest",
        "difference of the two results (weights ~0.1, updates ~0.01).",
        "",
        "## Time per aggregation",
        "",
        "| rule | n | d | f | Flower ms | byzagg ms | ratio | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['rule']} | {r['n']} | {r['d']:.0e} | {r['f']} | {r['flower'] * 1e3:.1f} | {r['byzagg'] * 1e3:.1f} | "
            f"**{r['flower'] / r['byzagg']:.1f}** | {r['difference']:.1e} |"
        )
    if cancellation:
        c = cancellation
        lines += [
            "",
            "## float32 cancellation (Krum on full model weights)",
            "",
            f"n = {c['n']}, f = {c['f']}, d = {c['d']:.0e}: model weights ~N(0, 1) (||w||^2 ~ 1e6), honest",
            f"updates with pairwise squared distances ~2, two (identical) Byzantine clients {BYZANTINE_OFFSET} away from the honest mean",
            f"(farther from everyone than the honest clients are from each other); {c['trials']} draws.",
            "",
            f"- true squared distances between honest clients: {c['true_min']:.2f} to {c['true_max']:.2f}; Flower's",
            f"  Gram-expansion distances (float32, on the weights) are off by {c['error_min']:+.2f} to {c['error_max']:+.2f}.",
            (f"- Krum's choice differs from the exact one: Flower {c['flower_wrong']} / {c['trials']}, "
            f"byzagg {c['byzagg_wrong']} / {c['trials']}."),
            (f"- Krum selects a Byzantine client: Flower {c['flower_byzantine']} / {c['trials']}, "
            f"byzagg {c['byzagg_byzantine']} / {c['trials']}."),
        ]
    if nan_rows:
        lines += [
            "",
            f"## One NaN client (n = {settings['nan_n']}, d = {settings['nan_d']:.0e}, f = {f_for(settings['nan_n'])})",
            "",
            "| rule | Flower: NaN share of the output | byzagg: NaN share of the output |",
            "|---|---:|---:|",
        ]
        lines += [f"| {name} | {a:.3f} | {b:.3f} |" for name, a, b in nan_rows]
    if agreement:
        lines += [
            "",
            f"## Agreement at odd and even n (d = {settings['agree_d']:.0e}, well-conditioned data)",
            "",
            "max |Flower - byzagg| over the model, against the largest |update| (~0.05).",
            "",
            "| rule | n | f | max abs diff | largest abs update |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [f"| {name} | {n} | {f} | {diff:.1e} | {scale:.1e} |" for name, n, f, diff, scale in agreement]
    if bulyan:
        b = bulyan
        lines += [
            "",
            "## Bulyan's selection",
            "",
            f"n = {b['n']}, f = {b['f']}, d = {b['d']}, {b['trials']} random draws (two clusters). The paper (and",
            "byzagg.bulyan) selects theta = n - 2f rows by Krum applied repeatedly, each time on the rows not",
            "yet selected with the scores recomputed there; Flower's Bulyan takes the theta lowest one-shot",
            "Multi-Krum scores.",
            "",
            f"- the selected sets differ in {b['differ']} / {b['trials']} draws; the aggregates then differ in",
            f"  {b['output_differs']} of them (largest max |difference| {b['largest']:.2e}, rows ~N(0, 1)).",
            "- byzagg's result against Bulyan's second step applied to the paper's selection (computed here",
            f"  from byzagg.pairwise_distances): max |difference| {b['paper_gap']:.1e} over all draws.",
        ]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None):
    from pathlib import Path

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="benchmarks/results/flower.md")
    parser.add_argument("--quick", action="store_true", help="d = 1e4, 1e5 only and fewer draws (a smoke run)")
    parser.add_argument("--max-d", type=int, default=max(GRID_D))
    parser.add_argument("--repeats", type=int, default=3, help="repeats at d <= 1e5 (1e6: 2)")
    parser.add_argument("--cancellation-trials", type=int, default=5)
    parser.add_argument("--bulyan-trials", type=int, default=50)
    parser.add_argument("--threads", type=int, default=None, help="threads of both sides (read before the imports)")
    args = parser.parse_args(argv)
    grid_d = (10_000, 100_000) if args.quick else tuple(d for d in GRID_D if d <= args.max_d)
    start = time.perf_counter()

    def log(text):
        print(text, flush=True)

    log(f"byzagg backend: {byzagg.backend()}; flwr {flwr.__version__}; torch threads {torch.get_num_threads()}")
    rows = time_grid(GRID_N, grid_d, args.repeats, 1 if args.quick else 2, log)
    cancellation = cancellation_case(1 if args.quick else args.cancellation_trials, log)
    log(str(cancellation))
    nan_n, nan_d = 11, 100_000
    nan_rows = nan_case(nan_n, nan_d)
    log(str(nan_rows))
    agreement = agreement_case((10, 11), 100_000)
    log(str(agreement))
    bulyan = bulyan_case(20 if args.quick else args.bulyan_trials)
    log(str(bulyan))
    settings = dict(argv=" ".join(sys.argv[1:]), nan_n=nan_n, nan_d=nan_d, agree_d=100_000)
    write_report(Path(args.out), rows, cancellation, nan_rows, agreement, bulyan, settings, time.perf_counter() - start)
    log(f"wrote {args.out} in {(time.perf_counter() - start) / 60:.1f} min")


if __name__ == "__main__":
    main()

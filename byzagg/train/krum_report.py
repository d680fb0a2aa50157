"""Figures and tables of the Krum paper's grids (Blanchard et al. 2017, supplementary
Section 5), drawn like the source's figures. `report.make_report` calls `krum_section` for
the runs of the models ``tabular-mlp`` and ``mnist-convnet`` (grids ``krum-paper-*``).

- ``krum-rules-<dataset>-<attack>.png`` (source Figures 4 and 5): test accuracy against the
  round, one curve per rule (mean over seeds, band = one std).
- ``krum-omniscient-error-<dataset>.png`` (source Figure 2): test error against the round,
  one panel per mini-batch size, averaging without Byzantine workers vs Multi-Krum facing
  the omniscient workers.
- ``krum-omniscient-batch-<dataset>.png`` (source Figure 3): test accuracy after the last
  round against the mini-batch size, the same two setups (mean +- std over seeds).
The table: per setup, the accuracy after 50 and 100 rounds, the mean accuracy over the run
(the area under the curve: how fast a rule learns), the final and the best accuracy, the
honest workers' training loss over the last tenth of the rounds (NaN: the run diverged), the
share of rounds where the rule's output has a negative cosine with the honest workers' mean
(the attack got through), and for 1-p Krum the fraction of rounds it averaged.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

MODELS = ("tabular-mlp", "mnist-convnet")
RULE_ORDER = ("average", "multi_krum", "krum_1p", "krum", "medoid")
RULE_LABELS = {
    "average": "averaging",
    "multi_krum": "Multi-Krum (mKrum)",
    "krum_1p": "1-p Krum",
    "krum": "Krum",
    "medoid": "Medoid",
}
COLOURS = {
    "average": "black",
    "multi_krum": "tab:blue",
    "krum_1p": "tab:green",
    "krum": "tab:red",
    "medoid": "tab:purple",
}


def is_krum_paper(result: dict) -> bool:
    return result["config"]["model"] in MODELS


def _series(runs: list[dict]):
    length = min(len(r["eval"]["accuracy"]) for r in runs)
    steps = np.asarray(runs[0]["eval"]["step"][:length])
    values = np.asarray([r["eval"]["accuracy"][:length] for r in runs], dtype=float)
    return steps, values.mean(axis=0), values.std(axis=0) if len(runs) > 1 else 0 * values[0]


def _at(result: dict, step: int) -> float:
    """Accuracy at the first evaluation at or after `step` (NaN if none)."""
    for s, a in zip(result["eval"]["step"], result["eval"]["accuracy"]):
        if s >= step:
            return a
    return float("nan")


def _mean_std(values) -> tuple[float, float]:
    values = [v for v in values if v == v]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _last_loss(result: dict) -> float:
    losses = np.asarray(result["study"]["loss"], dtype=float)
    return float(losses[-max(1, len(losses) // 10) :].mean()) if losses.size else float("nan")


def _against(result: dict) -> float:
    cosines = np.asarray(result["study"].get("cos_aggregate_honest", []), dtype=float)
    return float(np.mean(cosines < 0)) if cosines.size else float("nan")


def _mean_std_nan(values) -> tuple[float, float]:
    """Mean and std over seeds, NaN when any seed is NaN (a diverged run)."""
    if any(v != v for v in values):
        return float("nan"), float("nan")
    return _mean_std(values)


def _label(config: dict) -> str:
    label = RULE_LABELS.get(config["rule"], config["rule"])
    if config["attack"] not in ("none", "honest"):
        label += f" vs {config['attack']}"
    return label


def setups(results: list[dict]) -> dict[tuple, list[dict]]:
    """(dataset, model, n, f, attack, rule, batch size, lr, steps) -> runs (seeds)."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        c = r["config"]
        groups[(c["dataset"], c["model"], c["n"], c["f"], c["attack"], c["rule"], c["batch_size"], c["lr"], c["steps"])].append(r)
    return groups


def summary_rows(results: list[dict]) -> list[dict]:
    rows = []
    for key, runs in sorted(setups(results).items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][6], kv[0][4], _rank(kv[0][5]))):
        dataset, model, n, f, attack, rule, batch, lr, steps = key
        choices = [r.get("krum_1p_choices") for r in runs if r.get("krum_1p_choices")]
        rows.append(
            {
                "dataset": dataset,
                "model": model,
                "n": n,
                "f": f,
                "attack": attack,
                "rule": rule,
                "batch_size": batch,
                "lr": lr,
                "steps": steps,
                "seeds": sorted(r["config"]["seed"] for r in runs),
                "parameters": runs[0].get("parameters", runs[0].get("dimension")),
                "accuracy_50": _mean_std([_at(r, 50) for r in runs]),
                "accuracy_100": _mean_std([_at(r, 100) for r in runs]),
                "mean_accuracy": _mean_std([float(np.mean(r["eval"]["accuracy"])) for r in runs]),
                "final_accuracy": _mean_std([r["eval"]["accuracy"][-1] for r in runs]),
                "max_accuracy": _mean_std([max(r["eval"]["accuracy"]) for r in runs]),
                # the honest workers' mean training loss over the last tenth of the rounds (NaN: diverged)
                "final_loss": _mean_std_nan([_last_loss(r) for r in runs]),
                # rounds where the rule's output points away from the honest mean: the attack got in
                "rounds_against_honest": _mean_std([_against(r) for r in runs]),
                "averaged_fraction": _mean_std([c.count("average") / len(c) for c in choices]) if choices else None,
                "wall_s": _mean_std([r["timing"]["wall_s"] for r in runs]),
            }
        )
    return rows


def _rank(rule: str) -> int:
    return RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER)


def _pct(pair) -> str:
    mean, std = pair
    return "-" if mean != mean else f"{100 * mean:.1f} ± {100 * std:.1f}"


def _loss(pair) -> str:
    mean, std = pair
    return "NaN (diverged)" if mean != mean else f"{mean:.3g} ± {std:.2g}"


def markdown(rows: list[dict]) -> str:
    lines = [
        "| data set | model (d) | n | f | attack | rule | batch | acc. @50 (%) | acc. @100 (%) | mean acc. (%) "
        "| final acc. (%) | max acc. (%) | train loss, last 10% | rounds against the honest mean (%) "
        "| 1-p Krum averaged | seeds | wall s/run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        averaged = "-" if r["averaged_fraction"] is None else f"{100 * r['averaged_fraction'][0]:.1f}% of rounds"
        lines.append(
            f"| {r['dataset']} | {r['model']} ({r['parameters']:,}) | {r['n']} | {r['f']} | {r['attack']} | {r['rule']} "
            f"| {r['batch_size']} | {_pct(r['accuracy_50'])} | {_pct(r['accuracy_100'])} | {_pct(r['mean_accuracy'])} "
            f"| {_pct(r['final_accuracy'])} | {_pct(r['max_accuracy'])} | {_loss(r['final_loss'])} "
            f"| {_pct(r['rounds_against_honest'])} | {averaged} "
            f"| {len(r['seeds'])} "
            f"| {r['wall_s'][0]:.1f} |"
        )
    return "\n".join(lines) + "\n"


def plot(results: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report import save_figure

    written = []
    groups = setups(results)
    # Figures 4 and 5: the tabular runs, one figure per (data set, attack family)
    tabular: dict[tuple, list[tuple]] = defaultdict(list)
    for key in groups:
        dataset, model, n, f, attack, rule, batch, lr, steps = key
        if model == "tabular-mlp":
            family = attack.partition(":")[0]
            tabular[(dataset, family, n, f, batch, lr, steps)].append(key)
    for (dataset, family, n, f, batch, lr, steps), keys in sorted(tabular.items()):
        fig, ax = plt.subplots(figsize=(6.5, 4.2))
        for key in sorted(keys, key=lambda k: (_rank(k[5]), k[4])):
            runs = groups[key]
            s, m, sd = _series(runs)
            rule, attack = key[5], key[4]
            extra = attack != family  # a variant of the attack (e.g. gaussian:variance=40000)
            colour = COLOURS.get(rule, "grey") if not extra else "tab:orange"
            label = RULE_LABELS.get(rule, rule) + (f" ({attack})" if extra else "") + f" [{len(runs)} seeds]"
            ax.plot(s, m, color=colour, label=label, ls="--" if extra else "-")
            ax.fill_between(s, m - sd, m + sd, color=colour, alpha=0.15)
        who = "no Byzantine worker" if family == "honest" else f"{f} of {n} workers {family}"
        ax.set_title(f"{dataset}, MLP, mini-batch {batch}, {who}", fontsize=10)
        ax.set_xlabel("round")
        ax.set_ylabel("cross-validation (test) accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
        figure = "Figure 4" if family == "honest" else "Figure 5"
        written.append(save_figure(fig, out / f"krum-rules-{dataset}-{family}.png", f"Krum paper, {figure}"))
    # Figures 2 and 3: the ConvNet runs
    convnet: dict[tuple, dict[int, dict[str, list[dict]]]] = defaultdict(lambda: defaultdict(dict))
    for key, runs in groups.items():
        dataset, model, n, f, attack, rule, batch, lr, steps = key
        if model == "mnist-convnet":
            convnet[(dataset, n, lr, steps)][batch][f"{rule}|{attack}|{f}"] = runs
    for (dataset, n, lr, steps), by_batch in sorted(convnet.items()):
        batches = sorted(by_batch)
        fig, axes = plt.subplots(1, len(batches), figsize=(4.2 * len(batches), 3.8), sharey=True, squeeze=False)
        for ax, batch in zip(axes[0], batches):
            for name, runs in sorted(by_batch[batch].items()):
                rule, attack, f = name.split("|")
                s, m, sd = _series(runs)
                share = f"{100 * int(f) / n:.0f}% {attack}" if attack != "none" else "0% Byzantine"
                colour = COLOURS.get(rule, "grey")
                ax.plot(s, 1 - m, color=colour, label=f"{RULE_LABELS.get(rule, rule)}, {share} [{len(runs)} seeds]")
                ax.fill_between(s, 1 - m - sd, 1 - m + sd, color=colour, alpha=0.15)
            ax.set_title(f"mini-batch {batch}", fontsize=10)
            ax.set_xlabel("round")
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
        axes[0][0].set_ylabel("cross-validation (test) error")
        axes[0][-1].legend(fontsize=7)
        written.append(
            save_figure(fig, out / f"krum-omniscient-error-{dataset}.png", f"Krum paper, Figure 2: ConvNet on {dataset}, n={n}")
        )
        fig, ax = plt.subplots(figsize=(5.5, 4))
        names = sorted({name for b in batches for name in by_batch[b]})
        for name in names:
            rule, attack, f = name.split("|")
            xs = [b for b in batches if name in by_batch[b]]
            stats = [_mean_std([r["eval"]["accuracy"][-1] for r in by_batch[b][name]]) for b in xs]
            share = f"{100 * int(f) / n:.0f}% {attack}" if attack != "none" else "0% Byzantine"
            ax.errorbar(
                xs, [m for m, _ in stats], yerr=[s for _, s in stats], marker="o", capsize=3,
                color=COLOURS.get(rule, "grey"), label=f"{RULE_LABELS.get(rule, rule)}, {share}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xticks(batches, [str(b) for b in batches])
        ax.set_xlabel("mini-batch size")
        ax.set_ylabel(f"test accuracy after {steps} rounds")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(
            save_figure(fig, out / f"krum-omniscient-batch-{dataset}.png", f"Krum paper, Figure 3: ConvNet on {dataset}, n={n}")
        )
    return written


def krum_section(results: list[dict], out: Path, plots: bool = True) -> tuple[str, list[dict], list[Path]]:
    """The markdown section (table, then figures), the rows, the figures written."""
    rows = summary_rows(results)
    figures = plot(results, out) if plots else []
    text = (
        "## Krum paper grids (Blanchard et al. 2017, supplementary Section 5)\n\n"
        "Accuracy = top-1 accuracy on the held-out test split; @50 / @100: after 50 / 100 rounds; mean acc.: "
        "the mean over all evaluations of a run (the area under its curve: how fast it learns); mean ± std over "
        "seeds.\n\n" + markdown(rows)
    )
    if figures:
        text += "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in figures) + "\n"
    return text, rows, figures

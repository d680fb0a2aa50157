"""Figures and a markdown table from a folder of run files (``<dir>/**/run-json/*.json``,
or ``*.json.gz`` as ``byzagg-repro compress`` leaves them).

Figures (PNG):
- ``accuracy-<dataset>-<preset>-f<f>-<attack>-<lr>.png``: top-1 accuracy against the step,
  mean and std over seeds, one curve per rule, momentum at the server (left) and at the
  workers (right), the unattacked baseline (average of the n - f honest workers) dashed.
- ``ratio-<dataset>-<preset>-f<f>-<attack>-<lr>.png``: the variance-norm ratio of the
  submitted honest vectors, server vs worker momentum, one panel per rule (log scale:
  geometric mean over seeds, band = one std of log10), and dashed the ratio of the raw
  gradients of the worker-momentum runs (same trajectory, before momentum).
- ``curvature-<dataset>-<preset>-f<f>-<attack>-<lr>.png``: the curvature term s_t
  (``study.curvature``), server vs worker momentum, one panel per rule, mean and std over
  seeds; s_t is signed, so a symlog axis when it spans two decades or more (value_scale).
Table (``report.md``, also ``summary.json``): per attacked setup, the maximum accuracy over
the run (mean +- std over seeds) with momentum at the server and at the workers, the gain,
the baseline's, the median variance-norm ratio, the mean wall time per run; then the
figures, one section per attacked setup.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import defaultdict
from pathlib import Path

import numpy as np

from . import krum_report
from .experiment import load_result, stored_config


def load_results(folders) -> list[dict]:
    """Complete run files under one folder or a list of folders (searched recursively).
    Raises FileNotFoundError for a folder that does not exist."""
    folders = [folders] if isinstance(folders, (str, Path)) else list(folders)
    for folder in folders:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
    results = []
    paths = sorted(
        p for folder in folders for pattern in ("run-json/*.json", "run-json/*.json.gz") for p in Path(folder).rglob(pattern)
    )
    plain = set(paths)
    for path in paths:
        if path.name.endswith(".json.gz") and path.with_name(path.name[: -len(".gz")]) in plain:
            continue  # the same run, uncompressed, is read instead
        result = load_result(path)
        if result is not None:
            results.append(result)
    return results


def lr_tag(config: dict) -> str:
    tag = f"lr{config['lr']:g}"
    if config.get("lr_decay"):
        tag += f"d{config['lr_decay']:g}e{config['lr_decay_every']}"
    return tag


def group_key(config: dict) -> tuple:
    """Everything but seed, rule and momentum placement: one figure."""
    return (
        config["dataset"],
        config["preset"],
        config["n"],
        config["f"],
        config["attack"],
        lr_tag(config),
        config["steps"],
    )


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def curves(runs: list[dict], section: str, field: str, step_field: str = "step"):
    """Mean and std over runs of a per-step series (runs truncated to the shortest)."""
    length = min(len(r[section][field]) for r in runs)
    steps = np.asarray(runs[0][section][step_field][:length])
    values = np.asarray([r[section][field][:length] for r in runs], dtype=float)
    with np.errstate(all="ignore"):
        return steps, np.nanmean(values, axis=0), (np.nanstd(values, axis=0) if len(runs) > 1 else 0 * values[0])


def log_curves(runs: list[dict], section: str, field: str):
    """Geometric mean and the band 10^(mean(log10) +- std(log10)) over runs: what a log
    axis shows faithfully (an arithmetic std band dips to zero there)."""
    length = min(len(r[section][field]) for r in runs)
    steps = np.asarray(runs[0][section]["step"][:length])
    with np.errstate(all="ignore"):
        values = np.log10(np.asarray([r[section][field][:length] for r in runs], dtype=float))
        values[~np.isfinite(values)] = np.nan
        mean = np.nanmean(values, axis=0)
        std = np.nanstd(values, axis=0) if len(runs) > 1 else 0 * mean
    return steps, 10**mean, 10 ** (mean - std), 10 ** (mean + std)


def setup_id(result: dict) -> str:
    """The run's setup id computed from its config (so that files written under the run id
    scheme before the steps and rule parameters were in it group with newer ones)."""
    config = stored_config(result)
    return config.setup_id() if config is not None else result["setup_id"]


def summarise(results: list[dict]) -> list[dict]:
    by_setup: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_setup[setup_id(r)].append(r)
    rows = []
    for setup, runs in sorted(by_setup.items()):
        c = runs[0]["config"]
        max_acc = [max(r["eval"]["accuracy"]) for r in runs]
        final_acc = [r["eval"]["accuracy"][-1] for r in runs]
        ratios = [float(np.nanmedian(np.asarray(r["study"]["vn_ratio_submitted"], dtype=float))) for r in runs]
        # within one trajectory: submitted (momentum) ratio over sampled (gradient) ratio,
        # and the fraction of steps (after the first) where momentum lowered the ratio
        with np.errstate(all="ignore"):
            reduction = [
                np.asarray(r["study"]["vn_ratio_submitted"][1:], dtype=float)
                / np.asarray(r["study"]["vn_ratio_sampled"][1:], dtype=float)
                for r in runs
            ]
        rows.append(
            {
                "setup_id": setup,
                "dataset": c["dataset"],
                "preset": c["preset"],
                "n": c["n"],
                "f": c["f"],
                "rule": c["rule"],
                "attack": c["attack"],
                "momentum": c["momentum"],
                "lr": lr_tag(c),
                "steps": c["steps"],
                "seeds": sorted(r["config"]["seed"] for r in runs),
                "max_accuracy": mean_std(max_acc),
                "final_accuracy": mean_std(final_acc),
                "median_vn_ratio": mean_std(ratios),
                "median_submitted_over_sampled": mean_std([float(np.nanmedian(x)) for x in reduction]),
                "fraction_steps_lowered": mean_std([float(np.mean(x < 1)) for x in reduction]),
                # the first sixth of the run (50 of 300 steps): "before approaching convergence"
                "fraction_early_steps_lowered": mean_std(
                    [float(np.mean(x[: max(1, len(x) // 6)] < 1)) for x in reduction]
                ),
                "max_accuracy_runs": max_acc,
                "wall_s": mean_std([r["timing"]["wall_s"] for r in runs]),
                "steps_per_s": mean_std([r["timing"]["steps_per_s"] for r in runs]),
            }
        )
    return rows


def _fmt(pair: tuple[float, float], percent: bool = True) -> str:
    mean, std = pair
    if math.isnan(mean):
        return "-"
    if percent:
        return f"{100 * mean:.1f} ± {100 * std:.1f}"
    return f"{mean:.3g} ± {std:.2g}"


def markdown_table(rows: list[dict]) -> str:
    index = {
        (r["dataset"], r["preset"], r["n"], r["f"], r["rule"], r["attack"], r["momentum"], r["lr"], r["steps"]): r
        for r in rows
    }
    lines = [
        (
            "| data set | preset | n | f | lr | attack | rule | max acc. server (%) | max acc. worker (%) | gain (points) "
            "| baseline (%) | median VN ratio server | median VN ratio worker | seeds | wall s/run |"
        ),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for r in rows:
        if r["attack"] == "none":
            continue
        key = (r["dataset"], r["preset"], r["n"], r["f"], r["rule"], r["attack"], r["lr"], r["steps"])
        if key in seen:
            continue
        seen.add(key)
        server = index.get((*key[:6], "server", *key[6:]))
        worker = index.get((*key[:6], "worker", *key[6:]))
        baseline = index.get(
            (r["dataset"], r["preset"], r["n"], r["f"], "average", "none", "server", r["lr"], r["steps"])
        )
        gain = "-"
        if server and worker:
            gain = f"{100 * (worker['max_accuracy'][0] - server['max_accuracy'][0]):+.1f}"
        seeds = len((server or worker)["seeds"])
        wall = statistics.fmean(x["wall_s"][0] for x in (server, worker) if x)
        lines.append(
            f"| {r['dataset']} | {r['preset']} | {r['n']} | {r['f']} | {r['lr']} | {r['attack']} | {r['rule']} "
            f"| {_fmt(server['max_accuracy']) if server else '-'} | {_fmt(worker['max_accuracy']) if worker else '-'} "
            f"| {gain} | {_fmt(baseline['max_accuracy']) if baseline else '-'} "
            f"| {_fmt(server['median_vn_ratio'], False) if server else '-'} "
            f"| {_fmt(worker['median_vn_ratio'], False) if worker else '-'} | {seeds} | {wall:.1f} |"
        )
    return "\n".join(lines) + "\n"


def claims_markdown(rows: list[dict]) -> str:
    """The paper's three accuracy claims and the ratio claim, checked on these rows."""
    index = {
        (r["dataset"], r["preset"], r["f"], r["rule"], r["attack"], r["momentum"], r["lr"], r["steps"]): r for r in rows
    }
    gains = []
    for (dataset, preset, f, rule, attack, momentum, lr, steps), r in index.items():
        if momentum == "worker" and attack != "none":
            server = index.get((dataset, preset, f, rule, attack, "server", lr, steps))
            if server:
                gains.append((r["max_accuracy"][0] - server["max_accuracy"][0], f"{rule}/{attack}/f={f}/{lr}"))
    lines = ["## Claims checked on these runs", ""]
    if gains:
        values = sorted(g for g, _ in gains)
        best, worst = max(gains), min(gains)
        lines.append(
            f"- Worker momentum vs server momentum, max accuracy (paper: +5 to +50 points): over {len(gains)} attacked "
            f"setups the gain is {100 * values[0]:+.1f} to {100 * values[-1]:+.1f} points (median "
            f"{100 * statistics.median(values):+.1f}; best {best[1]}, worst {worst[1]}); positive in "
            f"{sum(v > 0 for v in values)}/{len(values)}, >= +5 in {sum(v >= 0.05 for v in values)}/{len(values)}."
        )
    for (dataset, preset, f, rule, attack, momentum, lr, steps), r in sorted(index.items()):
        if rule == "bulyan" and attack == "little" and momentum == "worker":
            base = index.get((dataset, preset, f, "average", "none", "server", lr, steps))
            if base:
                loss = base["max_accuracy"][0] - r["max_accuracy"][0]
                lines.append(
                    f"- Bulyan, little, worker momentum, f={f}, {lr} (paper: loses about 1 point): "
                    f"{100 * r['max_accuracy'][0]:.1f}% vs {100 * base['max_accuracy'][0]:.1f}% unattacked, "
                    f"a loss of {100 * loss:.1f} points."
                )
    for (dataset, preset, f, rule, attack, momentum, lr, steps), r in sorted(index.items()):
        if rule == "krum" and attack == "little" and momentum == "server":
            lines.append(
                f"- Krum, little, server momentum, f={f}, {lr} (paper, MNIST, largest lr: tops near 80%): "
                f"max {_fmt(r['max_accuracy'])}%."
            )
    lowered = [r["fraction_steps_lowered"][0] for r in rows if r["momentum"] == "worker"]
    early = [r["fraction_early_steps_lowered"][0] for r in rows if r["momentum"] == "worker"]
    if lowered:
        lines.append(
            f"- Variance-norm ratio, same trajectory, submitted momentum vs sampled gradients: lower at "
            f"{100 * statistics.fmean(lowered):.0f}% of the steps on average over {len(lowered)} worker-momentum "
            f"setups, and at {100 * statistics.fmean(early):.0f}% of the steps of the first sixth of the runs "
            "(paper: a decrease before approaching convergence). Across trajectories (server vs worker runs) the "
            "comparison is confounded by convergence and by the attack's success: see the ratio figures."
        )
    return "\n".join(lines) + "\n"


PROVENANCE_FIELDS = ("cpu_model", "cpu_isa", "torch", "torch_git", "threads")


def provenance_rows(results: list[dict]) -> list[list]:
    """[cpu model, SIMD path, torch, torch git, threads, number of runs] per distinct
    environment of these runs; "not recorded" where a run file (older ones) lacks the field."""
    counts: dict[tuple, int] = defaultdict(int)
    for r in results:
        env = r.get("environment", {})
        counts[tuple(str(env[k]) if env.get(k) is not None else "not recorded" for k in PROVENANCE_FIELDS)] += 1
    return [list(k) + [v] for k, v in sorted(counts.items())]


def provenance_markdown(results: list[dict]) -> str:
    """Where the runs ran: CPU model, the SIMD path of byzagg's kernels, the torch build and
    the thread count (bit-identity holds only within one of these rows)."""
    lines = [
        "## Provenance",
        "",
        "| CPU model | SIMD path | torch | torch git | threads | runs |",
        "|---|---|---|---|---|---|",
    ]
    lines += [f"| {' | '.join(str(x) for x in row)} |" for row in provenance_rows(results)]
    return "\n".join(lines) + "\n"


PLACEMENT_COLOURS = (("server", "tab:red"), ("worker", "tab:blue"))


def mean_band(runs: list[dict], section: str, field: str):
    """curves() as (steps, mean, mean - std, mean + std), the shape log_curves() returns."""
    steps, mean, std = curves(runs, section, field)
    return steps, mean, mean - std, mean + std


def value_scale(series) -> tuple[str, dict]:
    """A y scale for these curves: linear unless their nonzero magnitudes span two decades or
    more; then log if all are positive, else symlog, linear below the power of ten under the 10th
    percentile of the magnitudes (signed values such as s_t)."""
    values = np.concatenate([np.asarray(v, dtype=float).ravel() for v in series]) if series else np.zeros(0)
    values = values[np.isfinite(values)]
    magnitudes = np.abs(values[values != 0])
    if magnitudes.size == 0 or magnitudes.max() < 100 * magnitudes.min():
        return "linear", {}
    if (values > 0).all():
        return "log", {}
    # a power of ten, so that the ticks at +-linthresh are decades like the others
    return "symlog", {"linthresh": float(10 ** np.floor(np.log10(np.percentile(magnitudes, 10))))}


def grid_wall_text(results_dir: Path, results: list[dict]) -> str:
    """A sentence on a grid's wall time: its invocations' (grid-timing.json) and its runs' own."""
    runs_s = sum(r["timing"]["wall_s"] for r in results)
    timing = results_dir / "grid-timing.json"
    text = f"the {len(results)} runs' own wall times add up to {runs_s / 60:.1f} min ({runs_s / max(len(results), 1):.0f} s a run)"
    if timing.exists():
        history = [h for h in json.loads(timing.read_text()) if h.get("ran")]  # not the no-op re-invocations
        wall = sum(h["wall_s"] for h in history)
        loads = [h[key][0] for h in history for key in ("loadavg_start", "loadavg_end") if key in h]
        parts = "; ".join(
            f"{h['ran']} runs in {h['wall_s'] / 60:.1f} min"
            + (f" (seeds {h['seeds']})" if h.get("seeds") else "")
            + (f" (filters {' '.join(h['filters'])})" if h.get("filters") else "")
            + (" (stopped by hand, timing written by hand)" if h.get("stopped") else "")
            for h in history
        )
        load = f"load average {min(loads):.1f}-{max(loads):.1f} at the recorded starts and ends" if loads else ""
        text = (
            f"the invocations' wall times add up to {wall / 60:.1f} min, each at `--jobs 1` (some ran side by side, so "
            f"less time passed): {parts} ({load}: the 2 cores were shared with other work throughout; "
            f"`grid-timing.json` has each invocation); " + text
        )
    return text


def replace_marked(document: str, text: str, begin: str, end: str) -> str:
    """The document with the part between the markers `begin` and `end` replaced by `text`
    (appended at the end, between the markers, when it has none): the generated sections
    of docs/reproduction.md."""
    block = f"{begin}\n{text.rstrip()}\n{end}\n"
    if begin in document and end in document:
        head, _, rest = document.partition(begin)
        _, _, tail = rest.partition(end)
        return head + block + tail.lstrip("\n")
    return document.rstrip("\n") + "\n\n" + block


def doc_relative(doc: Path, path: Path) -> Path:
    """`path` (relative to the working folder) as a link from the markdown file `doc`."""
    return Path(*([".."] * len(doc.parent.resolve().relative_to(Path.cwd().resolve()).parts))) / path


def write_study_report(out: Path, text: str, doc, doc_section, begin: str, end: str) -> dict:
    """Writes `text` to out/report.md and, with `doc` (a markdown file), replaces the part of
    it between the markers by doc_section(link) (link: `out` as seen from the doc)."""
    from .experiment import write_atomic

    write_atomic(out / "report.md", lambda stream: stream.write(text))
    written = {"out": str(out), "report": str(out / "report.md")}
    if doc:
        doc = Path(doc)
        updated = replace_marked(doc.read_text(), doc_section(doc_relative(doc, out).as_posix()), begin, end)
        write_atomic(doc, lambda stream: stream.write(updated))
        written["doc"] = str(doc)
    return written


def study_report_main(argv, module: str, description: str, make_report, study: str, several: bool) -> int:
    """The command line of a study's report module (``python -m byzagg.train.<module>
    RESULTS... [--out FOLDER] [--doc FILE] [--no-plots]``)."""
    import argparse

    parser = argparse.ArgumentParser(prog=f"python -m byzagg.train.{module}", description=description)
    parser.add_argument("results", nargs="+" if several else None, help="the grid's folder(s) (run-json/ inside)")
    parser.add_argument("--out", default=None, help="report folder (default <first results folder>/report)")
    parser.add_argument("--doc", default=None, help=f"a markdown file whose generated {study} section is replaced")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    print(json.dumps(make_report(args.results, args.out, args.doc, plots=not args.no_plots)))
    return 0


def save_figure(fig, path: Path, title: str) -> Path:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_placements_by_rule(
    by: dict, rules: list[str], band, ylabel: str, title: str, path: Path, label: str = "", dashed=None, scale=None
) -> Path:
    """One panel per rule, momentum at the server vs at the workers, each a curve with a band
    over seeds. band(runs) -> (steps, centre, low, high); dashed: (band, label) of an extra
    curve of the worker-momentum runs; scale: a y scale name, or None to pick it from the
    curves (value_scale)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(rules), figsize=(4.5 * len(rules), 3.8), squeeze=False)
    drawn = []
    for ax, rule in zip(axes[0], rules):
        for placement, colour in PLACEMENT_COLOURS:
            if (rule, placement) in by:
                s, m, low, high = band(by[(rule, placement)])
                ax.plot(s, m, color=colour, label=f"momentum at {placement}{label}")
                ax.fill_between(s, low, high, alpha=0.2, color=colour)
                drawn += [m, low, high]
                if dashed and placement == "worker":
                    s, m, _, _ = dashed[0](by[(rule, placement)])
                    ax.plot(s, m, "--", color=colour, alpha=0.7, lw=1, label=dashed[1])
        ax.set_title(rule)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    name, options = (scale, {}) if scale else value_scale(drawn)
    for ax in axes[0]:
        ax.set_yscale(name, **options)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=8)
    return save_figure(fig, path, title)


def figure_stems(results: list[dict]) -> dict[tuple, str]:
    """Attacked group key -> the stem of its figures' names."""
    return {
        key: f"{key[0]}-{key[1]}-f{key[3]}-{key[4]}-{key[5]}"
        for key in sorted({group_key(r["config"]) for r in results if r["config"]["attack"] != "none"})
    }


FIGURES = (
    ("accuracy", "top-1 accuracy"),
    ("ratio", "variance-norm ratio"),
    ("curvature", "curvature term s_t"),
)


def figures_markdown(results: list[dict], figures: list[Path]) -> str:
    """A section that shows these figures (written next to report.md), one subsection per
    attacked group."""
    names = {Path(p).name for p in figures}
    lines = ["## Figures", ""]
    for (dataset, preset, n, f, attack, lr, _), stem in figure_stems(results).items():
        shown = [(kind, text) for kind, text in FIGURES if f"{kind}-{stem}.png" in names]
        if shown:
            lines += [f"### {dataset} ({preset}), n={n}, f={f}, attack {attack}, {lr}", ""]
            lines += [f"![{text}]({kind}-{stem}.png)" for kind, text in shown] + [""]
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def plot_groups(results: list[dict], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list[dict]] = defaultdict(list)
    baselines: dict[tuple, list[dict]] = defaultdict(list)
    for r in results:
        c = r["config"]
        (baselines if c["attack"] == "none" else groups)[group_key(c)].append(r)
    written = []
    colours = {"krum": "tab:blue", "median": "tab:orange", "bulyan": "tab:green", "average": "black"}
    stems = figure_stems(results)
    for key, runs in sorted(groups.items()):
        dataset, preset, n, f, attack, lr, steps = key
        baseline = baselines.get((dataset, preset, n, f, "none", lr, steps), [])
        stem, title = stems[key], f"{dataset} ({preset}), n={n}, f={f}, attack {attack}, {lr}"
        by = defaultdict(list)
        for r in runs:
            by[(r["config"]["rule"], r["config"]["momentum"])].append(r)
        rules = sorted({rule for rule, _ in by}, key=lambda x: list(colours).index(x) if x in colours else 99)

        fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
        for ax, placement in zip(axes, ("server", "worker")):
            for rule in rules:
                if (rule, placement) in by:
                    s, m, sd = curves(by[(rule, placement)], "eval", "accuracy")
                    ax.plot(s, m, label=f"{rule} ({len(by[(rule, placement)])} seeds)", color=colours.get(rule))
                    ax.fill_between(s, m - sd, m + sd, alpha=0.2, color=colours.get(rule))
            if baseline:
                s, m, sd = curves(baseline, "eval", "accuracy")
                ax.plot(s, m, "--", color="black", label="no attack (average)")
                ax.fill_between(s, m - sd, m + sd, alpha=0.1, color="black")
            ax.set_title(f"momentum at the {placement}{'s' if placement == 'worker' else ''}")
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("top-1 test accuracy")
        axes[0].set_ylim(0, 1)
        axes[1].legend(loc="lower right", fontsize=8)
        written.append(save_figure(fig, out / f"accuracy-{stem}.png", title))

        written.append(
            plot_placements_by_rule(
                by,
                rules,
                lambda runs: log_curves(runs, "study", "vn_ratio_submitted"),
                "variance-norm ratio (submitted)",
                title,
                out / f"ratio-{stem}.png",
                label=": submitted",
                dashed=(
                    lambda runs: log_curves(runs, "study", "vn_ratio_sampled"),
                    "momentum at worker: sampled gradients",
                ),
                scale="log",
            )
        )
        written.append(
            plot_placements_by_rule(
                by,
                rules,
                lambda runs: mean_band(runs, "study", "curvature"),
                "curvature term s_t (mean ± std)",
                title,
                out / f"curvature-{stem}.png",
            )
        )
    return written


def make_report(results_dir, out_dir: str | Path | None = None, plots: bool = True) -> dict:
    """results_dir: a folder or a list of folders. Raises FileNotFoundError for a missing
    folder and ValueError when they hold no complete run file."""
    results = load_results(results_dir)
    if not results:
        folders = [results_dir] if isinstance(results_dir, (str, Path)) else results_dir
        raise ValueError(f"no complete run file (run-json/*.json) under {', '.join(map(str, folders))}")
    first = results_dir if isinstance(results_dir, (str, Path)) else results_dir[0]
    out = Path(out_dir or Path(first) / "report")
    out.mkdir(parents=True, exist_ok=True)
    from . import adam_report, brsgd_report  # the BrSGD and Adam studies: their own sections and figures

    if any(brsgd_report.is_brsgd_study(r) for r in results):
        return brsgd_report.make_report(first, out, plots=plots)
    if any(adam_report.is_adam_study(r) for r in results):
        folders = [results_dir] if isinstance(results_dir, (str, Path)) else list(results_dir)
        return adam_report.make_report(folders, out, plots=plots)
    krum_runs = [r for r in results if krum_report.is_krum_paper(r)]
    if krum_runs:  # the Krum paper's grids: their own table and figures (krum_report.py)
        return _krum_report(results, krum_runs, first, out, plots)
    rows = summarise(results)
    table = markdown_table(rows)
    compute = sum(r["timing"]["wall_s"] for r in results)
    header = (
        f"# Report of {first}\n\n{len(results)} complete runs, {len(rows)} setups; the runs' wall times add up to "
        f"{compute / 3600:.2f} h ({compute / max(len(results), 1):.1f} s per run). Max accuracy = best "
        "top-1 test accuracy over the evaluations of a run; mean ± std over seeds.\n\n"
    )
    figures = plot_groups(results, out) if plots and results else []
    figures_md = figures_markdown(results, figures)
    (out / "report.md").write_text(
        header + table + "\n" + claims_markdown(rows) + "\n" + provenance_markdown(results) + (figures_md and "\n" + figures_md)
    )
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    return {"runs": len(results), "setups": len(rows), "out": str(out), "figures": [str(p) for p in figures]}


def _krum_report(results: list[dict], krum_runs: list[dict], first, out: Path, plots: bool) -> dict:
    others = [r for r in results if not krum_report.is_krum_paper(r)]
    compute = sum(r["timing"]["wall_s"] for r in krum_runs)
    text, rows, figures = krum_report.krum_section(krum_runs, out, plots)
    header = (
        f"# Report of {first}\n\n{len(krum_runs)} complete runs of the Krum paper's grids, {len(rows)} setups; "
        f"the runs' wall times add up to {compute / 3600:.2f} h ({compute / max(len(krum_runs), 1):.1f} s per run)."
        + (f" {len(others)} other run files here are left out: report them from their own folder." if others else "")
        + "\n\n"
    )
    (out / "report.md").write_text(header + text + "\n" + provenance_markdown(krum_runs))
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    return {"runs": len(krum_runs), "setups": len(rows), "out": str(out), "figures": [str(p) for p in figures]}

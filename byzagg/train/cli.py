"""Command line of the harness: ``byzagg-repro`` or ``python -m byzagg.train``.

    byzagg-repro run --rule krum --attack little --momentum worker --f 12 --steps 300
    byzagg-repro run --rule centered_clipping:tau=10,iters=3 --steps 100
    byzagg-repro run --rule "bucketing:s=2+trimmed_mean" --f 5
    byzagg-repro run --model mnist-cnn-adam --optimizer dra --mu 0 --lr 0.001 --n 17 --f 4 \
        --pre nnm --rule trimmed_mean --attack sign_flip --split dirichlet:alpha=0.1 --batch-size 25
    byzagg-repro grid quick                         # embedded real-MNIST subset, minutes
    byzagg-repro grid paper-mnist --dataset fashion-mnist --jobs 2
    byzagg-repro grid paper-mnist --data-dir ~/mnist --filter rule=krum,bulyan --filter f=12
    byzagg-repro report runs/quick-mnist-embedded
    torchrun --nproc-per-node 5 -m byzagg.train run --workers 5 --f 1 --rule krum   # a process per worker

Runs land in OUT/run-json/<run id>.json (OUT defaults to runs/<grid>-<data set> for grids,
runs/single for run; runs/ is ignored by git), each written atomically when it finishes;
running the same grid again skips the finished runs. A run file that holds another config
is never replaced without --overwrite. One torch thread per process unless --threads.
"""

from __future__ import annotations

import dataclasses

import argparse
import json
import os
import sys
import time
from dataclasses import fields, replace
from pathlib import Path

from . import attacks, data, experiment, grids, optimizers, presets, report, rules


def _threads(value: str) -> int | None:
    """--threads: a positive count, or "auto" for torch's own choice (None)."""
    if value == "auto":
        return None
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer or 'auto', got {value!r}")
    return threads


def _set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _check_data_dir(path: str | None) -> None:
    if path is not None and not Path(path).is_dir():
        raise data.DatasetError(f"--data-dir {path}: no such folder")


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default=None, help="folder with the data set files (nothing is downloaded)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1 ... (default cpu)")
    parser.add_argument(
        "--threads",
        type=_threads,
        default=1,
        help="torch threads per process (default 1; 'auto': torch's choice)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no tqdm progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="byzagg-repro", description=(__doc__ or "") + rules.HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    one = sub.add_parser(
        "run",
        help="one run",
        description="One run of distributed SGD under attack.\n" + rules.HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_common(one)
    defaults = experiment.RunConfig()
    for field in fields(experiment.RunConfig):
        default = getattr(defaults, field.name)
        kind = {int: int, float: float}.get(type(default), str)
        if field.name in ("lr_decay", "clip", "clip_mode"):
            kind = float if field.name != "clip_mode" else str
        choices = None
        if field.name == "dataset":
            choices = data.DATASETS
        elif field.name == "preset":
            choices = list(presets.PRESETS)
        elif field.name == "momentum":
            choices = ["server", "worker"]
        help_text = f"(default {default})"
        if field.name == "attack":
            help_text = f"NAME[:KEY=VALUE,...], one of {', '.join(attacks.NAMES)} (see attacks.py; default {default})"
        if field.name == "rule":
            help_text = f"NAME[:KEY=VALUE,...], pre-aggregations before '+' (see above; default {default})"
        if field.name == "optimizer":
            help_text = (
                f"NAME[:KEY=VALUE,...], one of {', '.join(optimizers.NAMES)}: what the workers send "
                f"(see optimizers.py; resam, dra and mra need --mu 0; default {default})"
            )
        if field.name == "split":
            help_text = (
                "where each worker's mini-batches come from: shared (one stream of the whole training set), "
                f"homogeneous, dirichlet[:alpha=A] (each worker its own shard; see data.py; default {default})"
            )
        names = [f"--{field.name.replace('_', '-')}"]
        if field.name == "n":  # torchrun's own parser takes --n for an abbreviation of its options
            names.append("--workers")
        one.add_argument(
            *names,
            type=kind,
            default=default,
            choices=choices,
            help=help_text,
        )
    one.add_argument(
        "--pre",
        default=None,
        metavar="PRE[+PRE...]",
        help="pre-aggregations before the rule, e.g. nnm or bucketing:s=2: the same as --rule PRE+RULE",
    )
    one.add_argument("--out", default="runs/single", help="results folder (default runs/single)")
    one.add_argument(
        "--gradients",
        choices=["own", "all"],
        default="own",
        help="under torchrun: each rank computes its own gradient (own, default) or every honest "
        "worker's in one pass, as the simulation does (all: the simulation's bits)",
    )
    one.add_argument("--timeout", type=float, default=120.0, help="under torchrun: seconds for every collective")
    from . import distributed_run  # torch.distributed: imported with the parser, not with byzagg.train

    distributed_run.add_checkpoint_arguments(one)
    one.add_argument(
        "--overwrite", action="store_true", help="replace a run file of the same run id that holds another config"
    )

    grid = sub.add_parser("grid", help="a named grid of runs, resumable")
    grid.add_argument("name", choices=grids.GRIDS)
    add_common(grid)
    grid.add_argument(
        "--dataset",
        default=None,
        choices=data.DATASETS,
        help="data set (default: mnist for paper-mnist, cifar10, mnist-embedded for quick)",
    )
    grid.add_argument(
        "--preset",
        default=None,
        choices=list(presets.PRESETS),
        help="(default paper; canonical for the krum-paper grids)",
    )
    grid.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="FIELD=V1[,V2]",
        help="keep runs whose config field matches, e.g. rule=krum,median f=12 momentum=worker lr=0.5",
    )
    grid.add_argument("--seeds", default=None, help="comma-separated seeds (default: the grid's)")
    grid.add_argument("--steps", type=int, default=None, help="override the number of steps")
    grid.add_argument(
        "--clip-mode",
        default=None,
        choices=["scale", "norm1_legacy"],
        help="override the preset's clipping (norm1_legacy: the ICLR snapshot's rescaling to norm 1); the run "
        "ids do not show it: give these runs their own --out",
    )
    grid.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (default 1)")
    grid.add_argument("--out", default=None, help="results folder (default runs/<grid>-<data set>)")
    grid.add_argument(
        "--overwrite", action="store_true", help="replace run files of the grid's run ids that hold another config"
    )
    grid.add_argument("--list", action="store_true", help="print the run ids and whether they are done, then stop")
    grid.add_argument("--report", action="store_true", help="write the report (OUT/report) when the grid is done")

    prof = sub.add_parser("profile", help="time the steps of the MNIST setup (n=51) per rule: ms per step by phase")
    add_common(prof)
    prof.add_argument("--dataset", default="mnist-embedded", choices=data.DATASETS)
    prof.add_argument("--preset", default="paper", choices=list(presets.PRESETS))
    prof.add_argument(
        "--rules",
        nargs="+",
        default=["average,median,krum,bulyan"],
        help="rule specifications, space-separated (plain names may also be comma-separated)",
    )
    prof.add_argument("--f", type=int, default=12)
    prof.add_argument("--momentum", default="worker", choices=["server", "worker"])
    prof.add_argument("--steps", type=int, default=30)
    prof.add_argument("--out", default=None, help="also write the measurements to this JSON file")

    comp = sub.add_parser(
        "compress", help="gzip the run files under folders (run-json/*.json -> *.json.gz; grids and report read both)"
    )
    comp.add_argument("folders", nargs="+")

    rep = sub.add_parser("report", help="figures and a markdown table from run files")
    rep.add_argument("results", nargs="+", help="folders holding run-json/*.json (searched recursively)")
    rep.add_argument("--out", default=None, help="output folder (default <first results folder>/report)")
    rep.add_argument("--no-plots", action="store_true")
    add_study_commands(sub)
    return parser


def command_run_distributed(args, config, out: Path) -> int:
    """`torchrun --nproc-per-node N -m byzagg.train run ...`: this process is worker RANK of
    the run (byzagg/train/distributed_run.py); rank 0 writes the run file. A checkpoint
    every --checkpoint-every steps; a restart resumes from it (--no-resume: not)."""
    from . import distributed_run

    if not args.overwrite and int(os.environ.get("RANK", "0")) == 0:
        experiment.check_conflicts(out, [config])
    distributed_run.run_and_write(config, out, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "grid":
            return command_grid(args)
        if args.command == "profile":
            return command_profile(args)
        if args.command == "compress":
            return command_compress(args)
        if args.command in STUDY_COMMANDS:
            return STUDY_COMMANDS[args.command](args)
        return command_report(args)
    except (data.DatasetError, ValueError, FileNotFoundError) as error:
        print(f"byzagg-repro: error: {error}", file=sys.stderr)
        return 2


def command_run(args) -> int:
    _check_data_dir(args.data_dir)
    _set_threads(args.threads)
    values = {f.name: getattr(args, f.name) for f in fields(experiment.RunConfig)}
    if args.pre:
        values["rule"] = f"{args.pre}+{values['rule']}"
    config = experiment.RunConfig(**values)
    config.check()
    out = Path(args.out)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # launched by torchrun: one process per worker
        return command_run_distributed(args, config, out)
    existing = experiment.find_result(out, config)
    if existing is not None and not args.overwrite:
        result = experiment.load_result(existing)
        summary = {
            "run_id": config.run_id(),
            "file": str(existing),
            "skipped": "done already (--overwrite reruns it)",
            "final_accuracy": result["eval"]["accuracy"][-1],
        }
        print(json.dumps(summary, indent=1))
        return 0
    if not args.overwrite:
        experiment.check_conflicts(out, [config])
    result = experiment.run(config, data_dir=args.data_dir, device=args.device, progress=not args.no_progress)
    path = experiment.result_path(out, config)
    experiment.write_json_atomic(path, result)
    timing = result["timing"]
    print(
        json.dumps(
            {
                "run_id": result["run_id"],
                "file": str(path),
                "final_accuracy": result["eval"]["accuracy"][-1],
                "max_accuracy": max(result["eval"]["accuracy"]),
                "wall_s": round(timing["wall_s"], 2),
                "steps_per_s": round(timing["steps_per_s"], 2),
                "threads": result["environment"]["threads"],
                "split_ms_per_step": {k: round(1e3 * v / config.steps, 2) for k, v in timing["split_s"].items()},
            },
            indent=1,
        )
    )
    return 0


def command_grid(args) -> int:
    _check_data_dir(args.data_dir)
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
    configs = grids.make_grid(args.name, dataset=args.dataset, preset=args.preset, seeds=seeds, steps=args.steps)
    configs = grids.apply_filters(configs, grids.parse_filters(args.filter))
    if getattr(args, "clip_mode", None):
        configs = [dataclasses.replace(c, clip_mode=args.clip_mode) for c in configs]
    if not configs:
        raise ValueError("the filters leave no run")
    out = Path(args.out or f"runs/{args.name}-{configs[0].dataset}")
    if args.list:
        for c in configs:
            print(("done  " if experiment.is_done(out, c) else "todo  ") + c.run_id())
        return 0
    # check the data set once here: a clear error before any process starts
    data.load_dataset(configs[0].dataset, args.data_dir)
    if args.jobs <= 1:
        _set_threads(args.threads)
    load_start = os.getloadavg()
    summary = experiment.run_grid(
        configs,
        str(out),
        data_dir=args.data_dir,
        device=args.device,
        jobs=args.jobs,
        progress=not args.no_progress,
        grid_name=args.name,
        threads=args.threads,
        overwrite=args.overwrite,
    )
    summary["out"] = str(out)
    summary_path = out / "grid-timing.json"
    history = json.loads(summary_path.read_text()) if summary_path.exists() else []
    history.append(
        {
            **summary,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
            "cpu_count": os.cpu_count(),
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
            "filters": args.filter,
            "jobs": args.jobs,
            "threads": args.threads,
        }
    )
    experiment.write_json_atomic(summary_path, history)
    print(json.dumps(summary))
    if args.report:
        print(json.dumps(report.make_report(out)))
    return 0


def _profile_rules(items: list[str]) -> list[str]:
    specs = []
    for item in items:
        specs += [part for part in item.split(",") if part] if "=" not in item else [item]
    return specs


def command_profile(args) -> int:
    _check_data_dir(args.data_dir)
    _set_threads(args.threads)
    dataset = data.load_dataset(args.dataset, args.data_dir)
    rows = []
    for rule in _profile_rules(args.rules):
        config = experiment.RunConfig(
            dataset=args.dataset,
            preset=args.preset,
            rule=rule,
            f=args.f,
            attack="none" if rule == "average" else "little",
            momentum=args.momentum,
            steps=args.steps,
            eval_every=args.steps,
        )
        config.check()
        rule = config.rule
        experiment.run(replace(config, steps=2, eval_every=2), device=args.device, dataset=dataset)  # warm-up
        result = experiment.run(config, device=args.device, dataset=dataset)
        split = {k: 1e3 * v / args.steps for k, v in result["timing"]["split_s"].items() if k != "evaluation"}
        rows.append(
            {
                "rule": rule,
                "steps_per_s": result["timing"]["steps_per_s"],
                "ms_per_step": sum(split.values()),
                "split_ms": split,
                "eval_ms": 1e3 * result["timing"]["split_s"]["evaluation"] / len(result["eval"]["step"]),
            }
        )
        print(
            f"{rule:8s} {rows[-1]['steps_per_s']:6.2f} steps/s  {rows[-1]['ms_per_step']:7.1f} ms/step  "
            + "  ".join(f"{k} {v:.1f}" for k, v in split.items())
            + f"  (one evaluation {rows[-1]['eval_ms']:.0f} ms)"
        )
    environment = experiment.environment(__import__("torch").device(args.device))
    print(json.dumps(environment))
    if args.out:
        experiment.write_json_atomic(
            Path(args.out),
            {"setup": vars(args) | {"out": None}, "rows": rows, "environment": environment, "loadavg": os.getloadavg()},
        )
    return 0


def command_compress(args) -> int:
    for folder in args.folders:
        if not Path(folder).is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
        written = experiment.compress_runs(folder)
        print(json.dumps({"folder": folder, "compressed": len(written)}))
    return 0


def command_report(args) -> int:
    outcome = report.make_report(args.results, args.out, plots=not args.no_plots)
    print(json.dumps({k: v for k, v in outcome.items() if k != "figures"} | {"figures": len(outcome["figures"])}))
    return 0



# ----------------------------------------------------------------------------------------
# The momentum and Adam studies (issue 17): resilience coefficients, data splits


def add_study_commands(sub) -> None:
    from . import resilience

    res = sub.add_parser(
        "resilience",
        help="the rules' empirical resilience coefficients lambda against the sources' bounds (issue 17)",
        description=(resilience.__doc__ or "").split("\n\n")[0],
    )
    resilience.add_arguments(res)

    split = sub.add_parser(
        "split",
        help="split a data set over workers (homogeneous or Dirichlet) and plot it (issue 17)",
        description="Writes OUT.png (sizes and class mix per worker, like the Adam study's Figure 4.1) "
        "and OUT.json (the counts per worker and class).",
    )
    split.add_argument("--dataset", default="mnist-embedded", choices=data.DATASETS)
    split.add_argument("--data-dir", default=None, help="folder with the data set files (nothing is downloaded)")
    split.add_argument("--kind", default="dirichlet", choices=["homogeneous", "dirichlet"])
    split.add_argument("--workers", type=int, default=17)
    split.add_argument("--alpha", type=float, default=0.1, help="Dirichlet concentration (default 0.1)")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--out", default="results/splits/split", help="output path without extension")


def command_resilience(args) -> int:
    from . import resilience

    return resilience.command(args)


def command_split(args) -> int:
    _check_data_dir(args.data_dir)
    dataset = data.load_dataset(args.dataset, args.data_dir)
    labels = dataset.train_labels
    parts = data.make_split(args.kind, labels, args.workers, args.alpha, args.seed, dataset.num_classes)
    counts = data.split_counts(labels, parts, dataset.num_classes)
    sizes = counts.sum(1).tolist()
    described = f"alpha={args.alpha:g}, " if args.kind == "dirichlet" else ""
    title = (
        f"{args.dataset}, {args.kind} split over {args.workers} workers ({described}seed {args.seed}): "
        f"{sum(sizes)} of {len(labels)} training samples used"
    )
    out = Path(args.out)
    data.plot_split(counts, Path(f"{out}.png"), title)
    summary = {
        "dataset": args.dataset,
        "kind": args.kind,
        "workers": args.workers,
        "alpha": args.alpha if args.kind == "dirichlet" else None,
        "seed": args.seed,
        "train_samples": len(labels),
        "used": sum(sizes),
        "sizes": sizes,
        "counts": counts.tolist(),
    }
    experiment.write_json_atomic(Path(f"{out}.json"), summary)
    print(json.dumps({k: summary[k] for k in ("dataset", "kind", "workers", "used", "sizes")}))
    return 0


STUDY_COMMANDS = {"resilience": command_resilience, "split": command_split}


if __name__ == "__main__":
    sys.exit(main())

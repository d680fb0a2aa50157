"""One harness run on real processes: one process per worker, over torch.distributed.

    torchrun --nproc-per-node 5 -m byzagg.train.distributed_run --n 5 --f 1 --rule krum \\
        --attack little --steps 50          # or: torchrun ... -m byzagg.train run ...

Ranks 0 .. n - f - 1 are the honest workers, ranks n - f .. n - 1 the Byzantine ones (the
rows of the simulation's G, honest first). A step:
  every rank draws the step's mini-batches from the shared shuffled stream (same seed:
  the stream stays in step) -> each honest rank computes its gradient, + l2, clipped,
  (its momentum) -> the omniscient adversary: the honest rows are all_gathered (every
  rank sees them; the simulation's attacker sees them too) and each Byzantine rank builds
  the attack vector from them -> robust_allreduce(row, the preset's rule, f, gather path)
  gives every rank the same aggregate -> (server momentum) -> every rank updates its
  replica of the model (identical bits on every rank).

gradients="all": each honest rank computes every honest worker's gradient in the
simulation's one vmap'd pass (same random numbers, e.g. dropout masks) and keeps its own
row; then G has the simulation's bits and the curves are the simulation's (tested).
gradients="own" (the default, the real deployment): each rank computes its own gradient
only; the curves then equal the simulation's up to rounding (vmap over one worker vs
over all) and, with dropout in training mode, up to the random masks.

Rank 0 evaluates and writes OUT/run-json/<run id>.json (the simulation's format, with
"distributed": {...}; the sampled-gradient metrics, which need every worker's
pre-momentum gradient, are not computed). Checkpoints and resume: not yet.
"""

from __future__ import annotations

import argparse
import datetime
import time
from dataclasses import fields
from pathlib import Path

import torch
import torch.distributed as dist

from . import attacks, data, experiment, metrics, presets, workers


def run_distributed(
    config: experiment.RunConfig,
    data_dir: str | None = None,
    gradients: str = "own",
    dataset: data.Dataset | None = None,
    timeout_s: float | None = None,
) -> dict | None:
    """Train `config` with this process as worker dist.get_rank(); rank 0 returns the
    result dictionary (as experiment.run's, without the sampled-gradient metrics), the
    others None. The world size must be n (n - f with attack "none")."""
    import byzagg.distributed as bd

    config.check()
    if gradients not in ("own", "all"):
        raise ValueError(f"gradients must be 'own' or 'all', got {gradients!r}")
    if config.attack_name not in ("none", "little", "empire"):
        raise ValueError(f"distributed run: attack {config.attack} is simulated only (byzagg-repro run without torchrun)")
    honest, byzantine = config.honest, config.byzantine
    world, rank = dist.get_world_size(), dist.get_rank()
    if world != honest + byzantine:
        raise ValueError(
            f"distributed run: the world has {world} processes but the run needs n={honest + byzantine} "
            f"({honest} honest + {byzantine} Byzantine): launch torchrun --nproc-per-node {honest + byzantine}"
        )
    is_honest = rank < honest
    preset = presets.get_preset(config.preset)
    rule = preset.rules[config.rule]
    clip_mode = config.clip_mode or preset.clip_mode
    start = time.perf_counter()
    if dataset is None:
        dataset = data.load_dataset(config.dataset, data_dir)
    torch.manual_seed(config.seed)
    model = experiment.build_model(config, preset, dataset)
    flat = workers.FlatModel(model, "cpu", train_mode=preset.train_mode)
    pipeline = data.Pipeline(dataset, "cpu", flatten=False, flip_test=preset.flip_test, seed=config.seed)
    eval_generator = torch.Generator().manual_seed(10_000 + config.seed)
    momentum = workers.Momentum(config.momentum, config.mu)
    d = flat.dim
    buffer = torch.zeros(d)  # this honest worker's momentum (worker placement)
    evaluation = {"step": [], "accuracy": []}
    study = {k: [] for k in ("step", "lr", "loss", "vn_ratio_submitted", "aggregate_norm", "cos_aggregate_honest")}

    for step in range(config.steps):
        if step % config.eval_every == 0 and rank == 0:
            evaluation["step"].append(step)
            evaluation["accuracy"].append(flat.accuracy(pipeline.test_batches(generator=eval_generator)))
        x, y = pipeline.worker_batches(honest, config.batch_size)  # every rank: the stream stays in step
        row = torch.zeros(d + 1)  # the submitted vector and, last, the worker's loss
        if is_honest:
            if gradients == "all":  # the simulation's pass, regularisation and clipping, then my row
                all_gradients, losses = flat.gradients(x, y)
                regulariser = workers.regularisation_gradient(flat.theta, config.l2, preset.l2_mode)
                if regulariser is not None:
                    all_gradients.add_(regulariser)
                workers.clip_rows_(all_gradients, config.clip, clip_mode)
                mine, loss = all_gradients[rank], losses[rank]
            else:
                own, losses = flat.gradients(x[rank : rank + 1], y[rank : rank + 1])
                regulariser = workers.regularisation_gradient(flat.theta, config.l2, preset.l2_mode)
                if regulariser is not None:
                    own.add_(regulariser)
                workers.clip_rows_(own, config.clip, clip_mode)
                mine, loss = own[0], losses[0]
            if config.momentum == "worker":
                buffer.mul_(config.mu).add_(mine)
                mine = buffer
            row[:d] = mine
            row[d] = loss
        # the omniscient adversary (as in the simulation): every rank sees the honest rows
        rows = torch.empty(world, d + 1)
        dist.all_gather(list(rows.unbind(0)), row)
        H = rows[:honest, :d]
        submitted_var, submitted_mean = metrics.column_moments(H)
        if is_honest:
            contribution = row[:d]
        else:
            contribution = attacks.attack_vector(config.attack, submitted_mean, submitted_var)
        aggregate = bd.robust_allreduce(contribution, rule, f=config.f, path="gather", timeout=timeout_s)
        lr = config.learning_rate(step)
        flat.theta.sub_(momentum.direction(aggregate), alpha=lr)
        flat.track_statistics(x[0])
        study["step"].append(step)
        study["lr"].append(lr)
        study["loss"].append(float(rows[:honest, d].mean()))
        study["vn_ratio_submitted"].append(metrics.ratio_from_moments(submitted_var, submitted_mean))
        study["aggregate_norm"].append(float(aggregate.norm()))
        study["cos_aggregate_honest"].append(metrics.cosine(aggregate, submitted_mean))
    if rank != 0:
        return None
    evaluation["step"].append(config.steps)
    evaluation["accuracy"].append(flat.accuracy(pipeline.test_batches(generator=eval_generator)))
    return {
        "format": experiment.FORMAT,
        "complete": True,
        "run_id": config.run_id(),
        "setup_id": config.setup_id(),
        "key": config.key(),
        "config": config.to_dict(),
        "data": {"source": dataset.source, "train": len(dataset.train_labels), "test": len(dataset.test_labels)},
        "dimension": d,
        "clip_mode": clip_mode,
        "eval": evaluation,
        "study": study,
        "timing": {"wall_s": time.perf_counter() - start},
        "environment": experiment.environment(torch.device("cpu")),
        "distributed": {"world_size": world, "backend": dist.get_backend(), "gradients": gradients},
        "theta_sha256": _digest(flat.theta),
    }


def _digest(tensor: torch.Tensor) -> str:
    import hashlib

    return hashlib.sha256(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = experiment.RunConfig()
    for field in fields(experiment.RunConfig):
        default = getattr(defaults, field.name)
        kind = {int: int, float: float}.get(type(default), str)
        if field.name in ("lr_decay", "clip"):
            kind = float
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=default)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--out", default="runs/distributed")
    parser.add_argument("--gradients", choices=["own", "all"], default="own")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for every collective (default 120)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    values = {f.name: getattr(args, f.name) for f in fields(experiment.RunConfig)}
    config = experiment.RunConfig(**values)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    try:
        result = run_distributed(config, args.data_dir, args.gradients, timeout_s=args.timeout)
        if result is not None:
            path = experiment.result_path(Path(args.out), config)
            experiment.write_json_atomic(path, result)
            accuracy = result["eval"]["accuracy"][-1]
            print(f"{config.run_id()}: final accuracy {accuracy:.4f} -> {path}", flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

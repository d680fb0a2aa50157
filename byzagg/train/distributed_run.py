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
pre-momentum gradient, are not computed).

Checkpoints and resume (docs/distributed.md, "Resume"): every `checkpoint_every` steps the
ranks gather their own state (torch RNG state, honest worker's momentum) to rank 0, which
writes ONE file, OUT/checkpoints/<run id>.pt by default, atomically (temporary name in the
same folder, fsync, os.replace): a kill at any moment leaves the previous checkpoint or the
new one, whole. On start, rank 0 reads it, checks that it belongs to this run (config,
gradients mode, world size) and broadcasts it; every rank restores its state and the run
continues from the checkpoint's step, giving the uninterrupted run's bits.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from collections.abc import Callable
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
    checkpoint: str | Path | None = None,
    checkpoint_every: int = 0,
    resume: bool = True,
    after_step: Callable[[int], None] | None = None,
) -> dict | None:
    """Train `config` with this process as worker dist.get_rank(); rank 0 returns the
    result dictionary (as experiment.run's, without the sampled-gradient metrics), the
    others None. The world size must be n (n - f with attack "none").

    checkpoint: the checkpoint file (rank 0's path; see checkpoint_path); None: no
    checkpoints. checkpoint_every: write it after every that many steps (0: never).
    resume: if the file exists, continue from it (after checking it belongs to this run);
    False ignores it (and replaces it at the next checkpoint). after_step(steps_done):
    called on every rank after each step and its checkpoint (the tests kill ranks there)."""
    import byzagg.distributed as bd

    config.check()
    if gradients not in ("own", "all"):
        raise ValueError(f"gradients must be 'own' or 'all', got {gradients!r}")
    if config.attack_name not in ("none", "little", "empire") or attacks.uses_own(config.attack):
        raise ValueError(f"distributed run: attack {config.attack} is simulated only (byzagg-repro run without torchrun)")
    if config.optimizer != "sgd" or config.split != "shared":
        raise ValueError(
            f"distributed run: optimizer {config.optimizer} and split {config.split} are simulated only "
            "(the distributed path runs optimizer sgd on the shared stream; byzagg-repro run without torchrun)"
        )
    honest, byzantine = config.honest, config.byzantine
    world, rank = dist.get_world_size(), dist.get_rank()
    if world != honest + byzantine:
        raise ValueError(
            f"distributed run: the world has {world} processes but the run needs n={honest + byzantine} "
            f"({honest} honest + {byzantine} Byzantine): launch torchrun --nproc-per-node {honest + byzantine}"
        )
    if checkpoint_every < 0:
        raise ValueError(f"checkpoint_every must be >= 0, got {checkpoint_every}")
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
    state = _State(config, gradients, flat, pipeline, eval_generator, momentum, buffer, evaluation, study)
    first_step, resumed = 0, []
    if checkpoint is not None and resume:
        payload = _load_checkpoint(Path(checkpoint), config, gradients, world)
        if payload is not None:
            first_step = state.restore(payload, rank)
            resumed = payload["resumed"] + [first_step]
            start -= payload["wall_s"]

    for step in range(first_step, config.steps):
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
        done = step + 1
        if checkpoint is not None and checkpoint_every and done % checkpoint_every == 0 and done < config.steps:
            state.save(Path(checkpoint), done, rank, world, resumed, time.perf_counter() - start)
        if after_step is not None:
            after_step(done)
    if rank != 0:
        return None
    evaluation["step"].append(config.steps)
    evaluation["accuracy"].append(flat.accuracy(pipeline.test_batches(generator=eval_generator)))
    return {
        **experiment.result_header(config),
        "data": {"source": dataset.source, "train": len(dataset.train_labels), "test": len(dataset.test_labels)},
        "dimension": d,
        "clip_mode": clip_mode,
        "eval": evaluation,
        "study": study,
        "timing": {"wall_s": time.perf_counter() - start},
        "environment": experiment.environment(torch.device("cpu")),
        "distributed": {
            "world_size": world,
            "backend": dist.get_backend(),
            "gradients": gradients,
            "resumed_from_steps": resumed,
        },
        "theta_sha256": _digest(flat.theta),
    }


CHECKPOINT_FORMAT = "byzagg-distributed-run-checkpoint/1"


def checkpoint_path(checkpoint_dir: str | Path, config: experiment.RunConfig) -> Path:
    """The checkpoint file of `config`'s run: CHECKPOINT_DIR/<run id>.pt."""
    return Path(checkpoint_dir) / f"{config.run_id()}.pt"


def remove_checkpoint(path: str | Path | None) -> None:
    """Delete a finished run's checkpoint (rank 0, after its run file is written)."""
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


class _State:
    """What a run needs to continue bit for bit, and how it is saved and restored.

    Replicated (the same bits on every rank; rank 0's copy is saved): theta, the module's
    buffers (batch-norm running statistics), the server momentum, the data stream (its
    generator, current permutation and position), the evaluation generator, the metrics.
    Per rank (gathered to rank 0, saved by worker index = rank): the torch RNG state
    (dropout masks under vmap) and, for an honest worker with worker momentum, its buffer."""

    def __init__(self, config, gradients, flat, pipeline, eval_generator, momentum, buffer, evaluation, study):
        self.config, self.gradients = config, gradients
        self.flat, self.pipeline, self.eval_generator = flat, pipeline, eval_generator
        self.momentum, self.buffer = momentum, buffer
        self.evaluation, self.study = evaluation, study

    def _mine(self, rank: int) -> dict:
        honest = rank < self.config.honest
        return {
            "rng": torch.get_rng_state(),
            "worker_momentum": self.buffer.clone() if honest and self.config.momentum == "worker" else None,
        }

    def save(self, path: Path, done: int, rank: int, world: int, resumed: list, wall_s: float) -> None:
        """Collective: every rank calls it after step `done`; rank 0 writes the file. Every
        rank raises the same error if the write failed."""
        per_rank = [None] * world if rank == 0 else None
        dist.gather_object(self._mine(rank), per_rank, dst=0)
        error = None
        if rank == 0:
            server = self.momentum.server_buffer
            payload = {
                "format": CHECKPOINT_FORMAT,
                "run_id": self.config.run_id(),
                "config": self.config.to_dict(),
                "gradients": self.gradients,
                "world_size": world,
                "step": done,
                "theta": self.flat.theta.clone(),
                "module_buffers": {k: v.clone() for k, v in self.flat.module.named_buffers()},
                "server_momentum": None if server is None else server.clone(),
                "data_stream": {
                    "generator": self.pipeline.generator.get_state(),
                    "order": self.pipeline.order.clone(),
                    "position": self.pipeline.position,
                },
                "eval_generator": self.eval_generator.get_state(),
                "per_worker": per_rank,  # index = worker = rank
                "eval": {k: list(v) for k, v in self.evaluation.items()},
                "study": {k: list(v) for k, v in self.study.items()},
                "resumed": list(resumed),
                "wall_s": wall_s,
            }
            try:
                _save_atomic(path, payload)
            except OSError as failure:
                error = f"rank 0 could not write the checkpoint {path}: {failure}"
        status = [error]
        dist.broadcast_object_list(status, src=0)
        if status[0] is not None:
            raise RuntimeError(status[0])

    def restore(self, payload: dict, rank: int) -> int:
        """Restore from a checked payload; returns the step to continue from."""
        with torch.no_grad():
            self.flat.theta.copy_(payload["theta"])
            buffers = dict(self.flat.module.named_buffers())
            for name, value in payload["module_buffers"].items():
                buffers[name].copy_(value)
        server = payload["server_momentum"]
        self.momentum.server_buffer = None if server is None else server.clone()
        stream = payload["data_stream"]
        self.pipeline.generator.set_state(stream["generator"])
        self.pipeline.order = stream["order"].clone()
        self.pipeline.position = stream["position"]
        self.eval_generator.set_state(payload["eval_generator"])
        mine = payload["per_worker"][rank]
        torch.set_rng_state(mine["rng"])
        if mine["worker_momentum"] is not None:
            self.buffer.copy_(mine["worker_momentum"])
        for target, saved in ((self.evaluation, payload["eval"]), (self.study, payload["study"])):
            for key in target:
                target[key][:] = saved[key]
        return payload["step"]


def _save_atomic(path: Path, payload: dict) -> None:
    """torch.save so that `path` holds either the previous checkpoint or this one, whole,
    whenever the process dies (experiment.write_atomic, the rename made durable)."""
    experiment.write_atomic(path, lambda stream: torch.save(payload, stream), binary=True, sync_directory=True)


def check_checkpoint(payload: dict, config: experiment.RunConfig, gradients: str, world: int, path="") -> None:
    """Raise ValueError unless `payload` is a checkpoint of this very run: same config (every
    field), same gradients mode, same world size (one rank per worker)."""
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: not a byzagg distributed-run checkpoint (format {CHECKPOINT_FORMAT})")
    stored = payload["config"]
    mine = config.to_dict()
    differences = [
        f"{key}: {stored.get(key)!r} in the checkpoint, {mine.get(key)!r} now"
        for key in sorted(set(stored) | set(mine))
        if stored.get(key) != mine.get(key)
    ]
    if payload["gradients"] != gradients:
        differences.append(f"gradients: {payload['gradients']!r} in the checkpoint, {gradients!r} now")
    if payload["world_size"] != world:
        differences.append(f"world size: {payload['world_size']} in the checkpoint, {world} now")
    if differences:
        raise ValueError(
            f"the checkpoint {path} belongs to another run, refusing to resume it:\n  "
            + "\n  ".join(differences)
            + "\nrun with the checkpoint's settings, or pass --no-resume (the checkpoint is replaced) "
            "or another --checkpoint-dir"
        )
    if not 0 < payload["step"] <= config.steps or len(payload["per_worker"]) != world:
        ranks = len(payload["per_worker"])
        raise ValueError(f"{path}: inconsistent checkpoint (step {payload['step']}, {ranks} ranks)")


def _load_checkpoint(path: Path, config: experiment.RunConfig, gradients: str, world: int) -> dict | None:
    """Collective: rank 0 reads and checks `path` (if it exists) and broadcasts the payload
    (no shared file system needed) or its error; every rank returns the payload, or None
    when there is no checkpoint, or raises the same ValueError."""
    message = [None, None]  # payload, error
    if dist.get_rank() == 0 and path.exists():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            check_checkpoint(payload, config, gradients, world, path)
            message = [payload, None]
        except ValueError as error:
            message = [None, str(error)]
        except Exception as error:  # an unreadable file: say which
            message = [None, f"{path}: unreadable checkpoint ({type(error).__name__}: {error})"]
    dist.broadcast_object_list(message, src=0)
    if message[1] is not None:
        raise ValueError(message[1])
    return message[0]


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
    add_checkpoint_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    values = {f.name: getattr(args, f.name) for f in fields(experiment.RunConfig)}
    config = experiment.RunConfig(**values)
    run_and_write(config, Path(args.out), args)


def add_checkpoint_arguments(parser) -> None:
    parser.add_argument(
        "--checkpoint-every",
        type=int,
        default=100,
        help="under torchrun: write a checkpoint every K steps (default 100; 0: none); a restart resumes from it",
    )
    parser.add_argument(
        "--checkpoint-dir", default=None, help="under torchrun: checkpoint folder (default OUT/checkpoints)"
    )
    parser.add_argument(
        "--no-resume", action="store_true", help="under torchrun: ignore an existing checkpoint (it is replaced)"
    )


def run_and_write(config: experiment.RunConfig, out: Path, args) -> None:
    """Init the gloo group, run (resuming from the checkpoint if there is one), rank 0 writes
    the run file and then deletes the checkpoint."""
    checkpoint = checkpoint_path(args.checkpoint_dir or out / "checkpoints", config)
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=args.timeout))
    try:
        result = run_distributed(
            config,
            args.data_dir,
            args.gradients,
            timeout_s=args.timeout,
            checkpoint=checkpoint,
            checkpoint_every=args.checkpoint_every,
            resume=not args.no_resume,
        )
        if result is not None:
            path = experiment.result_path(out, config)
            experiment.write_json_atomic(path, result)
            remove_checkpoint(checkpoint)
            resumed = result["distributed"]["resumed_from_steps"]
            note = f" (resumed from step {resumed[-1]})" if resumed else ""
            print(f"{config.run_id()}: final accuracy {result['eval']['accuracy'][-1]:.4f}{note} -> {path}", flush=True)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()

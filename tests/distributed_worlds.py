"""Process worlds for tests/test_distributed.py: gloo on 127.0.0.1, spawned, bounded in time.

`run_world(name, world_size, ...)` starts one process per rank running `WORLDS[name]`,
waits at most `deadline_s`, kills what is left (only the processes it started) and
returns {rank: what the rank returned, or the exception text it raised}.
"""

from __future__ import annotations

import datetime
import os
import pickle
import socket
import tempfile
import time
import traceback

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(name, rank, world_size, port, out_dir, pg_timeout_s, wait_for, kwargs):
    torch.set_num_threads(1)
    import torch.distributed as dist

    result = None
    try:
        dist.init_process_group(
            "gloo",
            init_method=f"tcp://127.0.0.1:{port}",
            rank=rank,
            world_size=world_size,
            timeout=datetime.timedelta(seconds=pg_timeout_s),
        )
        result = ("ok", WORLDS[name](rank, world_size, **kwargs))
    except BaseException as error:  # reported to the test
        result = ("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
    with open(os.path.join(out_dir, f"{rank}.tmp"), "wb") as fh:
        pickle.dump(result, fh)
    os.replace(os.path.join(out_dir, f"{rank}.tmp"), os.path.join(out_dir, f"{rank}.pkl"))
    if rank == 0:  # rank 0 hosts the store: stay until the others are done with it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not all(
            os.path.exists(os.path.join(out_dir, f"{r}.pkl")) for r in wait_for
        ):
            time.sleep(0.05)
    # no destroy_process_group: a peer may be dead, and the test only needs the results
    os._exit(0)


def run_world(name, world_size, deadline_s=120.0, pg_timeout_s=20.0, wait_for=None, **kwargs):
    """Run world `name` on `world_size` ranks; results of the ranks in `wait_for` (default:
    all) are awaited up to `deadline_s`, then every process still running is killed."""
    context = mp.get_context("spawn")
    wait_for = list(range(world_size)) if wait_for is None else list(wait_for)
    with tempfile.TemporaryDirectory(prefix="byzagg-dist-") as out_dir:
        port = free_port()
        processes = [
            context.Process(
                target=_entry, args=(name, r, world_size, port, out_dir, pg_timeout_s, wait_for, kwargs), daemon=True
            )
            for r in range(world_size)
        ]
        for p in processes:
            p.start()
        start = time.monotonic()
        try:
            while time.monotonic() - start < deadline_s:
                if all(os.path.exists(os.path.join(out_dir, f"{r}.pkl")) for r in wait_for):
                    break
                time.sleep(0.1)
        finally:
            for p in processes:
                p.join(timeout=2.0)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5.0)
        results = {}
        for r in range(world_size):
            path = os.path.join(out_dir, f"{r}.pkl")
            if os.path.exists(path):
                with open(path, "rb") as fh:
                    results[r] = pickle.load(fh)
        results["elapsed_s"] = time.monotonic() - start
        return results


# ----------------------------------------------------------------------------------------
# The worlds. Each gets (rank, world_size, **kwargs) inside an initialised gloo group.


def matrix(n, d, dtype, seed):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64).to(dtype)


def allreduce_cases(n):
    """(rule, f, path, dtype, d, nonfinite_row, params) tuples for a world of n ranks."""
    cases = []
    for path in ("gather", "sharded"):
        for rule, f in (
            ("average", None),
            ("median", None),
            ("trimmed_mean", 2),
            ("meamed", 1),
            ("phocas", 1),
            ("krum", 1),
            ("multi_krum", 2),
            ("bulyan", 1),
            ("medoid", None),
            ("mda", 2),
        ):
            cases.append((rule, f, path, torch.float32, 1000, None, {}))
            cases.append((rule, f, path, torch.float64, 333, 3, {}))  # rank 3 sends a NaN
        cases.append(("median", None, path, torch.float16, 300, None, {}))
        cases.append(("krum", 1, path, torch.bfloat16, 300, None, {"m": 2}))
        cases.append(("trimmed_mean", 1, path, torch.float32, 5, None, {}))  # d < 64 n: empty shards
    for rule, params in (
        ("geometric_median", {}),
        ("centered_clipping", {"tau": 1.0, "iters": 3}),
        ("brsgd", {}),
        ("nnm", {}),
    ):
        cases.append((rule, 1 if rule == "nnm" else None, "gather", torch.float32, 200, 3, params))
    return cases


def world_allreduce(rank, n):
    import byzagg.distributed as bd

    outputs = []
    for index, (rule, f, path, dtype, d, nonfinite_row, params) in enumerate(allreduce_cases(n)):
        G = matrix(n, d, dtype, seed=index)
        if nonfinite_row is not None:
            G[nonfinite_row, d // 2] = float("nan")
        mine = G[rank] if d % 2 else G[rank].reshape(2, d // 2)  # any shape
        outputs.append(bd.robust_allreduce(mine, rule, f=f, path=path, **params).reshape(-1))
    errors = {}
    x = torch.ones(100)
    for label, call in (
        ("wrong size", lambda: bd.robust_allreduce(torch.ones(99 if rank == 2 else 100), "median")),
        ("wrong dtype", lambda: bd.robust_allreduce(x.double() if rank == 1 else x, "median")),
        ("wrong f", lambda: bd.robust_allreduce(x, "krum", f=2 if rank == 4 else 1)),
        ("n vs f", lambda: bd.robust_allreduce(x, "krum", f=3)),
        ("sharded gm", lambda: bd.robust_allreduce(x, "geometric_median", path="sharded")),
    ):
        try:
            call()
            errors[label] = None
        except (ValueError, TypeError) as error:
            errors[label] = f"{type(error).__name__}: {error}"
    after = bd.robust_allreduce(torch.full((10,), float(rank)), "median")  # the group still works
    return {"outputs": outputs, "errors": errors, "after": after}


DDP_RUNS = (  # (rule, f, params): one world trains each in turn; "average" is the control
    ("krum", 1, {}),
    ("trimmed_mean", 1, {}),
    ("centered_clipping", None, {"tau": 1.0}),
    ("average", None, {}),
)


def world_ddp(rank, n, byzantine, steps, checkpoint_dir):
    return {rule: _train_ddp(rank, rule, f, params, byzantine, steps, checkpoint_dir) for rule, f, params in DDP_RUNS}


def _train_ddp(rank, rule, f, params, byzantine, steps, checkpoint_dir):
    import torch.distributed.checkpoint as dcp
    from torch.nn.parallel import DistributedDataParallel as DDP

    import byzagg.distributed as bd

    torch.manual_seed(0)  # same initial model everywhere (DDP also broadcasts rank 0's)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    ddp = DDP(model, bucket_cap_mb=0.0005)  # several buckets for a tiny model
    state = bd.RobustHookState(rule, f=f, **params)
    ddp.register_comm_hook(state, bd.robust_hook)
    if rank in byzantine:
        for p in model.parameters():
            p.register_hook(lambda g: -50.0 * g + 10.0)  # a worker computing wrong gradients
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    target = torch.nn.Linear(8, 1)
    torch.nn.init.constant_(target.weight, 0.5)
    generator = torch.Generator().manual_seed(100 + rank)
    eval_x = torch.randn(256, 8, generator=torch.Generator().manual_seed(7))
    eval_y = target(eval_x).detach()
    losses = []
    for _ in range(steps):
        x = torch.randn(32, 8, generator=generator)
        y = target(x).detach()
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(ddp(x), y)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            losses.append(float(torch.nn.functional.mse_loss(model(eval_x), eval_y)))
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    saved = None
    if rule == "centered_clipping":
        dcp.save({"hook": state}, checkpoint_id=checkpoint_dir)
        fresh = bd.RobustHookState(rule, f=f, **params)
        fresh.center = torch.zeros_like(state.center)  # dcp loads in place into this shape
        dcp.load({"hook": fresh}, checkpoint_id=checkpoint_dir)
        saved = (state.center.clone(), fresh.center.clone(), fresh.steps)
    return {"params": flat, "losses": losses, "steps": state.steps, "saved": saved}


def world_fault(rank, n, victim, mode, grace_s):
    import byzagg.distributed as bd

    bd.robust_allreduce(torch.ones(1000), "median")  # call 1: everyone
    if rank == victim:
        if mode == "kill":
            os._exit(17)
        time.sleep(3600)  # hang: killed by the test
    start = time.monotonic()
    try:
        bd.robust_allreduce(torch.ones(1000), "krum", f=0, fault_grace_s=grace_s)
        return {"error": None, "elapsed_s": time.monotonic() - start}
    except bd.RankFailureError as error:
        return {"error": str(error), "ranks": error.ranks, "elapsed_s": time.monotonic() - start}


def harness_config():
    from byzagg.train import experiment

    return experiment.RunConfig(n=5, f=1, rule="krum", attack="little", steps=8, eval_every=3, batch_size=16)


def world_harness(rank, n, gradients, checkpoint_dir=None, checkpoint_every=0, kill=None):
    """The harness run of harness_config(); checkpoint into checkpoint_dir every
    checkpoint_every steps (resuming from a checkpoint there); kill = {rank: steps done}:
    that rank dies (os._exit) once it has done that many steps."""
    from byzagg.train import distributed_run

    config = harness_config()
    checkpoint = None if checkpoint_dir is None else distributed_run.checkpoint_path(checkpoint_dir, config)

    def after_step(done):
        if kill and kill.get(rank) == done:
            os._exit(17)

    return distributed_run.run_distributed(
        config,
        gradients=gradients,
        timeout_s=60,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        after_step=after_step,
    )


WORLDS = {"allreduce": world_allreduce, "ddp": world_ddp, "fault": world_fault, "harness": world_harness}

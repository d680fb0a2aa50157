"""byzagg.distributed on real processes: gloo on 127.0.0.1, worlds spawned by the tests
(tests/distributed_worlds.py), every world bounded in time and its processes killed after.

What is checked (docs/distributed.md, "Guarantees"):
- robust_allreduce: every rank returns identical bits; the gather path equals the
  single-process rule; the sharded path equals byzagg.distributed.simulate (the same
  arithmetic in one process) and, for coordinate-wise rules, the single-process rule; on
  these inputs (no near-ties) the sharded distance rules equal the single-process rule too.
- ranks that disagree (size, dtype, f) and n vs f are rejected on every rank, naming ranks.
- the DDP hook trains with a Byzantine rank, replicas stay identical, state checkpoints.
- a killed or hung rank gives RankFailureError naming it within the timeout.
- the harness on processes gives the simulation's curves; killed after a checkpoint and
  restarted, it resumes and ends with the uninterrupted run's bits.
"""

import pytest
import torch

import byzagg
import byzagg.distributed as bd

from distributed_worlds import allreduce_cases, harness_config, matrix, run_world

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="torch without gloo")

N_ALLREDUCE = 7  # bulyan with f=1 needs n >= 7


def same_bits(a, b):
    """Identical bits (NaN included), same dtype and shape."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    ints = {8: torch.int64, 4: torch.int32, 2: torch.int16}[a.element_size()]
    return torch.equal(a.contiguous().view(ints), b.contiguous().view(ints))


def _ok(results, rank):
    status, value = results[rank]
    assert status == "ok", f"rank {rank}: {value}"
    return value


@pytest.fixture(scope="module")
def allreduce_world():
    results = run_world("allreduce", N_ALLREDUCE, deadline_s=240)
    return [_ok(results, r) for r in range(N_ALLREDUCE)]


CASES = allreduce_cases(N_ALLREDUCE)


@pytest.mark.parametrize("index", range(len(CASES)), ids=[f"{c[0]}-{c[2]}-{str(c[3])[6:]}-d{c[4]}" for c in CASES])
def test_robust_allreduce_bits(allreduce_world, index):
    rule, f, path, dtype, d, nonfinite_row, params = CASES[index]
    outputs = [allreduce_world[r]["outputs"][index] for r in range(N_ALLREDUCE)]
    for r in range(1, N_ALLREDUCE):
        assert same_bits(outputs[r], outputs[0]), f"rank {r} differs from rank 0"
    G = matrix(N_ALLREDUCE, d, dtype, seed=index)
    if nonfinite_row is not None:
        G[nonfinite_row, d // 2] = float("nan")
    single = byzagg.aggregate(rule, G, f=f, **params).reshape(-1)
    assert same_bits(outputs[0], bd.simulate(G, rule, f=f, path=path, **params).reshape(-1))
    assert same_bits(outputs[0], single), f"max difference {(outputs[0] - single).abs().max()}"
    if nonfinite_row is not None and rule != "average":
        assert bool(outputs[0].isfinite().all()), "the NaN row leaked into a robust rule's result"


def test_robust_allreduce_rejects_disagreeing_ranks(allreduce_world):
    for r in range(N_ALLREDUCE):
        errors = allreduce_world[r]["errors"]
        assert "rank 2 gave 99 elements" in errors["wrong size"], errors["wrong size"]
        assert "ranks 0, 1, 3, 4, 5, 6 gave 100 elements" in errors["wrong size"]
        assert "rank 1 gave torch.float64" in errors["wrong dtype"]
        assert "rank 4 gave f=2" in errors["wrong f"]
        assert "krum requires n >= 2f + 3, got n=7, f=3" in errors["n vs f"]
        assert "has no sharded path" in errors["sharded gm"]
        assert torch.equal(allreduce_world[r]["after"], torch.full((10,), 3.0))


def test_choose_path_and_traffic():
    assert bd.choose_path("krum", 4, 10**6) == "sharded"
    assert bd.choose_path("krum", 4, 1000) == "gather"
    assert bd.choose_path("geometric_median", 4, 10**7) == "gather"
    with pytest.raises(ValueError, match="no sharded path"):
        bd.choose_path("centered_clipping", 4, 10**7, "sharded")
    gather = bd.traffic_bytes("median", 4, 10**6, 4, "gather")
    sharded = bd.traffic_bytes("median", 4, 10**6, 4, "sharded")
    assert gather["all_gather rows"] == 3 * 4 * 10**6
    assert sharded["total"] < 1.01 * sharded["all_reduce (ring) for comparison"]


@pytest.mark.parametrize("n,d", [(5, 70_000), (7, 1001), (9, 64 * 9 + 3), (5, 3)])
def test_simulate_sharded_equals_single_process(n, d):
    G = matrix(n, d, torch.float32, seed=n * d)
    G[1, 0] = float("inf")
    for rule in sorted(bd.SHARDED_RULES):
        f = 1 if rule != "bulyan" or n >= 7 else 0
        assert same_bits(bd.simulate(G, rule, f=f, path="sharded"), byzagg.aggregate(rule, G, f=f)), rule


def test_import_byzagg_does_not_import_distributed():
    import subprocess
    import sys

    code = "import sys, byzagg; print('byzagg.distributed' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


N_DDP = 5
DDP_STEPS = 20


@pytest.fixture(scope="module")
def ddp_world(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("dcp"))
    results = run_world("ddp", N_DDP, deadline_s=400, byzantine=[3], steps=DDP_STEPS, checkpoint_dir=directory)
    return [_ok(results, r) for r in range(N_DDP)]


@pytest.mark.parametrize("rule", ["krum", "trimmed_mean", "centered_clipping"])
def test_ddp_hook_trains_with_a_byzantine_rank(ddp_world, rule):
    ranks = [world[rule] for world in ddp_world]
    for r in range(1, N_DDP):
        assert same_bits(ranks[r]["params"], ranks[0]["params"]), f"replica {r} differs from replica 0"
    losses = ranks[0]["losses"]
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(r["steps"] == DDP_STEPS for r in ranks)
    if rule == "centered_clipping":  # the hook's state went through torch.distributed.checkpoint
        for r in ranks:
            center, loaded, steps = r["saved"]
            assert torch.equal(center, loaded) and steps == DDP_STEPS


def test_ddp_average_is_broken_by_the_byzantine_rank(ddp_world):
    # the control: the same run with the plain mean does not learn
    losses = ddp_world[0]["average"]["losses"]
    assert not losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("mode", ["kill", "hang"])
def test_failed_rank_is_named_within_the_timeout(mode):
    pg_timeout_s, grace_s = 6.0, 1.0
    results = run_world(
        "fault", 4, deadline_s=90, pg_timeout_s=pg_timeout_s, wait_for=[0, 1, 3], victim=2, mode=mode, grace_s=grace_s
    )
    for r in (0, 1, 3):
        out = _ok(results, r)
        assert out["error"] is not None, f"rank {r} saw no error"
        assert out["ranks"] == (2,), out["error"]
        assert "rank 2 (last call reached: #1)" in out["error"], out["error"]
        assert out["elapsed_s"] < pg_timeout_s + grace_s + 5, out


N_HARNESS, CHECKPOINT_EVERY = 5, 2


@pytest.fixture(scope="module")
def harness_run(tmp_path_factory):
    """The uninterrupted run on processes, checkpointing as the resumed one does."""
    directory = str(tmp_path_factory.mktemp("harness-uninterrupted"))
    results = run_world(
        "harness",
        N_HARNESS,
        deadline_s=300,
        pg_timeout_s=60,
        gradients="all",
        checkpoint_dir=directory,
        checkpoint_every=CHECKPOINT_EVERY,
    )
    for r in range(1, N_HARNESS):
        assert _ok(results, r) is None
    return _ok(results, 0)


def test_harness_on_processes_gives_the_simulation_curves(harness_run):
    from byzagg.train import experiment

    distributed = harness_run
    # The ranks run one thread each (distributed_worlds.py), and so does the simulation here:
    # torch's own CPU kernels may round otherwise with another thread count (seen on an
    # AVX-512 Xeon, where two threads changed the losses' last bits).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        simulated = experiment.run(harness_config())
    finally:
        torch.set_num_threads(threads)
    # the training itself is the same bits: losses, aggregate norms, accuracies
    for key in ("loss", "aggregate_norm"):
        assert distributed["study"][key] == simulated["study"][key], key
    assert distributed["eval"] == simulated["eval"]
    # float64 metrics: the ranks' reductions and the simulation's may still differ in the last bits
    for key in ("cos_aggregate_honest", "vn_ratio_submitted"):
        assert distributed["study"][key] == pytest.approx(simulated["study"][key], rel=1e-12), key


def test_robust_allreduce_needs_an_initialised_group():
    if torch.distributed.is_initialized():
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(RuntimeError, match="not initialised"):
        bd.robust_allreduce(torch.ones(3), "median")


def test_hook_state_round_trip():
    state = bd.RobustHookState("centered_clipping", tau=1.0)
    state.center, state.steps = torch.arange(4.0), 7
    fresh = bd.RobustHookState("centered_clipping", tau=1.0)
    fresh.load_state_dict(state.state_dict())
    assert torch.equal(fresh.center, state.center) and fresh.steps == 7
    assert bd.RobustHookState("median").whole_model is False
    assert bd.RobustHookState("krum", f=1).whole_model is True
    with pytest.raises(TypeError, match="centre"):
        bd.RobustHookState("centered_clipping", tau=1.0, center=torch.zeros(4))


def test_simulate_callable_rule_and_unknown_rule():
    G = matrix(5, 100, torch.float32, seed=3)
    assert torch.equal(bd.simulate(G, lambda X, f: byzagg.krum(X, f), f=1), byzagg.krum(G, 1))
    with pytest.raises(ValueError, match="unknown rule"):
        bd.simulate(G, "kurm", f=1)
    with pytest.raises(ValueError, match="no sharded path"):
        bd.simulate(G, lambda X, f: X.mean(0), f=1, path="sharded")


def test_harness_resumes_after_a_kill_with_the_uninterrupted_bits(harness_run, tmp_path):
    from dataclasses import replace

    from byzagg.train import distributed_run

    config = harness_config()
    directory = str(tmp_path)
    checkpoint = distributed_run.checkpoint_path(directory, config)
    common = dict(gradients="all", checkpoint_dir=directory, checkpoint_every=CHECKPOINT_EVERY)
    # rank 2 dies after step 5 (the checkpoint after step 4 is on disk, step 5 is lost);
    # the others fail in the next collective (the process group's timeout bounds it)
    killed = run_world(
        "harness", N_HARNESS, deadline_s=120, pg_timeout_s=30, wait_for=[0, 1, 3, 4], kill={2: 5}, **common
    )
    assert 2 not in killed, killed.get(2)
    assert killed[0][0] == "error", killed[0]
    payload = torch.load(checkpoint, weights_only=True)
    assert payload["step"] == 4 and len(payload["per_worker"]) == N_HARNESS
    assert [w["worker_momentum"] is not None for w in payload["per_worker"]] == [True] * 4 + [False]
    # the restart resumes from step 4 and ends with the uninterrupted run's bits
    resumed = run_world("harness", N_HARNESS, deadline_s=300, pg_timeout_s=60, **common)
    for r in range(1, N_HARNESS):
        assert _ok(resumed, r) is None
    result = _ok(resumed, 0)
    assert result["distributed"]["resumed_from_steps"] == [4]
    assert harness_run["distributed"]["resumed_from_steps"] == []
    assert result["study"] == harness_run["study"]  # every metric, float64 ones too
    assert result["eval"] == harness_run["eval"]
    assert result["theta_sha256"] == harness_run["theta_sha256"]
    # a checkpoint of another run is refused, naming what differs; n vs f is checked again
    with pytest.raises(ValueError, match="n: 5 in the checkpoint, 7 now"):
        distributed_run.check_checkpoint(payload, replace(config, n=7), "all", 7)
    with pytest.raises(ValueError, match="gradients: 'all' in the checkpoint, 'own' now"):
        distributed_run.check_checkpoint(payload, config, "own", N_HARNESS)
    with pytest.raises(ValueError, match="krum requires n >= 2f"):
        replace(config, n=4).check()
    distributed_run.check_checkpoint(payload, config, "all", N_HARNESS)

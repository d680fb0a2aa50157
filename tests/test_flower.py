"""byzagg.flower.Robust: a strategy of Flower's message API, on hand-made replies, and one
end-to-end run in Flower's simulation engine (Ray) with Byzantine clients.

Skipped without flwr (pip install ".[flower]"). BYZAGG_FLOWER_E2E=0 skips the simulation
(about a minute here: Ray's start dominates).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("flwr", reason='flwr not installed: pip install ".[flower]" (flwr[simulation]==1.42.0)')

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
os.environ.setdefault("FLWR_DISABLE_UPDATE_CHECK", "1")

from flwr.app import Array, ArrayRecord, Error, Message, Metadata, MetricRecord, RecordDict
from flwr.serverapp.strategy import FedAvg, FedMedian

import byzagg
from byzagg.flower import Robust

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "flower"


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


def reply(arrays: dict, node_id: int = 1, num_examples=10, metrics: dict | None = None) -> Message:
    """A train reply as a ClientApp sends it: one ArrayRecord and one MetricRecord."""
    record = ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})
    values = {"num-examples": num_examples} if metrics is None else metrics
    content = RecordDict({"arrays": record, "metrics": MetricRecord(values)})
    return Message(content=content, metadata=_metadata(node_id))


def failure(node_id: int) -> Message:
    return Message(error=Error(code=0, reason="client crashed"), metadata=_metadata(node_id))


def record(arrays: dict) -> ArrayRecord:
    return ArrayRecord({k: Array(np.asarray(v)) for k, v in arrays.items()})


def numpy_of(result: ArrayRecord) -> dict:
    return {k: v.numpy() for k, v in result.items()}


def run(strategy, global_arrays: dict, client_arrays: list, server_round: int = 1, **reply_kwargs):
    strategy.remember_global(record(global_arrays))
    replies = [reply(a, node_id=i + 1, **reply_kwargs) for i, a in enumerate(client_arrays)]
    return strategy.aggregate_train(server_round, replies)


def model_arrays(rng, scale=1.0) -> dict:
    return {
        "w": (rng.standard_normal((4, 3)) * scale).astype(np.float32),
        "b": (rng.standard_normal(3) * scale).astype(np.float32),
    }


# ---------------------------------------------------------------------------------------
# construction


def test_import_byzagg_does_not_import_flwr():
    import subprocess

    code = "import sys, byzagg; byzagg.median; print('flwr' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "args, kwargs, least",
    [
        (("krum", 3), {}, 9),
        (("geometric_median",), {}, 1),
        (("trimmed_mean", 2), {"pre": "nnm"}, 5),
        (("bulyan", 2), {}, 11),
        (("krum", 2), {"m": 4}, 7),
        (("median",), {"pre": "bucketing", "pre_params": {"s": 2}}, 1),
    ],
)
def test_least_number_of_replies_comes_from_the_rule(args, kwargs, least):
    assert Robust(*args, **kwargs).min_replies == least


@pytest.mark.parametrize(
    "args, kwargs, error, text",
    [
        (("kurm", 1), {}, ValueError, "unknown rule"),
        (("krum", 2), {"mm": 3}, TypeError, "no parameter mm"),
        (("centered_clipping",), {"tau": -1.0}, ValueError, "tau must be > 0"),
        (("krum", 2), {"weighted": True}, ValueError, "weighted=True"),
        (("nnm", 2), {}, ValueError, "pre='nnm'"),
        (("median",), {"pre": "clip"}, ValueError, "unknown pre-aggregation"),
        (("median",), {"non_float": "mean"}, ValueError, "non_float"),
        (("trimmed_mean",), {}, TypeError, "needs f"),
    ],
)
def test_bad_configurations_are_refused_at_construction(args, kwargs, error, text):
    with pytest.raises(error, match=text):
        Robust(*args, **kwargs)


# ---------------------------------------------------------------------------------------
# one round on hand-made replies


def test_result_is_global_plus_the_rule_on_the_updates():
    rng = np.random.default_rng(0)
    global_arrays = model_arrays(rng)
    clients = [{k: v + model_arrays(rng, 0.1)[k] for k, v in global_arrays.items()} for _ in range(9)]
    arrays, _ = run(Robust("krum", f=2), global_arrays, clients)
    updates = [{k: torch.from_numpy(c[k] - global_arrays[k]) for k in global_arrays} for c in clients]
    G, spec = byzagg.flatten(updates)
    expected = byzagg.unflatten(byzagg.krum(G, 2), spec)
    for k in global_arrays:
        np.testing.assert_allclose(arrays[k].numpy(), global_arrays[k] + expected[k].numpy(), rtol=1e-6, atol=1e-6)


def test_round_trip_across_dtypes_and_buffers():
    """Every array comes back with its key, shape and dtype; the floating ones moved by the
    (identical) update, the integer and boolean buffers by the non-float policy."""
    global_arrays = {
        "w32": np.arange(6, dtype=np.float32).reshape(2, 3),
        "w64": np.linspace(0, 1, 5),
        "w16": np.ones((2, 2), dtype=np.float16),
        "bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "mask": np.array([True, False, True]),
        "counts": np.array([1, 2, 3], dtype=np.int32),
    }
    delta = {"w32": np.float32(0.25), "w64": 0.125, "w16": np.float16(0.5)}
    clients = []
    for i in range(5):
        client = {k: (v + delta[k]).astype(v.dtype) if k in delta else v.copy() for k, v in global_arrays.items()}
        client["bn.num_batches_tracked"] = np.array(7 + 10 * (i + 1), dtype=np.int64)
        client["counts"] = np.array([1 + i, 2, 3], dtype=np.int32)
        clients.append(client)
    for policy, tracked, counts in [("median", 37, [3, 2, 3]), ("global", 7, [1, 2, 3])]:
        arrays, _ = run(Robust("median", non_float=policy), global_arrays, clients)
        out = numpy_of(arrays)
        assert list(out) == list(global_arrays)
        for k, v in global_arrays.items():
            assert out[k].dtype == v.dtype and out[k].shape == v.shape, k
        for k in delta:
            np.testing.assert_array_equal(out[k], (global_arrays[k] + delta[k]).astype(global_arrays[k].dtype))
        assert int(out["bn.num_batches_tracked"]) == tracked
        np.testing.assert_array_equal(out["counts"], counts)
        np.testing.assert_array_equal(out["mask"], global_arrays["mask"])


def test_matrix_dtype_is_the_models_float_dtype():
    """float16 arrays beside float64 ones are aggregated in float64 and rounded once."""
    global_arrays = {"a": np.zeros(3, dtype=np.float16), "b": np.zeros(2, dtype=np.float64)}
    clients = [{"a": np.full(3, v, dtype=np.float16), "b": np.full(2, v)} for v in (1.0, 2.0, 4.0)]
    strategy = Robust("average")
    arrays, _ = run(strategy, global_arrays, clients)
    assert strategy._model_dtype() == torch.float64
    np.testing.assert_array_equal(arrays["b"].numpy(), np.full(2, 7.0 / 3.0))
    assert arrays["a"].numpy().dtype == np.float16


def test_failed_replies_shrink_n_and_the_requirement_is_checked_each_round():
    rng = np.random.default_rng(1)
    global_arrays = model_arrays(rng)
    clients = [{k: v + 0.01 * (i + 1) for k, v in global_arrays.items()} for i in range(7)]
    strategy = Robust("krum", f=1)  # needs n >= 5
    strategy.remember_global(record(global_arrays))
    replies = [reply(c, node_id=i + 1) for i, c in enumerate(clients[:5])] + [failure(6), failure(7)]
    arrays, metrics = strategy.aggregate_train(1, replies)
    assert arrays is not None and metrics is not None
    report = strategy.history[-1]
    assert (report.received, report.failed, report.used, report.skipped) == (7, 2, 5, None)

    replies = [reply(c, node_id=i + 1) for i, c in enumerate(clients[:4])] + [failure(5), failure(6), failure(7)]
    assert strategy.aggregate_train(2, replies) == (None, None)  # Strategy.start keeps the model
    report = strategy.history[-1]
    assert report.used == 4 and "krum requires n >= 2f + 3, got n=4, f=1" in report.skipped
    assert strategy.aggregate_train(3, [failure(1)]) == (None, None)
    assert strategy.history[-1].skipped == "no valid reply"


def test_malformed_replies_are_dropped_not_fatal():
    rng = np.random.default_rng(2)
    global_arrays = model_arrays(rng)
    good = [{k: v + 0.01 * i for k, v in global_arrays.items()} for i in range(5)]
    wrong_shape = dict(good[0], w=np.zeros((3, 4), dtype=np.float32))
    missing_key = {"w": good[0]["w"]}
    integer_for_float = dict(good[0], b=np.zeros(3, dtype=np.int64))
    strategy = Robust("median")
    strategy.remember_global(record(global_arrays))
    replies = [reply(c, node_id=i + 1) for i, c in enumerate(good)]
    replies += [reply(wrong_shape, 11), reply(missing_key, 12), reply(integer_for_float, 13)]
    arrays, _ = strategy.aggregate_train(1, replies)
    assert arrays is not None
    report = strategy.history[-1]
    assert report.used == 5 and [node for node, _ in report.malformed] == [11, 12, 13]
    np.testing.assert_allclose(arrays["w"].numpy(), good[2]["w"], rtol=1e-6)


@pytest.mark.parametrize("rule, f", [("median", None), ("krum", 1), ("geometric_median", None), ("trimmed_mean", 1)])
def test_a_nan_client_is_resisted_while_flowers_fedavg_and_fedmedian_are_ruined(rule, f):
    rng = np.random.default_rng(3)
    global_arrays = model_arrays(rng)
    honest = [{k: v + model_arrays(rng, 0.01)[k] for k, v in global_arrays.items()} for _ in range(6)]
    byzantine = {k: np.full_like(v, np.nan) for k, v in global_arrays.items()}
    clients = honest + [byzantine]
    arrays, _ = run(Robust(rule, f=f), global_arrays, clients)
    for k in global_arrays:
        out = arrays[k].numpy()
        assert np.isfinite(out).all()
        lo = np.min([h[k] for h in honest], axis=0)
        hi = np.max([h[k] for h in honest], axis=0)
        assert ((out >= lo - 1e-6) & (out <= hi + 1e-6)).all()
    for flower_strategy in (FedAvg(), FedMedian()):
        replies = [reply(c, node_id=i + 1) for i, c in enumerate(clients)]
        flower_arrays, _ = flower_strategy.aggregate_train(1, replies)
        assert np.isnan(flower_arrays["w"].numpy()).all()


def test_num_examples_are_ignored_by_default_and_used_when_asked():
    rng = np.random.default_rng(4)
    global_arrays = model_arrays(rng)
    clients = [{k: v + model_arrays(rng, 0.1)[k] for k, v in global_arrays.items()} for _ in range(5)]
    strategy = Robust("geometric_median")
    strategy.remember_global(record(global_arrays))
    plain, _ = strategy.aggregate_train(1, [reply(c, i + 1, num_examples=10) for i, c in enumerate(clients)])
    inflated = [reply(c, i + 1, num_examples=10**9 if i == 0 else 10) for i, c in enumerate(clients)]
    same, _ = strategy.aggregate_train(2, inflated)
    np.testing.assert_array_equal(plain["w"].numpy(), same["w"].numpy())

    weighted = Robust("geometric_median", weighted=True)
    weighted.remember_global(record(global_arrays))
    weights = [1.0, 2.0, 3.0, 4.0, 5.0]
    out, _ = weighted.aggregate_train(1, [reply(c, i + 1, num_examples=w) for i, (c, w) in enumerate(zip(clients, weights))])
    updates = [{k: torch.from_numpy(c[k] - global_arrays[k]) for k in global_arrays} for c in clients]
    G, spec = byzagg.flatten(updates)
    expected = byzagg.unflatten(byzagg.geometric_median(G, weights=torch.tensor(weights, dtype=G.dtype)), spec)
    np.testing.assert_allclose(out["w"].numpy(), global_arrays["w"] + expected["w"].numpy(), rtol=1e-5, atol=1e-6)


def test_replies_without_num_examples_still_aggregate():
    rng = np.random.default_rng(5)
    global_arrays = model_arrays(rng)
    clients = [{k: v + 0.1 for k, v in global_arrays.items()} for _ in range(3)]
    arrays, metrics = run(Robust("median"), global_arrays, clients, metrics={"train-loss": 1.0})
    assert arrays is not None and metrics is None


def test_pre_aggregations_run_and_bucketing_is_seeded_per_round():
    rng = np.random.default_rng(6)
    global_arrays = model_arrays(rng)
    clients = [{k: v + model_arrays(rng, 0.1)[k] for k, v in global_arrays.items()} for _ in range(8)]
    a, _ = run(Robust("trimmed_mean", f=2, pre="nnm"), global_arrays, clients)
    assert np.isfinite(a["w"].numpy()).all()
    strategy = Robust("median", pre="bucketing", pre_params={"s": 2}, seed=3)
    first, _ = run(strategy, global_arrays, clients, server_round=4)
    again, _ = run(strategy, global_arrays, clients, server_round=4)
    np.testing.assert_array_equal(first["w"].numpy(), again["w"].numpy())


def test_aggregate_train_before_any_global_model_is_an_error():
    with pytest.raises(RuntimeError, match="configure_train"):
        Robust("median").aggregate_train(1, [])


# ---------------------------------------------------------------------------------------
# end to end: Flower's simulation engine (Ray), the example's ClientApp, Byzantine clients


@pytest.mark.skipif(os.environ.get("BYZAGG_FLOWER_E2E") == "0", reason="BYZAGG_FLOWER_E2E=0")
def test_simulation_byzantine_clients_are_resisted(monkeypatch):
    """7 clients, 2 of them sending -10x their update ("flip"), 2 rounds, every strategy on
    the same clients: FedAvg is ruined, byzagg's median and krum learn."""
    pytest.importorskip("ray", reason='Ray not installed: pip install ".[flower]" installs flwr[simulation]')
    from flwr.serverapp import ServerApp
    from flwr.simulation import run_simulation

    # Ray's workers import the example's ClientApp and byzagg by module name
    paths = [str(EXAMPLE), str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(paths))
    monkeypatch.setenv("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # Ray's FutureWarning: no GPUs are used
    monkeypatch.syspath_prepend(str(EXAMPLE))
    from byzagg_mnist.client_app import app as client_app
    from byzagg_mnist.server_app import run_strategy

    outcomes = {}
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context):
        config = {"byzantine-clients": 2, "attack": "flip", "attack-scale": 10.0, "lr": 0.05}
        for name in ("fedavg", "byzagg-median", "byzagg-krum"):
            outcomes[name] = run_strategy(grid, name, f=2, clients=7, rounds=2, client_config=config)

    start = time.perf_counter()
    run_simulation(
        server_app,
        client_app,
        num_supernodes=7,
        backend_config={"client_resources": {"num_cpus": 1}, "init_args": {"num_cpus": 2, "include_dashboard": False}},
    )
    elapsed = time.perf_counter() - start
    assert set(outcomes) == {"fedavg", "byzagg-median", "byzagg-krum"}, "the ServerApp did not finish"
    fedavg = outcomes["fedavg"]["accuracy"][-1]
    for name in ("byzagg-median", "byzagg-krum"):
        accuracy = outcomes[name]["accuracy"][-1]
        assert accuracy > 0.7 and accuracy > fedavg + 0.3, (name, accuracy, fedavg)
    assert elapsed < 300

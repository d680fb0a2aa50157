"""ServerApp: the strategies named in the run config's "strategy" (comma-separated), in turn:

- "fedavg": Flower's FedAvg (weights averaged by num-examples);
- "flower-krum", "flower-median", "flower-trimmed-mean", "flower-bulyan": Flower's own Krum,
  FedMedian, FedTrimmedAvg (beta = f / n, rounded so that f values are cut per side) and
  Bulyan, with num_malicious_nodes = f;
- "byzagg-<rule>" for any rule of byzagg.RULES (e.g. "byzagg-krum", "byzagg-median",
  "byzagg-geometric-median", "byzagg-trimmed-mean"): byzagg.flower.Robust(rule, f=f), with
  the run config's "pre" ("", "nnm" or "bucketing") as pre-aggregation.

The global model is evaluated centrally on the 2,000 test images before the first round and
after each; the accuracies are logged and, when "results-file" is set, written there as JSON
({"settings": ..., "runs": [{"strategy", "accuracy", "seconds"}, ...]}).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import Bulyan, FedAvg, FedMedian, FedTrimmedAvg, Krum

from byzagg.flower import Robust

from .task import build_model, evaluate

app = ServerApp()


def make_strategy(name: str, f: int, clients: int, pre: str = ""):
    """The strategy called `name` (module doc), waiting for all `clients` every round."""
    common = dict(
        fraction_train=1.0,
        fraction_evaluate=0.0,
        min_train_nodes=clients,
        min_available_nodes=clients,
    )
    if name == "fedavg":
        return FedAvg(**common)
    if name == "flower-krum":
        return Krum(num_malicious_nodes=f, **common)
    if name == "flower-median":
        return FedMedian(**common)
    if name == "flower-trimmed-mean":
        return FedTrimmedAvg(beta=(f + 0.5) / clients, **common)
    if name == "flower-bulyan":
        return Bulyan(num_malicious_nodes=f, **common)
    if name.startswith("byzagg-"):
        rule = name[len("byzagg-") :].replace("-", "_")
        return Robust(rule, f=f, pre=pre or None, **common)
    raise ValueError(f"unknown strategy {name!r}")


def initial_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model()


def central_evaluation(server_round: int, arrays: ArrayRecord) -> MetricRecord:
    model = build_model()
    model.load_state_dict(arrays.to_torch_state_dict())
    loss, accuracy = evaluate(model)
    return MetricRecord({"loss": loss, "accuracy": accuracy})


# Run config keys forwarded to the clients in every round's train config.
CLIENT_KEYS = ("byzantine-clients", "attack", "attack-scale", "local-epochs", "lr", "batch-size")


def run_strategy(
    grid: Grid, name: str, f: int, clients: int, rounds: int, client_config: dict, pre: str = "", seed: int = 0
) -> dict:
    """Train with strategy `name` for `rounds` rounds, sending client_config (CLIENT_KEYS) to
    the clients: {"strategy", "accuracy": per round (round 0 = the initial model), "seconds"}."""
    strategy = make_strategy(name, f, clients, pre)
    start = time.perf_counter()
    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial_model(seed).state_dict()),
        num_rounds=rounds,
        train_config=ConfigRecord(dict(client_config)),
        evaluate_fn=central_evaluation,
    )
    accuracy = [float(result.evaluate_metrics_serverapp[r]["accuracy"]) for r in range(rounds + 1)]
    return {"strategy": name, "pre": pre, "accuracy": accuracy, "seconds": time.perf_counter() - start}


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run each strategy of the run config's comma-separated "strategy" in turn, on the same
    clients (one simulation: the engine starts once), each from the same initial model."""
    run = context.run_config
    settings = {
        "num-clients": int(run["num-clients"]),
        "byzantine-clients": int(run.get("byzantine-clients", 0)),
        "attack": str(run.get("attack", "")),
        "f": int(run["f"]),
        "num-server-rounds": int(run["num-server-rounds"]),
        "pre": str(run.get("pre", "")),
    }
    outcomes = []
    for name in [s.strip() for s in str(run["strategy"]).split(",") if s.strip()]:
        outcome = run_strategy(
            grid,
            name,
            f=settings["f"],
            clients=settings["num-clients"],
            rounds=settings["num-server-rounds"],
            client_config={key: run[key] for key in CLIENT_KEYS if key in run},
            pre=settings["pre"] if name.startswith("byzagg-") else "",
        )
        print("byzagg-mnist result:", json.dumps(outcome), flush=True)
        outcomes.append(outcome)
        if run.get("results-file"):
            path = Path(str(run["results-file"]))
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps({"settings": settings, "runs": outcomes}, indent=2) + "\n")

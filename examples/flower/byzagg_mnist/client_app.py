"""ClientApp: local SGD on the client's shard; Byzantine clients reply with an attack.

Which clients are Byzantine: a client's node config key "attack" ("flip", "nan", "noise",
"little", "empire", or "none"), e.g. `flower-supernode --node-config "attack='flip'"` in a
deployment. Flower's simulation engine gives each virtual node only partition-id and
num-partitions, so there the experiment decides: the ServerApp forwards the run config's
"byzantine-clients" and "attack" in each round's train config, and the partitions below
"byzantine-clients" use that attack, the others are honest. The training settings
(local-epochs, lr, batch-size, attack-scale) come the same way.
"""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from .task import build_model, byzantine_update, evaluate, local_update, shard

app = ClientApp()


def attack_of(context: Context, config) -> str:
    """This client's attack ("none" for an honest client): node config, else the train config."""
    if "attack" in context.node_config:
        return str(context.node_config["attack"])
    partition = int(context.node_config.get("partition-id", -1))
    if 0 <= partition < int(config.get("byzantine-clients", 0)):
        return str(config.get("attack", "flip"))
    return "none"


@app.train()
def train(msg: Message, context: Context) -> Message:
    config = msg.content["config"]
    partition, partitions = int(context.node_config["partition-id"]), int(context.node_config["num-partitions"])
    global_state = msg.content["arrays"].to_torch_state_dict()
    server_round = int(config.get("server-round", 0))
    x, y = shard(partition, partitions)
    settings = dict(
        epochs=int(config.get("local-epochs", 1)),
        lr=float(config.get("lr", 0.05)),
        batch_size=int(config.get("batch-size", 32)),
        seed=1000 * server_round + partition,
    )
    attack = attack_of(context, config)
    if attack == "none":
        update, loss = local_update(global_state, x, y, **settings)
    else:
        update = byzantine_update(attack, global_state, x, y, scale=float(config.get("attack-scale", 10.0)), **settings)
        loss = 0.0
    new_state = {k: global_state[k] + update[k].to(global_state[k].dtype) for k in global_state}
    content = RecordDict(
        {
            "arrays": ArrayRecord(new_state),
            "metrics": MetricRecord({"train-loss": float(loss), "num-examples": len(y)}),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_model(msg: Message, context: Context) -> Message:
    model = build_model()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss, accuracy = evaluate(model)
    metrics = MetricRecord({"eval-loss": loss, "eval-acc": accuracy, "num-examples": 2000})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)


__all__ = ["app", "attack_of"]

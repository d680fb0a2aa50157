"""The model, the data, local training, evaluation and the Byzantine clients' attacks.

Model: the harness's MNIST MLP (byzagg.train.models.mnist_mlp, d = 79,510). Data: the
real-MNIST subset embedded in byzagg (byzagg.train.data, 8,000 train / 2,000 test images):
the train images are shuffled once (seed 0) and cut into num-partitions equal shards, one
per client (i.i.d.). Nothing is downloaded.

A Byzantine client trains like an honest one on its shard, then replies with
global + (its attack's update) instead:
- "flip": -scale times its honest update (scale: run config "attack-scale", default 10);
- "nan": every value NaN;
- "noise": its honest update plus Gaussian noise of standard deviation "attack-scale";
- "little" and "empire": the harness's attacks (byzagg.train.attacks), which need the
  honest updates' coordinate-wise mean and variance; a client has no view of the others,
  so it estimates them from three updates trained on three disjoint thirds of its shard.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from byzagg.train.attacks import attack_vector
from byzagg.train.data import NORMALISATION, load_dataset
from byzagg.train.metrics import column_moments
from byzagg.train.models import mnist_mlp

ATTACKS = ("none", "flip", "nan", "noise", "little", "empire")


def build_model() -> nn.Module:
    return mnist_mlp(relu_last=False)


@functools.lru_cache(maxsize=1)
def _images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x, train_y, test_x, test_y), normalised float images (N, 1, 28, 28)."""
    data = load_dataset("mnist-embedded")
    (mean,), (std,) = NORMALISATION["mnist-embedded"]

    def prepare(images):
        return ((images.to(torch.float32) / 255.0 - mean) / std).unsqueeze(1)

    return prepare(data.train_images), data.train_labels, prepare(data.test_images), data.test_labels


def shard(partition_id: int, num_partitions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Client partition_id's (images, labels): one of num_partitions equal i.i.d. shards."""
    train_x, train_y, _, _ = _images()
    order = torch.randperm(len(train_y), generator=torch.Generator().manual_seed(0))
    size = len(order) // num_partitions
    index = order[partition_id * size : (partition_id + 1) * size]
    return train_x[index], train_y[index]


def get_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def train(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch_size: int, seed: int
) -> float:
    """Plain SGD over (x, y) for `epochs` epochs; returns the mean training loss."""
    torch.manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.NLLLoss()
    model.train()
    total, count = 0.0, 0
    generator = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=generator)
        for lo in range(0, len(y), batch_size):
            index = order[lo : lo + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
            count += len(index)
    return total / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module) -> tuple[float, float]:
    """(loss, accuracy) on the 2,000 embedded test images; a non-finite model scores 0."""
    _, _, test_x, test_y = _images()
    model.eval()
    output = model(test_x)
    loss = float(nn.functional.nll_loss(output, test_y))
    accuracy = float((output.argmax(dim=1) == test_y).float().mean())
    if not all(torch.isfinite(p).all() for p in model.parameters()):
        accuracy = 0.0
    return loss, accuracy


def local_update(global_state, x, y, epochs, lr, batch_size, seed) -> tuple[dict[str, torch.Tensor], float]:
    """Train from global_state on (x, y): (the update, new state minus global; mean loss)."""
    model = build_model()
    model.load_state_dict(global_state)
    loss = train(model, x, y, epochs, lr, batch_size, seed)
    return {k: v - global_state[k] for k, v in get_state(model).items()}, loss


def byzantine_update(
    attack: str, global_state, x, y, epochs, lr, batch_size, seed, scale: float
) -> dict[str, torch.Tensor]:
    """The update a Byzantine client sends (module doc)."""
    if attack not in ATTACKS or attack == "none":
        raise ValueError(f"unknown attack {attack!r}; known: {', '.join(ATTACKS[1:])}")
    if attack in ("little", "empire"):
        thirds = torch.arange(len(y)).chunk(3)
        rows = []
        for k, part in enumerate(thirds):
            update, _ = local_update(global_state, x[part], y[part], epochs, lr, batch_size, seed + 1000 * k)
            rows.append(torch.cat([t.reshape(-1) for t in update.values()]))
        variance, mean = column_moments(torch.stack(rows))
        flat = attack_vector(attack, mean, variance)
        out, offset = {}, 0
        for key, t in global_state.items():
            out[key] = flat[offset : offset + t.numel()].reshape(t.shape)
            offset += t.numel()
        return out
    update, _ = local_update(global_state, x, y, epochs, lr, batch_size, seed)
    if attack == "flip":
        return {k: -scale * v for k, v in update.items()}
    if attack == "nan":
        return {k: torch.full_like(v, float("nan")) for k, v in update.items()}
    generator = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=generator) for k, v in update.items()}

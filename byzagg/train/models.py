"""The two models of the paper (Section 4.1), in plain torch.nn.

- ``mnist_mlp``: (784)-L(100)-R-L(10)-R-S. The paper's notation has a ReLU after the last
  linear layer; the original code does not (`relu_last=False`, used by the `paper` preset).
  d = 79,510 parameters.
- ``cifar_cnn``: (3, 32x32)-C(64)-R-B-C(64)-R-B-M-D-C(128)-R-B-C(128)-R-B-M-D-L(128)-R-D-L(10)-S,
  3x3 convolutions with padding 1, max-pool 2, dropout 0.25. d = 1,310,922.
"""

from __future__ import annotations

from torch import nn


def mnist_mlp(relu_last: bool = True) -> nn.Sequential:
    layers = [nn.Flatten(), nn.Linear(784, 100), nn.ReLU(), nn.Linear(100, 10)]
    if relu_last:
        layers.append(nn.ReLU())
    layers.append(nn.LogSoftmax(dim=-1))
    return nn.Sequential(*layers)


def cifar_cnn(num_classes: int = 10, dropout: float = 0.25) -> nn.Sequential:
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(cout)]

    return nn.Sequential(
        *block(3, 64),
        *block(64, 64),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        *block(64, 128),
        *block(128, 128),
        nn.MaxPool2d(2),
        nn.Dropout(dropout),
        nn.Flatten(),
        nn.Linear(128 * 8 * 8, 128),
        nn.ReLU(),
        nn.Dropout(dropout),
        nn.Linear(128, num_classes),
        nn.LogSoftmax(dim=-1),
    )


MODELS = {"mnist-mlp": mnist_mlp, "cifar-cnn": cifar_cnn}


def build_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())

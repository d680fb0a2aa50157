"""The two models of the paper (Section 4.1), in plain torch.nn.

- ``mnist_mlp``: (784)-L(100)-R-L(10)-R-S. The paper's notation has a ReLU after the last
  linear layer; the original code does not (`relu_last=False`, used by the `paper` preset).
  d = 79,510 parameters.
- ``cifar_cnn``: (3, 32x32)-C(64)-R-B-C(64)-R-B-M-D-C(128)-R-B-C(128)-R-B-M-D-L(128)-R-D-L(10)-S,
  3x3 convolutions with padding 1, max-pool 2, dropout 0.25. d = 1,310,922.

The Krum paper's two models (Blanchard et al. 2017, supplementary Section 5: "a classical
multilayer perceptron with two hidden layers" and "a 4-layer convolutional network with a
final fully connected layer"); the source gives no widths or kernels, these are ours:

- ``tabular-mlp``: (features)-L(100)-R-L(100)-R-L(classes)-S. d = 16,102 on Spambase (57
  features, 2 classes), 13,402 on breast-cancer (30 features).
- ``mnist-convnet``: (1, 28x28)-C(8)-R-M-C(16)-R-M-C(32)-R-C(32)-R-M-L(10)-S: four 3x3
  convolutions with padding 1, max-pool 2 after the first, second and fourth (28 -> 14 ->
  7 -> 3), then one fully connected layer (288 -> 10). d = 18,026. Small on purpose: the
  grids run on two CPU cores.

The BrSGD study's model (Li et al., Section 5: "LeNet [LeCun et al., 1998]" on
Fashion-MNIST; the source gives no layers, these are ours):

- ``lenet``: the classic LeNet-5 for 28x28 inputs, with ReLU and max-pooling (the usual
  modern reading; LeNet-5 itself had scaled tanh and trainable subsampling):
  (1, 28x28)-C(6, 5x5, padding 2)-R-M-C(16, 5x5)-R-M-L(120)-R-L(84)-R-L(10)-S
  (28 -> 28 -> 14 -> 10 -> 5; 16 x 5 x 5 = 400 features). d = 61,706.
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


def tabular_mlp(in_features: int = 57, num_classes: int = 2, hidden: tuple[int, int] = (100, 100)) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_features, hidden[0]),
        nn.ReLU(),
        nn.Linear(hidden[0], hidden[1]),
        nn.ReLU(),
        nn.Linear(hidden[1], num_classes),
        nn.LogSoftmax(dim=-1),
    )


def mnist_convnet(num_classes: int = 10, channels: tuple[int, int, int, int] = (8, 16, 32, 32)) -> nn.Sequential:
    c1, c2, c3, c4 = channels
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(c2, c3, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(c3, c4, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(c4 * 3 * 3, num_classes),
        nn.LogSoftmax(dim=-1),
    )


def lenet(num_classes: int = 10) -> nn.Sequential:
    """LeNet-5 for 28x28 single-channel images (see the module docstring)."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.ReLU(),
        nn.Linear(120, 84),
        nn.ReLU(),
        nn.Linear(84, num_classes),
        nn.LogSoftmax(dim=-1),
    )


MODELS = {"mnist-mlp": mnist_mlp, "cifar-cnn": cifar_cnn, "tabular-mlp": tabular_mlp, "mnist-convnet": mnist_convnet}
MODELS["lenet"] = lenet  # the BrSGD study (Li et al.)
TABULAR_MODELS = ("tabular-mlp",)


def build_model(name: str, **kwargs) -> nn.Module:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name](**kwargs)


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------------------
# The Adam study's MNIST CNN (Fabris, shared/papers/004, Section 4.1.1; issue 17)
#
# C(20, 5x5)-ReLU-MaxPool(2)-C(20, 5x5)-ReLU-MaxPool(2)-L(500)-ReLU-L(10)-log-softmax, no
# padding, stride 1: 28 -> 24 -> 12 -> 8 -> 4, so the first linear layer takes 20 * 4 * 4 =
# 320 inputs. The source prints the last layer as L(500); it is read as L(10): the layer
# feeds the log-softmax whose outputs are the class scores of the cross-entropy over the ten
# MNIST labels, and 490 outputs no label can ever select would only be dead weights (the
# source's own figure 4.2 is a drawing without sizes). d = 176,050 parameters
# (520 + 10,020 + 160,500 + 5,010).


def mnist_cnn_adam(num_classes: int = 10, channels: int = 20, hidden: int = 500) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, channels, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(channels, channels, 5),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(channels * 4 * 4, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
        nn.LogSoftmax(dim=-1),
    )


MODELS["mnist-cnn-adam"] = mnist_cnn_adam

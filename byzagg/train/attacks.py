"""Attacks: the f Byzantine rows of G, each a function of what its attacker may see.

Specification (the config field ``attack``): ``NAME[:KEY=VALUE,...]``, stored canonically
(parameters sorted, values normalised) like rule specifications; e.g. ``little``,
``gaussian``, ``gaussian:variance=200``, ``omniscient:factor=100,batch=500``.

Attacks of "Distributed Momentum" (El-Mhamdi et al. 2021): the f rows are identical and
built from the (n - f, d) matrix H of what the honest workers submit (after their momentum
when momentum is at the workers):

- ``little`` ("a little is enough", Baruch et al. 2019; parameter ``factor``, default
  1.5): mean(H) - factor * std(H), the std coordinate-wise and unbiased (divisor n - f - 1).
- ``empire`` ("fall of empires", Xie et al. 2019; parameter ``factor``, default 1.1):
  mean(H) - factor * mean(H) = -0.1 * mean(H) by default.

Both take ``base=own`` too (the Adam study's attacks, below); ``base=honest`` is the
default, the momentum paper's omniscient attacker described here.

Attacks of the Krum paper (Blanchard et al. 2017, supplementary material, Section 5):

- ``gaussian`` (parameter ``variance``, default 200): each Byzantine worker sends its own
  random vector, N(0, variance) in every coordinate. It sees nothing of the training: only
  the dimension d and its generator (seeded by the run's seed). The source says "variance
  (200)"; it is read as the variance (standard deviation sqrt(200) ~ 14.1).
- ``omniscient`` (parameters ``factor``, default 100, and ``batch``, default 500): the
  workers "have access to all the training set": they compute an accurate estimate of the
  true gradient at the current parameters, the mean gradient over ``batch`` training
  samples drawn at random from the whole training set each round (their own seeded
  stream; ``batch=0``: the whole training set), and all send -factor * estimate. It sees
  the model's parameters and the training set, not the honest workers' vectors.
- ``honest``: the f "Byzantine" workers follow the protocol (each computes and sends the
  gradient of its own mini-batch): n correct workers while the rule still assumes f, the
  source's runs "in the absence of Byzantine workers" (its footnote 4: the server never
  knows whether there are any).
- ``none``: no Byzantine rows (the unattacked baseline runs with n - f honest workers only).

Attacks of the BrSGD study (Li et al., "Efficient Byzantine-Resilient Stochastic Gradient
Descent", Section 5.1), with m = n workers:

- Gaussian, "standard deviation 200": the ``gaussian`` attack above, spelled
  ``gaussian:variance=40000`` (one implementation, the parameter is the variance).
- ``model_negation`` (parameter ``factor``, default 1e10): every Byzantine worker sends
  -factor * (the sum of the honest workers' submitted vectors). It sees the honest vectors
  of the round (an omniscient attacker), nothing else.
- ``gradient_scale`` (parameter ``factor``, default 1e10): each Byzantine worker computes
  the gradient of its own mini-batch (as an honest worker would: l2 term, clipping and
  momentum at the workers included) and sends it times factor. It sees the model and the
  training data; its mini-batches come from `OwnBatches` (its own seeded stream, so the
  honest workers' batches are the same as in the attack-free run).
- ``label_flip``: each Byzantine worker follows the protocol on its own mini-batches with
  every label y replaced by (classes - 1) - y (`label_flip`: 9 - y on ten classes; the
  source's "label shift"). It sees the model and the training data. One implementation,
  shared by every study that uses the attack.

Attacks of the Adam study (Fabris, "Investigating a Byzantine Resilient Framework for the
Adam Optimizer", Section 2.2.3, Algorithms 17 and 18; issue 17). Its attackers are not
omniscient: each Byzantine worker computes the genuine vector it would send (its own
mini-batch, from its own data shard when the run splits the data; l2 term, clipping and
the optimiser's local state included: the gradient under SGD, the momentum under RESAM,
the Adam direction under DRA, each of the two moments m_hat and v_hat under MRA) and the
attack transforms these f genuine vectors B (``base=own``), never seeing the honest ones:

- ``little:base=own,factor=1``: Algorithm 17, each Byzantine row b_i - factor * std(B), the
  std coordinate-wise over the f genuine vectors (unbiased: needs f >= 2); the source
  subtracts sigma once (factor 1).
- ``empire:base=own,factor=1.9``: Algorithm 18, each Byzantine worker sends -0.9 times its
  own vector, i.e. b_i - factor * b_i with factor 1.9. The momentum paper's empire is
  -0.1 times the honest mean (factor 1.1, ``base=honest``): another vector and another
  attacker.
- ``sign_flip`` (parameter ``base``, default ``own``): "each byzantine worker multiplies
  its moment by -1" (the source, after Allen-Zhu et al.): -b_i. ``sign_flip:base=honest``
  is the omniscient variant, every row -mean(H).
- ``label_flip`` (above): the same on labels 9 - y.
- ``inf`` and ``neg_inf``: every coordinate of every Byzantine row +inf (-inf). They see
  nothing. The library's non-finite policy (shared/API.md) keeps them out of every rule
  but ``average``, whose output is then infinite or NaN (and the model with it).

Under MRA the attack applies to both matrices the workers send: to m_hat and to v_hat
(with ``base=honest``: to the honest m_hat and to the honest v_hat). An honest v_hat is
never negative; a Byzantine one may be (empire and sign_flip make it so, little can):
``attacks`` never clamp what an attacker sends.

The 1e10 vectors are kept finite: each coordinate is clamped to the largest finite value
of the dtype (`finite`), so a Byzantine row is finite whenever what its attacker sees is
finite (float32's largest value is 3.4e38; 1e10 x a sum of gradients stays below it
unless the model has already diverged).
"""

from __future__ import annotations

import math
import re

import torch

from . import specs
from .metrics import column_moments


def little_is_enough(mean: torch.Tensor, variance: torch.Tensor, factor: float = 1.5) -> torch.Tensor:
    """mean - factor * sqrt(variance), variance coordinate-wise and unbiased."""
    return mean - factor * variance.sqrt()


def fall_of_empires(mean: torch.Tensor, variance: torch.Tensor | None = None, factor: float = 1.1) -> torch.Tensor:
    """mean - factor * mean."""
    return mean - factor * mean


def sign_flip(vectors: torch.Tensor) -> torch.Tensor:
    """-vectors (a new tensor), any shape."""
    return -vectors


def infinite(f: int, d: int, sign: float = 1.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """(f, d) rows of +inf (sign > 0) or -inf (sign < 0). Sees nothing."""
    return torch.full((f, d), math.copysign(math.inf, sign), device=device, dtype=dtype)


def from_own(name: str, own: torch.Tensor, factor: float = 1.0) -> torch.Tensor:
    """The Adam study's attacks on the Byzantine workers' (f, d) own genuine vectors B
    (what they would send): little: b_i - factor * std(B) (coordinate-wise, unbiased, over
    the f rows); empire: b_i - factor * b_i; sign_flip: -b_i. A new (f, d) tensor."""
    if name == "little":
        if own.shape[0] < 2:
            raise ValueError(f"little:base=own needs at least 2 Byzantine workers for a std, got {own.shape[0]}")
        return own - factor * own.std(dim=0, unbiased=True)
    if name == "empire":
        return own - factor * own
    if name == "sign_flip":
        return sign_flip(own)
    raise ValueError(f"attack {name} has no base=own form; those that have: little, empire, sign_flip")


def from_honest(name: str, mean: torch.Tensor, variance: torch.Tensor, f: int, factor: float = 1.0) -> torch.Tensor:
    """The omniscient attacks (base=honest) from the honest submitted vectors' coordinate-wise
    mean and unbiased variance: f identical rows of little (mean - factor * std), empire
    (mean - factor * mean) or sign_flip (-mean)."""
    if name == "little":
        vector = little_is_enough(mean, variance, factor)
    elif name == "empire":
        vector = fall_of_empires(mean, variance, factor)
    elif name == "sign_flip":
        vector = sign_flip(mean)
    else:
        raise ValueError(f"attack {name} has no base=honest form; those that have: little, empire, sign_flip")
    return vector.unsqueeze(0).expand(f, -1)


def gaussian(f: int, d: int, generator: torch.Generator, variance: float = 200.0, device=None) -> torch.Tensor:
    """(f, d) rows, each coordinate drawn from N(0, variance), independent rows. Sees only
    the shape and its own generator (drawn on the CPU, then moved: the same rows on every
    device)."""
    rows = torch.randn((f, d), generator=generator) * math.sqrt(variance)
    return rows if device is None else rows.to(device)


def omniscient(estimate: torch.Tensor, f: int, factor: float = 100.0) -> torch.Tensor:
    """(f, d) rows, all -factor * estimate, `estimate` being the attackers' estimate of the
    true gradient (see `true_gradient_estimate`)."""
    return (-factor * estimate).unsqueeze(0).expand(f, -1)


def true_gradient_estimate(flat, pipeline, batch: int, generator: torch.Generator, chunk: int = 1000) -> torch.Tensor:
    """The mean gradient of the loss at the current parameters over `batch` training
    samples drawn without replacement from the whole training set (`batch` 0 or >= the
    training set: all of it), in chunks of `chunk` samples. `flat` is a workers.FlatModel,
    `pipeline` a data.Pipeline (its training data, not its stream: the honest workers'
    batches are untouched)."""
    total = len(pipeline.train_y)
    if batch <= 0 or batch >= total:
        index = torch.arange(total)
    else:
        index = torch.randperm(total, generator=generator)[:batch]
    estimate = torch.zeros(flat.dim, device=flat.theta.device)
    for lo in range(0, len(index), chunk):
        part = index[lo : lo + chunk]
        x, y = pipeline.training_samples(part)
        gradient, _ = flat.gradients(x.unsqueeze(0), y.unsqueeze(0))
        estimate.add_(gradient[0], alpha=len(part) / len(index))
    return estimate


# --- BrSGD study (Li et al., Section 5.1) -------------------------------------------------


def finite(rows: torch.Tensor) -> torch.Tensor:
    """rows with every coordinate clamped to [-max, max] of its dtype (NaN stays NaN): an
    overflow of a scaled vector gives the largest finite value, not inf."""
    limit = torch.finfo(rows.dtype).max
    return rows.clamp(-limit, limit)


def model_negation(H: torch.Tensor, f: int, factor: float = 1e10) -> torch.Tensor:
    """(f, d) rows, all -factor * H.sum(0), H being the (honest, d) vectors the honest
    workers submit this round (what the attacker sees), clamped to finite values."""
    vector = finite(H.sum(dim=0, dtype=torch.float64).mul_(-factor).to(H.dtype))
    return vector.unsqueeze(0).expand(f, -1)


def gradient_scale(own: torch.Tensor, factor: float = 1e10) -> torch.Tensor:
    """(f, d) rows: factor times each Byzantine worker's own (f, d) submitted vector (the
    gradient of its own mini-batch), clamped to finite values."""
    return finite(own.to(torch.float64).mul_(factor).to(own.dtype))


def label_flip(labels: torch.Tensor, num_classes: int = 10) -> torch.Tensor:
    """Labels y -> (num_classes - 1) - y (9 - y on ten classes), any shape; a new tensor.
    Raises ValueError for labels outside [0, num_classes)."""
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise ValueError(f"label_flip: labels must lie in [0, {num_classes}), got {int(labels.min())}..{int(labels.max())}")
    return (num_classes - 1) - labels


class OwnBatches:
    """The Byzantine workers' own mini-batches: an endless stream of the whole training set
    of `pipeline`, shuffled each epoch by its own generator (seeded), with the pipeline's
    random flips when it flips training images. The honest workers' stream (the pipeline's
    own generator and position) is untouched."""

    def __init__(self, pipeline, seed: int):
        self.pipeline = pipeline
        self.generator = torch.Generator().manual_seed(seed)
        self.order = torch.empty(0, dtype=torch.int64)
        self.position = 0

    def indices(self, count: int) -> torch.Tensor:
        parts = []
        while count > 0:
            if self.position >= len(self.order):
                self.order = torch.randperm(len(self.pipeline.train_y), generator=self.generator)
                self.position = 0
            take = min(count, len(self.order) - self.position)
            parts.append(self.order[self.position : self.position + take])
            self.position += take
            count -= take
        return torch.cat(parts)

    def draw(self, workers: int, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(workers, batch_size, *input) inputs and (workers, batch_size) labels."""
        x, y = self.pipeline.training_samples(self.indices(workers * batch_size))
        if self.pipeline.flip_train:
            x = self.pipeline.flip(x, self.generator)
        return x.view(workers, batch_size, *x.shape[1:]), y.view(workers, batch_size)


# attacks whose Byzantine workers compute gradients on their own mini-batches (and, with
# base=own, little, empire and sign_flip: see `uses_own`)
OWN_GRADIENT_ATTACKS = ("gradient_scale", "label_flip")
# attacks built from vectors: the honest ones (base=honest) or the attackers' own (base=own)
BASED = ("little", "empire", "sign_flip")
INFINITE = {"inf": 1.0, "neg_inf": -1.0}

ATTACKS = {"little": little_is_enough, "empire": fall_of_empires}
# every attack name a specification may use, with its parameters and their defaults
PARAMS: dict[str, dict[str, float | str]] = {
    "none": {},
    "honest": {},
    "little": {"factor": 1.5, "base": "honest"},
    "empire": {"factor": 1.1, "base": "honest"},
    "sign_flip": {"base": "own"},
    "inf": {},
    "neg_inf": {},
    "gaussian": {"variance": 200.0},
    "omniscient": {"factor": 100.0, "batch": 500},
    "model_negation": {"factor": 1e10},
    "gradient_scale": {"factor": 1e10},
    "label_flip": {},
}
NAMES = tuple(PARAMS)
# parameters whose values are words, with the words allowed
CHOICES = {"base": ("honest", "own")}


def _convert(name: str, key: str, text: str):
    """The value of parameter `key` of attack `name` from its text (SpecTable's converter)."""
    kind = type(PARAMS[name][key])
    if kind is str:
        if text not in CHOICES[key]:
            words = ", ".join(CHOICES[key])
            raise ValueError(f"attack {name}: parameter {key} must be one of {words}, got {text!r}")
        return text
    if kind is int and not re.fullmatch(r"[+-]?\d+", text):
        raise ValueError(f"attack {name}: parameter {key} must be an integer, got {text!r}")
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"attack {name}: parameter {key} must be a number, got {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"attack {name}: parameter {key} must be finite and >= 0, got {text!r}")
    return value


# parse("gaussian:variance=100") -> ("gaussian", {"variance": 100.0}); canonical: one
# spelling (defaults left out); name_of; params: the defaults filled in (specs.SpecTable)
SPECS = specs.SpecTable("attack", PARAMS, _convert)
parse, canonical, name_of, params = SPECS.parse, SPECS.canonical, SPECS.name_of, SPECS.params


def attack_vector(attack: str, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """The Byzantine vector of ``little`` or ``empire`` (a specification: its ``factor``
    taken, ``base=honest`` only) from the honest submitted vectors' coordinate-wise mean and
    unbiased variance (metrics.column_moments(H), computed once per step and shared with the
    metrics)."""
    name = attack.partition(":")[0].strip()
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; known: none, {', '.join(ATTACKS)}")
    values = params(attack)
    if values["base"] != "honest":
        raise ValueError(f"attack {attack}: attack_vector builds base=honest attacks only")
    return ATTACKS[name](mean, variance, values["factor"])


def uses_own(spec: str) -> bool:
    """Whether the attack's Byzantine workers compute their own genuine vectors (their own
    mini-batches and optimiser state): gradient_scale, label_flip, and the base=own attacks."""
    name = name_of(spec)
    return name in OWN_GRADIENT_ATTACKS or (name in BASED and params(spec)["base"] == "own")


def byzantine_rows(attack: str, H: torch.Tensor, f: int) -> torch.Tensor:
    """(f, d) Byzantine rows (one vector repeated f times) from the (n - f, d) honest H
    (``little`` and ``empire``)."""
    if attack in ("none", "honest") or f == 0:
        return H.new_zeros((0, H.shape[1]))
    variance, mean = column_moments(H)
    return attack_vector(attack, mean, variance).unsqueeze(0).expand(f, -1)

"""Attacks: the f Byzantine rows of G, each a function of what its attacker may see.

Specification (the config field ``attack``): ``NAME[:KEY=VALUE,...]``, stored canonically
(parameters sorted, values normalised) like rule specifications; e.g. ``little``,
``gaussian``, ``gaussian:variance=200``, ``omniscient:factor=100,batch=500``.

Attacks of "Distributed Momentum" (El-Mhamdi et al. 2021): the f rows are identical and
built from the (n - f, d) matrix H of what the honest workers submit (after their momentum
when momentum is at the workers):

- ``little`` ("a little is enough", Baruch et al. 2019): mean(H) - 1.5 * std(H), the std
  coordinate-wise and unbiased (divisor n - f - 1).
- ``empire`` ("fall of empires", Xie et al. 2019): mean(H) - 1.1 * mean(H) = -0.1 * mean(H).

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
"""

from __future__ import annotations

import math
import re

import torch

from .metrics import column_moments


def little_is_enough(mean: torch.Tensor, variance: torch.Tensor, factor: float = 1.5) -> torch.Tensor:
    """mean - factor * sqrt(variance), variance coordinate-wise and unbiased."""
    return mean - factor * variance.sqrt()


def fall_of_empires(mean: torch.Tensor, variance: torch.Tensor | None = None, factor: float = 1.1) -> torch.Tensor:
    """mean - factor * mean."""
    return mean - factor * mean


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


ATTACKS = {"little": little_is_enough, "empire": fall_of_empires}
# every attack name a specification may use, with its parameters and their defaults
PARAMS: dict[str, dict[str, float]] = {
    "none": {},
    "honest": {},
    "little": {},
    "empire": {},
    "gaussian": {"variance": 200.0},
    "omniscient": {"factor": 100.0, "batch": 500},
}
NAMES = tuple(PARAMS)


def _format(value) -> str:
    if isinstance(value, int):
        return str(value)
    return str(int(value)) if math.isfinite(value) and value.is_integer() else repr(value)


def parse(spec: str) -> tuple[str, dict]:
    """("gaussian:variance=100") -> ("gaussian", {"variance": 100.0}); the parameters a
    specification leaves out are not filled in (see `params`). Raises ValueError naming the
    valid names or parameters."""
    if not isinstance(spec, str) or not spec.strip():
        raise ValueError(f"empty attack; known: {', '.join(NAMES)}")
    name, colon, rest = spec.strip().partition(":")
    name = name.strip()
    if name not in PARAMS:
        raise ValueError(f"unknown attack {name!r}; known: {', '.join(NAMES)}")
    allowed = PARAMS[name]
    values: dict = {}
    if colon and not rest.strip():
        raise ValueError(f"attack {name}: nothing after ':'")
    for item in rest.split(",") if rest.strip() else []:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in allowed:
            known = ", ".join(allowed) or "none"
            raise ValueError(f"attack {name}: unknown parameter {item.strip()!r} (parameters: {known})")
        if key in values:
            raise ValueError(f"attack {name}: parameter {key} given twice")
        kind = type(allowed[key])
        text = text.strip()
        if kind is int and not re.fullmatch(r"[+-]?\d+", text):
            raise ValueError(f"attack {name}: parameter {key} must be an integer, got {text!r}")
        try:
            value = kind(text)
        except ValueError:
            raise ValueError(f"attack {name}: parameter {key} must be a number, got {text!r}") from None
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"attack {name}: parameter {key} must be finite and >= 0, got {text!r}")
        values[key] = value
    return name, values


def canonical(spec: str) -> str:
    """One spelling per attack: parameters sorted, values normalised, defaults kept out."""
    name, values = parse(spec)
    values = {k: v for k, v in values.items() if v != PARAMS[name][k]}
    return name + (":" + ",".join(f"{k}={_format(v)}" for k, v in sorted(values.items())) if values else "")


def name_of(spec: str) -> str:
    return parse(spec)[0]


def params(spec: str) -> dict:
    """The attack's parameters with the defaults filled in."""
    name, values = parse(spec)
    return {**PARAMS[name], **values}


def attack_vector(attack: str, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """The Byzantine vector of ``little`` or ``empire`` from the honest submitted vectors'
    coordinate-wise mean and unbiased variance (metrics.column_moments(H), computed once
    per step and shared with the metrics)."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; known: none, {', '.join(ATTACKS)}")
    return ATTACKS[attack](mean, variance)


def byzantine_rows(attack: str, H: torch.Tensor, f: int) -> torch.Tensor:
    """(f, d) Byzantine rows (one vector repeated f times) from the (n - f, d) honest H
    (``little`` and ``empire``)."""
    if attack in ("none", "honest") or f == 0:
        return H.new_zeros((0, H.shape[1]))
    variance, mean = column_moments(H)
    return attack_vector(attack, mean, variance).unsqueeze(0).expand(f, -1)

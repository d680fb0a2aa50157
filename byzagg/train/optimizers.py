"""What the workers send and how the server steps: SGD, RESAM, DRA and MRA (issue 17).

Specification (the config field ``optimizer``): ``NAME[:KEY=VALUE,...]``, stored
canonically (parameters sorted, values normalised, defaults kept out) like attack
specifications; e.g. ``sgd``, ``resam``, ``dra:eps=1e-8``. Every worker first computes its
gradient g (the l2 term added, then clipped, as for SGD); then:

- ``sgd`` (no parameters): the harness's SGD, exactly as before this option existed: the
  workers send g, or their momentum when the run's ``momentum`` is ``worker`` (config
  fields ``momentum`` and ``mu``); theta <- theta - lr * (the aggregate, or the server's
  momentum of it).
- ``resam`` (``beta``, default 0.99): RESAM (Farhadkhani et al. 2022, as the Gupta slides
  and Fabris, Algorithm 11, state it): each worker keeps m <- beta m + (1 - beta) g and
  sends m; theta <- theta - lr * F(m_1, ..., m_n). m starts at 0 (Fabris's Algorithm 11
  writes m_0 = 1; its DRA and MRA, and the slides' momentum, start at 0: read as a typo).
- ``dra`` (``beta1`` 0.99, ``beta2`` 0.999, ``eps`` 1e-10): Descent direction Resilient
  Adam (Fabris, Algorithm 19): each worker runs Adam's moments on its own gradients
  (Algorithm 10: m <- beta1 m + (1 - beta1) g, v <- beta2 v + (1 - beta2) g^2, bias
  corrections m_hat = m / (1 - beta1^t), v_hat = v / (1 - beta2^t), t = 1, 2, ...) and
  sends its direction q = m_hat / (sqrt(v_hat) + eps); theta <- theta - lr * F(q_1, ...,
  q_n). Algorithm 19 says the worker computes q "as described in Algorithm 10", which is
  this; the thesis's Equation (3.1), q = m / sqrt(eps + v) (no bias correction, eps under
  the square root), is the simplified form of its convergence proof (Section 3.2), not
  the algorithm of its experiments. eps = 1e-10 is Algorithm 10's "usually 10^-10"
  (Kingma and Ba's default is 1e-8).
- ``mra`` (same parameters): Moment Resilient Adam (Fabris, Algorithm 20): each worker
  sends m_hat and v_hat (as above); the server aggregates each with the same rule,
  m* = F(m_hat_1, ...), v* = F(v_hat_1, ...), and steps theta <- theta - lr * m* /
  sqrt(v* + eps): eps *under* the square root, as Algorithm 20 writes it (Algorithm 10 and
  DRA add it outside). A v* with negative coordinates (only Byzantine vectors can make
  one: honest v_hat >= 0) gives NaN there, as in the source (its Section 4.1.2.1). The two
  matrices go to two instances of the rule built alike (a stateful rule, e.g. bucketing,
  draws the same permutations for both).

Byzantine workers: an attack replaces what they would send under the optimiser (the
gradient, the RESAM momentum, the DRA direction, or both MRA moments; attacks.py). Honest
v_hat is never negative; a Byzantine worker may send anything, negative or infinite
second moments included.
"""

from __future__ import annotations

import math

import torch

from . import specs

# every optimiser name with its parameters and their defaults
PARAMS: dict[str, dict[str, float]] = {
    "sgd": {},
    "resam": {"beta": 0.99},
    "dra": {"beta1": 0.99, "beta2": 0.999, "eps": 1e-10},
    "mra": {"beta1": 0.99, "beta2": 0.999, "eps": 1e-10},
}
NAMES = tuple(PARAMS)
# how many matrices the workers send per step
SENT = {"sgd": 1, "resam": 1, "dra": 1, "mra": 2}


def _convert(name: str, key: str, text: str) -> float:
    """The value of parameter `key` of optimizer `name` from its text (SpecTable's converter)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"optimizer {name}: parameter {key} must be a number, got {text!r}") from None
    if key.startswith("beta") and not 0 <= value < 1:
        raise ValueError(f"optimizer {name}: {key} must lie in [0, 1), got {text!r}")
    if key == "eps" and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"optimizer {name}: eps must be finite and >= 0, got {text!r}")
    return value


# parse("dra:eps=1e-8") -> ("dra", {"eps": 1e-8}); canonical: one spelling (defaults left
# out); name_of; params: the defaults filled in (specs.SpecTable)
SPECS = specs.SpecTable("optimizer", PARAMS, _convert)
parse, canonical, name_of, params = SPECS.parse, SPECS.canonical, SPECS.name_of, SPECS.params


class LocalState:
    """The local state of a group of workers (one row each) under ``resam``, ``dra`` or
    ``mra``: `send(g)` takes their (rows, d) gradients of this step and returns what they
    send, a tuple of (rows, d) matrices (one; two for MRA: m_hat, v_hat). Buffers start at
    zero; t counts the calls from 1 (the bias corrections)."""

    def __init__(self, spec: str, rows: int, d: int, device=None, dtype=torch.float32):
        name, values = parse(spec)
        if name == "sgd":
            raise ValueError("LocalState: sgd keeps no local state here (the run loop's momentum handles it)")
        self.name = name
        self.params = {**PARAMS[name], **values}
        self.t = 0
        self.m = torch.zeros(rows, d, device=device, dtype=dtype)
        self.v = torch.zeros(rows, d, device=device, dtype=dtype) if name in ("dra", "mra") else None

    def send(self, g: torch.Tensor) -> tuple[torch.Tensor, ...]:
        self.t += 1
        if self.name == "resam":
            beta = self.params["beta"]
            self.m.mul_(beta).add_(g, alpha=1 - beta)
            return (self.m.clone(),)
        beta1, beta2, eps = self.params["beta1"], self.params["beta2"], self.params["eps"]
        self.m.mul_(beta1).add_(g, alpha=1 - beta1)
        self.v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
        m_hat = self.m / (1 - beta1**self.t)
        v_hat = self.v / (1 - beta2**self.t)
        if self.name == "dra":
            return (m_hat / (v_hat.sqrt() + eps),)
        return m_hat, v_hat


def server_direction(spec: str, aggregates: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """The update direction (theta <- theta - lr * direction) from the rule's outputs: the
    aggregate itself (resam, dra), or m* / sqrt(v* + eps) (mra)."""
    name = name_of(spec)
    if name == "mra":
        m_star, v_star = aggregates
        return m_star / (v_star + params(spec)["eps"]).sqrt()
    if len(aggregates) != 1:
        raise ValueError(f"optimizer {name}: expected one aggregate, got {len(aggregates)}")
    return aggregates[0]

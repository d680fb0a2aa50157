"""Attacks: the f Byzantine rows, all identical, built from the honest submitted vectors.

The adversary is omniscient: it sees the (n - f, d) matrix H of what the honest workers
submit (after their momentum when momentum is at the workers).

- ``little`` ("a little is enough", Baruch et al. 2019): mean(H) - 1.5 * std(H), the std
  coordinate-wise and unbiased (divisor n - f - 1).
- ``empire`` ("fall of empires", Xie et al. 2019): mean(H) - 1.1 * mean(H) = -0.1 * mean(H).
- ``none``: no Byzantine rows (the unattacked baseline runs with n - f honest workers only).
"""

from __future__ import annotations

import torch

from .metrics import column_moments


def little_is_enough(mean: torch.Tensor, variance: torch.Tensor, factor: float = 1.5) -> torch.Tensor:
    """mean - factor * sqrt(variance), variance coordinate-wise and unbiased."""
    return mean - factor * variance.sqrt()


def fall_of_empires(mean: torch.Tensor, variance: torch.Tensor | None = None, factor: float = 1.1) -> torch.Tensor:
    """mean - factor * mean."""
    return mean - factor * mean


ATTACKS = {"little": little_is_enough, "empire": fall_of_empires}


def attack_vector(attack: str, mean: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """The Byzantine vector from the honest submitted vectors' coordinate-wise mean and
    unbiased variance (metrics.column_moments(H), computed once per step and shared with
    the metrics)."""
    if attack not in ATTACKS:
        raise ValueError(f"unknown attack {attack!r}; known: none, {', '.join(ATTACKS)}")
    return ATTACKS[attack](mean, variance)


def byzantine_rows(attack: str, H: torch.Tensor, f: int) -> torch.Tensor:
    """(f, d) Byzantine rows (one vector repeated f times) from the (n - f, d) honest H."""
    if attack == "none" or f == 0:
        return H.new_zeros((0, H.shape[1]))
    variance, mean = column_moments(H)
    return attack_vector(attack, mean, variance).unsqueeze(0).expand(f, -1)

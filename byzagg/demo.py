"""A worked attack scenario: what each rule returns when f of n workers are Byzantine.

Honest workers send noisy estimates of one true gradient (the mean gradient plus
independent noise, the variance-norm regime of distributed SGD); f Byzantine workers send
the "a little is enough" vector (honest mean - 1.5 x coordinate-wise std, all identical)
or the "fall of empires" vector (-0.1 x honest mean). For each rule we print its distance
to the honest mean, relative to the honest mean's norm, the cosine with it, and the time.

    byzagg-demo            # or: python -m byzagg.demo [--n 25 --f 5 --d 100000]
"""

from __future__ import annotations

import argparse
import functools
import math
import time

import torch

import byzagg
from byzagg import _rules


def honest_gradients(n_honest: int, d: int, noise: float, generator: torch.Generator) -> torch.Tensor:
    true_gradient = torch.randn(d, generator=generator)
    return true_gradient + noise * torch.randn(n_honest, d, generator=generator)


def attack(honest: torch.Tensor, f: int, name: str) -> torch.Tensor:
    mean = honest.mean(dim=0)
    if name == "little":
        byzantine = mean - 1.5 * honest.std(dim=0)
    elif name == "empire":
        byzantine = -0.1 * mean
    elif name == "nan":
        byzantine = torch.full_like(mean, float("nan"))
    else:
        raise ValueError(f"unknown attack {name!r}")
    return torch.cat([honest, byzantine.expand(f, -1)])


def rule_calls(n: int, f: int) -> dict:
    """Every rule of the table that returns one vector and accepts (n, f), called with its
    sample parameters; the pre-aggregations (nnm, bucketing) composed with a rule."""
    calls = {}
    for rule in _rules.TABLE:
        if not rule.aggregation or rule.result != "vector":
            continue
        if rule.name in _rules.REQUIREMENTS and not _rules.REQUIREMENTS[rule.name][1](n, f):
            continue
        if rule.name == "mda" and math.comb(n, f) > 50_000:  # exact subset search: only where quick
            continue
        calls[rule.name] = functools.partial(byzagg.aggregate, rule.name, f=f, **rule.sample)
    # centered clipping from the median, as it would start from the previous aggregate
    calls["centered_clipping"] = lambda G: byzagg.centered_clipping(G, tau=10.0, iters=3, center=byzagg.median(G))
    if n > 2 * f:
        calls["nnm + trimmed_mean"] = lambda G: byzagg.trimmed_mean(byzagg.nnm(G, f), f)
    calls["bucketing + median"] = lambda G: byzagg.median(byzagg.bucketing(G, 2, torch.Generator().manual_seed(0)))
    return calls


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=23, help="workers in all (default 23)")
    parser.add_argument("--f", type=int, default=5, help="Byzantine workers (default 5)")
    parser.add_argument("--d", type=int, default=100_000, help="gradient dimension (default 100000)")
    parser.add_argument("--noise", type=float, default=1.0, help="honest noise std per coordinate")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 0 <= args.f < args.n:
        parser.error(f"need 0 <= f < n, got n={args.n}, f={args.f}")

    print(f"byzagg {byzagg.__version__}: {byzagg.backend()}")
    print(f"n={args.n} workers, f={args.f} Byzantine, d={args.d}, honest noise std {args.noise}\n")
    generator = torch.Generator().manual_seed(args.seed)
    honest = honest_gradients(args.n - args.f, args.d, args.noise, generator)
    honest_mean = honest.mean(dim=0)
    scale = honest_mean.norm().item()
    for attack_name in ("little", "empire", "nan"):
        G = attack(honest, args.f, attack_name)
        print(f"attack: {attack_name:<8} (relative error = ||rule(G) - honest mean|| / ||honest mean||)")
        print(f"  {'rule':<22}{'relative error':>15}{'cosine':>9}{'time (ms)':>11}")
        for name, call in rule_calls(args.n, args.f).items():
            start = time.perf_counter()
            result = call(G)
            elapsed = 1e3 * (time.perf_counter() - start)
            if torch.isfinite(result).all():
                error = f"{(result - honest_mean).norm().item() / scale:15.4f}"
                cosine = f"{torch.nn.functional.cosine_similarity(result, honest_mean, dim=0).item():9.4f}"
            else:
                error, cosine = f"{'non-finite':>15}", f"{'-':>9}"
            print(f"  {name:<22}{error}{cosine}{elapsed:11.1f}")
        print()


if __name__ == "__main__":
    main()

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
import math
import time

import torch

import byzagg


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
    calls = {
        "average": lambda G: byzagg.average(G),
        "median": lambda G: byzagg.median(G),
        "trimmed_mean": lambda G: byzagg.trimmed_mean(G, f),
        "meamed": lambda G: byzagg.meamed(G, f),
        "phocas": lambda G: byzagg.phocas(G, f),
        "krum": lambda G: byzagg.krum(G, f),
        "multi_krum": lambda G: byzagg.multi_krum(G, f),
        "bulyan": lambda G: byzagg.bulyan(G, f),
        "medoid": lambda G: byzagg.medoid(G),
        "geometric_median": lambda G: byzagg.geometric_median(G),
        "centered_clipping": lambda G: byzagg.centered_clipping(G, tau=10.0, iters=3, center=byzagg.median(G)),
        "nnm + trimmed_mean": lambda G: byzagg.trimmed_mean(byzagg.nnm(G, f), f),
        "bucketing + median": lambda G: byzagg.median(byzagg.bucketing(G, 2, torch.Generator().manual_seed(0))),
        "brsgd": lambda G: byzagg.brsgd(G),
    }
    if n < 4 * f + 3:
        calls.pop("bulyan")
    if math.comb(n, f) <= 50_000:  # MDA searches subsets exactly: only where it is quick
        calls["mda"] = lambda G: byzagg.mda(G, f)
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

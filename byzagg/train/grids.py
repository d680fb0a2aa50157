"""Named grids of runs: the paper's two setups and a quick demonstration.

- ``paper-mnist``: MNIST-shaped setup (Section 4.1): n = 51, f in {24, 12}, Krum and Median
  (+ Bulyan at f = 12), attacks little/empire, momentum at the server/workers, learning rates
  0.5 and 0.02 (constant), seeds 1-5, plus per (f, lr) the unattacked baseline (average of
  the n - f honest workers). 44 setups x 5 seeds = 220 runs. Batch 83, mu 0.9, l2 1e-4,
  clip 2, 300 steps, accuracy every 5 steps. Data set: mnist (needs --data-dir),
  fashion-mnist, or mnist-embedded.
- ``paper-cifar10``: n = 25, f in {11, 5}, same rules/attacks/momentum, learning rate 0.01
  decayed as lr0 / (t / 167 + 1) from step 1500 (recomputed every 1500 steps, as the original)
  or 0.001 constant; batch 50, mu 0.99, l2 1e-2, clip 5, 3000 steps, accuracy every 100.
- ``quick``: the MNIST setup on the embedded real-MNIST subset, f = 12, lr 0.5, attack
  little, Krum/Median/Bulyan x server/worker momentum + the unattacked baseline, seed 1,
  150 steps with accuracy every 10 (7 runs).
"""

from __future__ import annotations

from dataclasses import replace

from .experiment import RunConfig

GRIDS = ("paper-mnist", "paper-cifar10", "quick")


def _paper_grid(base: RunConfig, fs: tuple[int, int], lrs: list[dict], seeds) -> list[RunConfig]:
    # seed-major order: a grid cut short still covers every setup with its first seeds
    configs = []
    for seed in seeds:
        for lr in lrs:
            for f in fs:
                rules = ["krum", "median"] + (["bulyan"] if f == min(fs) else [])
                configs.append(replace(base, f=f, rule="average", attack="none", momentum="server", seed=seed, **lr))
                for rule in rules:
                    for attack in ("little", "empire"):
                        for momentum in ("server", "worker"):
                            configs.append(
                                replace(base, f=f, rule=rule, attack=attack, momentum=momentum, seed=seed, **lr)
                            )
    return configs


def make_grid(
    name: str, dataset: str | None = None, preset: str = "paper", seeds=None, steps: int | None = None
) -> list[RunConfig]:
    if name == "paper-mnist":
        base = RunConfig(
            dataset=dataset or "mnist",
            model="mnist-mlp",
            preset=preset,
            n=51,
            mu=0.9,
            batch_size=83,
            l2=1e-4,
            clip=2.0,
            steps=300,
            eval_every=5,
        )
        configs = _paper_grid(base, (24, 12), [{"lr": 0.5}, {"lr": 0.02}], seeds or range(1, 6))
    elif name == "paper-cifar10":
        base = RunConfig(
            dataset=dataset or "cifar10",
            model="cifar-cnn",
            preset=preset,
            n=25,
            mu=0.99,
            batch_size=50,
            l2=1e-2,
            clip=5.0,
            steps=3000,
            eval_every=100,
        )
        configs = _paper_grid(
            base,
            (11, 5),
            [{"lr": 0.01, "lr_decay": 167.0, "lr_decay_every": 1500}, {"lr": 0.001}],
            seeds or range(1, 6),
        )
    elif name == "quick":
        base = RunConfig(
            dataset=dataset or "mnist-embedded",
            model="mnist-mlp",
            preset=preset,
            n=51,
            f=12,
            mu=0.9,
            batch_size=83,
            l2=1e-4,
            clip=2.0,
            lr=0.5,
            steps=150,
            eval_every=10,
        )
        configs = []
        for seed in seeds or (1,):
            configs.append(replace(base, rule="average", attack="none", momentum="server", seed=seed))
            for rule in ("krum", "median", "bulyan"):
                for momentum in ("server", "worker"):
                    configs.append(replace(base, rule=rule, attack="little", momentum=momentum, seed=seed))
    else:
        raise ValueError(f"unknown grid {name!r}; known: {', '.join(GRIDS)}")
    if steps is not None:
        eval_every = max(1, min(configs[0].eval_every, steps))
        configs = [replace(c, steps=steps, eval_every=eval_every) for c in configs]
    return configs


def parse_filters(filters: list[str] | None) -> dict[str, set[str]]:
    """["rule=krum,median", "f=12"] -> {"rule": {"krum", "median"}, "f": {"12"}}."""
    parsed: dict[str, set[str]] = {}
    fields = set(RunConfig.__dataclass_fields__)
    for item in filters or []:
        if "=" not in item:
            raise ValueError(f"filter {item!r}: expected FIELD=VALUE[,VALUE...]")
        key, values = item.split("=", 1)
        key = key.strip()
        if key not in fields:
            raise ValueError(f"filter {item!r}: unknown field {key!r}; fields: {', '.join(sorted(fields))}")
        parsed.setdefault(key, set()).update(v.strip() for v in values.split(","))
    return parsed


def _matches(value, wanted: set[str]) -> bool:
    for w in wanted:
        if str(value) == w:
            return True
        try:
            if value is not None and float(value) == float(w):
                return True
        except (TypeError, ValueError):
            pass
    return False


def apply_filters(configs: list[RunConfig], filters: dict[str, set[str]]) -> list[RunConfig]:
    return [c for c in configs if all(_matches(getattr(c, k), v) for k, v in filters.items())]

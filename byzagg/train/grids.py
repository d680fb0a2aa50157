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

The Krum paper's experiments (Blanchard et al. 2017, supplementary Section 5; preset
`canonical`: the library's rules; plain SGD: mu = 0, no clipping, no l2 term):

- ``krum-paper-nobyz``: tabular task (breast-cancer offline; ``--dataset spambase
  --data-dir``), ``tabular-mlp``, n = 15 correct workers (attack ``honest``) with the rules
  assuming f = 5, mini-batch 3, lr 0.05, 500 rounds, accuracy every 10; rules average,
  multi_krum, krum_1p, krum, medoid; seeds 1-5 (25 runs). Source: Figure 4.
- ``krum-paper-gaussian``: the same with 5 of the 15 workers (33%) Gaussian (variance
  200), plus averaging against the other reading (standard deviation 200: variance
  40,000) (30 runs). Source: Figure 5.
- ``krum-paper-omniscient``: embedded real-MNIST subset (or ``--dataset fashion-mnist``),
  ``mnist-convnet``, n = 31; Multi-Krum facing f = 14 omniscient workers (45%) against the
  average of n = 31 correct workers (f = 0, attack none), mini-batch 2, 8 and 32, lr 0.1,
  KRUM_PAPER_OMNISCIENT_STEPS rounds, accuracy every 25; seeds 1-5 (30 runs). Source:
  Figures 2 and 3.

The BrSGD study (Li et al., "Efficient Byzantine-Resilient Stochastic Gradient Descent",
Section 5, Table 1, Figure 3; preset `canonical`, plain mini-batch SGD: mu = 0, no
clipping, no l2 term):

- ``brsgd-table1``: Fashion-MNIST (the real set: the Debian package's files or
  ``--data-dir``), ``lenet``, m = n = 20 workers, step size 0.03, mini-batch
  BRSGD_BATCH per worker, BRSGD_STEPS steps, accuracy every BRSGD_EVAL_EVERY; rules brsgd
  (beta = 1/2, threshold = inf: see docs/reproduction.md, "BrSGD study"), median,
  average, krum (only where n >= 2f + 3: not at f = 10) x attacks Gaussian (std 200:
  ``gaussian:variance=40000``), ``model_negation``, ``gradient_scale``, ``label_flip`` x
  f in {2, 5, 10} (10%, 25%, 50%), plus the attack-free runs (f = 0, attack none) of
  average and brsgd; seeds BRSGD_SEEDS (46 runs a seed). Seed-major order.

The Adam study (Fabris, "Investigating a Byzantine Resilient Framework for the Adam
Optimizer", Chapter 4; issue 17; preset `canonical`, the library's rules): optimisers
ADAM_OPTIMIZERS (sgd, resam, dra, mra: optimizers.py) x rules ADAM_RULES (average,
trimmed_mean, meamed, median, mda) x attacks ADAM_ATTACKS (honest: no Byzantine worker, and the study's
little, empire, sign flip, label flip, +inf, -inf: attacks.py), mini-batch 25 (50 on
CIFAR-10), clip 2, l2 1e-4, mu 0 (the optimisers keep their own momentum; SGD is plain),
seeds ADAM_SEEDS: 140 runs a seed.

- ``adam-mnist-homogeneous``: embedded real-MNIST subset (``--dataset mnist --data-dir``:
  the full set), ``mnist-cnn-adam``, n = 15 (10 honest + 5 Byzantine), split
  ``homogeneous``; lr 0.75 (sgd, resam), 0.001 (dra, mra); ADAM_MNIST_STEPS steps,
  accuracy every ADAM_MNIST_EVAL_EVERY (sized for about a minute a run on this machine's
  two shared cores: docs/reproduction.md).
- ``adam-mnist-heterogeneous``: the same with n = 17 (13 + 4), split
  ``dirichlet:alpha=0.1``, NNM before every rule (``nnm+RULE``), lr 0.75 / (1 +
  floor(t / 50)) for sgd and resam (lr_decay 50 recomputed every 50 steps), 0.001 for dra
  and mra.
- ``adam-cifar10-homogeneous`` / ``adam-cifar10-heterogeneous``: CIFAR-10 (``--data-dir``;
  a GPU: ``--device cuda``), ``cifar-cnn``, mini-batch 50, 1500 steps, accuracy every
  ADAM_CIFAR_EVAL_EVERY; homogeneous n = 15 (10 + 5), lr 0.25 for sgd and resam;
  heterogeneous n = 15 (11 + 4), Dirichlet 0.1 with NNM, lr 0.75 / (1 + floor(t / 50)) for
  sgd, 0.25 for resam; 0.001 for dra and mra in both. Tested on ``cifar10-synthetic``.
"""

from __future__ import annotations

from dataclasses import replace

from .experiment import RunConfig

GRIDS = ("paper-mnist", "paper-cifar10", "quick", "krum-paper-nobyz", "krum-paper-gaussian", "krum-paper-omniscient")
GRIDS += ("brsgd-table1",)  # the BrSGD study (Li et al.)
ADAM_GRIDS = (
    "adam-mnist-homogeneous",
    "adam-mnist-heterogeneous",
    "adam-cifar10-homogeneous",
    "adam-cifar10-heterogeneous",
)
GRIDS += ADAM_GRIDS  # the Adam study (Fabris)
KRUM_PAPER_RULES = ("average", "multi_krum", "krum_1p", "krum", "medoid")
KRUM_PAPER_BATCHES = (2, 8, 32)
KRUM_PAPER_OMNISCIENT_STEPS = 500
# the preset of each grid when none is given
DEFAULT_PRESETS = {name: ("canonical" if name.startswith("krum-paper") else "paper") for name in GRIDS}
DEFAULT_PRESETS["brsgd-table1"] = "canonical"
DEFAULT_PRESETS.update({name: "canonical" for name in ADAM_GRIDS})


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


def _krum_paper_grid(name: str, dataset: str | None, preset: str, seeds) -> list[RunConfig]:
    if name in ("krum-paper-nobyz", "krum-paper-gaussian"):
        base = RunConfig(
            dataset=dataset or "breast-cancer",
            model="tabular-mlp",
            preset=preset,
            n=15,
            f=5,
            attack="honest" if name == "krum-paper-nobyz" else "gaussian",
            momentum="server",
            mu=0.0,
            batch_size=3,
            lr=0.05,
            l2=0.0,
            clip=None,
            steps=500,
            eval_every=10,
        )
        configs = []
        for seed in seeds or range(1, 6):
            configs += [replace(base, rule=rule, seed=seed) for rule in KRUM_PAPER_RULES]
            if name == "krum-paper-gaussian":  # the other reading of "variance (200)": std 200
                configs.append(replace(base, rule="average", attack="gaussian:variance=40000", seed=seed))
        return configs
    base = RunConfig(
        dataset=dataset or "mnist-embedded",
        model="mnist-convnet",
        preset=preset,
        n=31,
        momentum="server",
        mu=0.0,
        lr=0.1,
        l2=0.0,
        clip=None,
        steps=KRUM_PAPER_OMNISCIENT_STEPS,
        eval_every=25,
    )
    configs = []
    for seed in seeds or range(1, 6):
        for batch in KRUM_PAPER_BATCHES:
            configs.append(replace(base, f=0, rule="average", attack="none", batch_size=batch, seed=seed))
            configs.append(replace(base, f=14, rule="multi_krum", attack="omniscient", batch_size=batch, seed=seed))
    return configs


# --- BrSGD study (Li et al., Section 5) -----------------------------------------------------
BRSGD_RULES = ("brsgd", "median", "average", "krum")
BRSGD_ATTACKS = ("gaussian:variance=40000", "model_negation", "gradient_scale", "label_flip")
BRSGD_N = 20
BRSGD_FS = (2, 5, 10)  # 10%, 25%, 50% of n = 20
# sized so that the grid runs in about 50 minutes at --jobs 1 on 2 shared cores (the
# wall time of one run measured first: docs/reproduction.md, "BrSGD study")
BRSGD_BATCH = 4
BRSGD_STEPS = 400
BRSGD_EVAL_EVERY = 100
BRSGD_SEEDS = (1, 2, 3, 4, 5)


def _brsgd_grid(dataset: str | None, preset: str, seeds) -> list[RunConfig]:
    base = RunConfig(
        dataset=dataset or "fashion-mnist",
        model="lenet",
        preset=preset,
        n=BRSGD_N,
        f=0,
        rule="average",
        attack="none",
        momentum="server",
        mu=0.0,
        batch_size=BRSGD_BATCH,
        lr=0.03,
        l2=0.0,
        clip=None,
        steps=BRSGD_STEPS,
        eval_every=BRSGD_EVAL_EVERY,
    )
    configs = []
    for seed in seeds or BRSGD_SEEDS:
        # the attack-free runs: the mean (the source's reference) and BrSGD (Table 1, alpha = 0)
        configs += [replace(base, rule=rule, seed=seed) for rule in ("average", "brsgd")]
        for f in BRSGD_FS:
            for attack in BRSGD_ATTACKS:
                for rule in BRSGD_RULES:
                    if rule == "krum" and BRSGD_N < 2 * f + 3:
                        continue
                    configs.append(replace(base, f=f, rule=rule, attack=attack, seed=seed))
    return configs


# --- The Adam study (Fabris, Chapter 4) ------------------------------------------------------
ADAM_OPTIMIZERS = ("sgd", "resam", "dra", "mra")
ADAM_RULES = ("average", "trimmed_mean", "meamed", "median", "mda")
# the study's attacks (attacks.py, "Attacks of the Adam study"): on each Byzantine worker's
# own genuine vector (its own shard), little subtracting one std (Algorithm 17), empire
# -0.9 times its vector (Algorithm 18: b - 1.9 b), sign flip -1 times it
# The attack-free runs are "honest": all n workers correct (on all n shards) and the rule
# still assuming f (with "none", the n - f workers alone cannot satisfy trimmed_mean's
# n > 2f at n = 15, f = 5).
ADAM_ATTACKS = (
    "honest",
    "little:base=own,factor=1",
    "empire:base=own,factor=1.9",
    "sign_flip",
    "label_flip",
    "inf",
    "neg_inf",
)
# sized so that one run takes about a minute on 2 shared cores (docs/reproduction.md,
# "Adam study": the wall time of a run measured first)
ADAM_MNIST_STEPS = 120
ADAM_MNIST_EVAL_EVERY = 40
ADAM_CIFAR_STEPS = 1500
ADAM_CIFAR_EVAL_EVERY = 100
ADAM_SEEDS = (1,)
ADAM_LR = 0.001  # dra and mra, every setup
# (n, f, split, pre-aggregation, model, default data set, batch, steps, eval every) per grid,
# and the learning rate of sgd and resam as RunConfig fields
ADAM_SETUPS = {
    "adam-mnist-homogeneous": dict(
        n=15, f=5, split="homogeneous", pre="", model="mnist-cnn-adam", dataset="mnist-embedded", batch_size=25,
        steps=ADAM_MNIST_STEPS, eval_every=ADAM_MNIST_EVAL_EVERY,
        sgd_lr={"lr": 0.75}, resam_lr={"lr": 0.75},
    ),
    "adam-mnist-heterogeneous": dict(
        n=17, f=4, split="dirichlet:alpha=0.1", pre="nnm+", model="mnist-cnn-adam", dataset="mnist-embedded",
        batch_size=25, steps=ADAM_MNIST_STEPS, eval_every=ADAM_MNIST_EVAL_EVERY,
        sgd_lr={"lr": 0.75, "lr_decay": 50.0, "lr_decay_every": 50},
        resam_lr={"lr": 0.75, "lr_decay": 50.0, "lr_decay_every": 50},
    ),
    "adam-cifar10-homogeneous": dict(
        n=15, f=5, split="homogeneous", pre="", model="cifar-cnn", dataset="cifar10", batch_size=50,
        steps=ADAM_CIFAR_STEPS, eval_every=ADAM_CIFAR_EVAL_EVERY,
        sgd_lr={"lr": 0.25}, resam_lr={"lr": 0.25},
    ),
    "adam-cifar10-heterogeneous": dict(
        n=15, f=4, split="dirichlet:alpha=0.1", pre="nnm+", model="cifar-cnn", dataset="cifar10", batch_size=50,
        steps=ADAM_CIFAR_STEPS, eval_every=ADAM_CIFAR_EVAL_EVERY,
        sgd_lr={"lr": 0.75, "lr_decay": 50.0, "lr_decay_every": 50}, resam_lr={"lr": 0.25},
    ),
}  # fmt: skip


def _adam_grid(name: str, dataset: str | None, preset: str, seeds) -> list[RunConfig]:
    setup = ADAM_SETUPS[name]
    base = RunConfig(
        dataset=dataset or setup["dataset"],
        model=setup["model"],
        preset=preset,
        n=setup["n"],
        f=setup["f"],
        momentum="server",
        mu=0.0,
        batch_size=setup["batch_size"],
        l2=1e-4,
        clip=2.0,
        steps=setup["steps"],
        eval_every=setup["eval_every"],
        split=setup["split"],
    )
    adam = {"lr": ADAM_LR}
    learning_rates = {"sgd": setup["sgd_lr"], "resam": setup["resam_lr"], "dra": adam, "mra": adam}
    configs = []
    for seed in seeds or ADAM_SEEDS:
        for optimizer in ADAM_OPTIMIZERS:
            for attack in ADAM_ATTACKS:
                for rule in ADAM_RULES:
                    configs.append(
                        replace(
                            base,
                            optimizer=optimizer,
                            rule=setup["pre"] + rule,
                            attack=attack,
                            seed=seed,
                            **learning_rates[optimizer],
                        )
                    )
    return configs


def make_grid(
    name: str, dataset: str | None = None, preset: str | None = None, seeds=None, steps: int | None = None
) -> list[RunConfig]:
    preset = preset or DEFAULT_PRESETS.get(name, "paper")
    if name.startswith("krum-paper-") and name in GRIDS:
        configs = _krum_paper_grid(name, dataset, preset, seeds)
    elif name in ADAM_GRIDS:
        configs = _adam_grid(name, dataset, preset, seeds)
    elif name == "brsgd-table1":
        configs = _brsgd_grid(dataset, preset, seeds)
    elif name == "paper-mnist":
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

"""One run of distributed SGD under attack, and grids of runs that resume.

A step (DESIGN.md, "Harness shape"):
  n - f honest workers each draw a mini-batch from one shared shuffled stream -> their
  gradients in one vmap'd pass -> + l2 term -> clipped -> (momentum at the workers) ->
  the attack builds f identical Byzantine rows from the submitted honest vectors ->
  G (n, d), honest rows first -> aggregation rule -> (momentum at the server) -> update.
With an optimiser other than sgd (optimizers.py: resam, dra, mra) the workers' local state
turns their clipped gradients into what they send (MRA: two matrices, each aggregated),
and the server steps as the optimiser says; with a split (data.py: homogeneous, dirichlet)
each worker draws its mini-batches from its own shard instead of the shared stream.
Metrics per step: mean honest loss, variance-norm ratios (sampled and submitted), the
curvature term s_t, a few norms and cosines, the time split; top-1 accuracy on the whole
test set every `eval_every` steps, at step 0 and after the last step.

One run = one JSON file, written atomically (temporary file in the same folder, fsync,
os.replace) only when the run has finished: a file that exists is complete, and a grid
that is killed and restarted skips it.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import json
import math
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import attacks, data, metrics, models, optimizers, paper_rules, presets, rules, workers

FORMAT = "byzagg-train-run/1"
# run ids of runs of these models name the mini-batch size (the Krum paper's grids vary it)
KRUM_PAPER_MODELS = ("tabular-mlp", "mnist-convnet")
# run ids of runs of these models name the model (models added since issue 17: a run id
# never written before may name it; the older ids stay as they were)
MODEL_TAGGED = ("mnist-cnn-adam",)
# fields added after run files were committed, with the value that means "as before": a
# run id and a config key leave them out at that value (every committed file keeps its id)
LATER_FIELDS = {"optimizer": "sgd", "split": "shared"}


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run. `n` counts all workers, `f` the Byzantine ones; with
    attack "none" (the baselines) only the n - f honest workers run, without Byzantine rows.
    `rule` is a rule specification (rules.py: e.g. "krum", "centered_clipping:tau=10",
    "nnm+krum"), `attack` an attack specification (attacks.py: e.g. "little",
    "gaussian:variance=100"), both kept in their canonical spelling. With attack "honest"
    all n workers are correct and the rule still assumes f.

    `optimizer` (optimizers.py: sgd, resam, dra, mra, with parameters) says what the workers
    send and how the server steps; "sgd" is the harness's SGD with the `momentum`/`mu`
    fields, the other optimisers keep their own momentum and need mu = 0. `split` (data.py:
    shared, homogeneous, dirichlet:alpha=A) says where each worker's mini-batches come from;
    "shared" is one shared stream of the whole training set."""

    dataset: str = "mnist-embedded"
    model: str = "mnist-mlp"
    preset: str = "canonical"
    n: int = 51
    f: int = 12
    rule: str = "krum"
    attack: str = "little"
    momentum: str = "worker"
    mu: float = 0.9
    batch_size: int = 83
    lr: float = 0.5
    lr_decay: float | None = None  # T of lr0 / (t / T + 1)
    lr_decay_every: int = 1  # delta: the decayed rate is recomputed when t % delta == 0
    l2: float = 1e-4
    clip: float | None = 2.0
    clip_mode: str | None = None  # None: the preset's
    steps: int = 300
    eval_every: int = 5
    seed: int = 1
    optimizer: str = "sgd"
    split: str = "shared"

    @property
    def attack_name(self) -> str:
        return self.attack.partition(":")[0].strip()

    @property
    def honest(self) -> int:
        return self.n if self.attack_name == "honest" else self.n - self.f

    @property
    def byzantine(self) -> int:
        return 0 if self.attack_name in ("none", "honest") else self.f

    def __post_init__(self):
        # one spelling per specification; an invalid one is left as given and reported by check()
        for field, canonical in (
            ("rule", rules.canonical),
            ("attack", attacks.canonical),
            ("optimizer", optimizers.canonical),
            ("split", data.canonical_split),
        ):
            try:
                object.__setattr__(self, field, canonical(getattr(self, field)))
            except ValueError:
                pass

    def _lr_tag(self) -> str:
        return f"lr{self.lr:g}" + (f"d{self.lr_decay:g}e{self.lr_decay_every}" if self.lr_decay else "")

    def run_id(self) -> str:
        """The file name of the run: the fields a grid or a user usually varies, the rule with
        its parameters and the number of steps included (the other fields are checked against
        the config stored in the file: see `find_result`)."""
        rule = self.rule.replace(":", "@")
        attack = self.attack.replace(":", "@")
        batch = f"-b{self.batch_size}" if self.model in KRUM_PAPER_MODELS else ""
        return (
            f"{self.dataset}-{self.preset}-n{self.n}-f{self.f}-{rule}-{attack}-{self.momentum}-{self._lr_tag()}"
            f"{batch}{self._later_tags()}-t{self.steps}-s{self.seed}"
        )

    def _later_tags(self) -> str:
        """The run id's part for the model (MODEL_TAGGED), the optimiser and the split, each
        only when it is not the value that means "as before"."""
        tags = f"-{self.model}" if self.model in MODEL_TAGGED else ""
        if self.optimizer != LATER_FIELDS["optimizer"]:
            tags += "-" + self.optimizer.replace(":", "@")
        if self.split != LATER_FIELDS["split"]:
            tags += "-split-" + self.split.replace(":", "@")
        return tags

    def legacy_run_id(self) -> str:
        """The run id of run files written before the rule parameters and the steps were part
        of it (the committed results/): read, never written."""
        return (
            f"{self.dataset}-{self.preset}-n{self.n}-f{self.f}-{self.rule}-{self.attack}-{self.momentum}-"
            f"{self._lr_tag()}-s{self.seed}"
        )

    def setup_id(self) -> str:
        """The run id without the seed: runs that differ only by seed form one setup."""
        return self.run_id().rsplit("-s", 1)[0]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """The config a run file stores; fields it lacks take their defaults. Raises
        ValueError for fields this version does not know."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown config fields {', '.join(unknown)}")
        return cls(**values)

    def key(self) -> str:
        values = {k: v for k, v in self.to_dict().items() if LATER_FIELDS.get(k, object()) != v}
        return hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:16]

    def learning_rate(self, step: int) -> float:
        if not self.lr_decay:
            return self.lr
        anchor = step - step % self.lr_decay_every
        return self.lr / (anchor / self.lr_decay + 1.0)

    def check(self) -> None:
        presets.get_preset(self.preset)
        rules.parse(self.rule)
        attacks.parse(self.attack)
        if self.momentum not in ("server", "worker"):
            raise ValueError(f"momentum must be server or worker, got {self.momentum!r}")
        optimizer = optimizers.name_of(self.optimizer)
        data.parse_split(self.split)
        if optimizer != "sgd" and self.mu != 0:
            raise ValueError(
                f"optimizer {self.optimizer} keeps its own momentum: set mu to 0 (got mu={self.mu}); "
                "mu and momentum are the sgd optimizer's"
            )
        if optimizer != "sgd" and self.attack_name == "omniscient":
            raise ValueError(
                f"attack omniscient sends a multiple of a gradient estimate: defined under optimizer sgd only, "
                f"not {optimizer}"
            )
        if self.attack_name == "little" and attacks.params(self.attack)["base"] == "own" and self.byzantine == 1:
            raise ValueError(f"attack {self.attack} takes the std of the Byzantine workers' own vectors: needs f >= 2")
        if not 0 <= self.f < self.n:
            raise ValueError(f"need 0 <= f < n, got n={self.n}, f={self.f}")
        if self.model not in models.MODELS:
            raise ValueError(f"unknown model {self.model!r}")
        if (self.model in models.TABULAR_MODELS) != (self.dataset in data.TABULAR):
            raise ValueError(
                f"model {self.model} does not fit data set {self.dataset}: the tabular sets "
                f"({', '.join(data.TABULAR)}) take {', '.join(models.TABULAR_MODELS)}, the image sets the others"
            )
        if self.steps < 1 or self.eval_every < 1:
            raise ValueError(f"need steps >= 1 and eval_every >= 1, got {self.steps}, {self.eval_every}")
        # the rule on as many rows as the run sends it, with this f: its own error, now
        rules.check(self.rule, self.preset, self.honest + self.byzantine, self.f)


@dataclass
class Timer:
    totals: dict = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    """The CPU's model name as the kernel reports it (bits of a run depend on the SIMD path,
    so a run file says which CPU made it)."""
    try:
        with open("/proc/cpuinfo") as stream:
            for line in stream:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict:
    try:
        import byzagg

        backend = str(byzagg.backend())
        cpu_isa = byzagg._ops.cpu_isa()
    except Exception as error:  # noqa: BLE001 - a broken byzagg install must not stop a run
        backend = f"unavailable ({error})"
        cpu_isa = "unavailable"
    return {
        "torch": torch.__version__,
        "torch_git": getattr(torch.version, "git_version", None),
        "torch_cuda": torch.version.cuda,
        "cpu_model": cpu_model(),
        "cpu_isa": cpu_isa,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "threads": torch.get_num_threads(),
        "byzagg_backend": backend,
        "paper_rules_distances": paper_rules.distance_method(device.type),
    }


def build_model(config: RunConfig, preset: presets.Preset, dataset: data.Dataset | None = None) -> torch.nn.Module:
    if config.model == "mnist-mlp":
        return models.mnist_mlp(relu_last=preset.relu_last)
    if config.model == "tabular-mlp":
        if dataset is None:
            raise ValueError("tabular-mlp: the data set is needed for the number of features")
        return models.tabular_mlp(int(dataset.train_images.shape[1]), dataset.num_classes)
    return models.build_model(config.model)


def run(
    config: RunConfig,
    data_dir: str | None = None,
    device: str = "cpu",
    dataset: data.Dataset | None = None,
    progress: bool = False,
) -> dict:
    """Train one run; returns its result dictionary (see `save_result`)."""
    config.check()
    preset = presets.get_preset(config.preset)
    device = torch.device(device)
    rule = rules.build(config.rule, config.preset, config.seed)
    clip_mode = config.clip_mode or preset.clip_mode
    start = time.perf_counter()

    if dataset is None:
        dataset = data.load_dataset(config.dataset, data_dir)
    torch.manual_seed(config.seed)
    model = build_model(config, preset, dataset)
    flat = workers.FlatModel(model, device, train_mode=preset.train_mode)
    attack, attack_params = attacks.name_of(config.attack), attacks.params(config.attack)
    attack_generator = torch.Generator().manual_seed(20_000 + config.seed)
    pipeline = data.Pipeline(dataset, device, flatten=False, flip_test=preset.flip_test, seed=config.seed)
    # the data split (data.py, "The run loop's data"): None, or each worker's own shard
    shards = data.run_split(config.split, dataset.train_labels, config.n, config.seed, dataset.num_classes)
    shard_batches = data.ShardBatches(pipeline, shards, 60_000 + config.seed) if shards is not None else None
    # BrSGD study: Byzantine workers that compute gradients on their own mini-batches draw
    # them from their own seeded stream (the honest workers' batches stay those of the
    # attack-free run); under worker momentum they keep their own momentum buffers. With a
    # split they draw from their own shards instead.
    own_attack = attacks.uses_own(config.attack)
    own_batches = attacks.OwnBatches(pipeline, 30_000 + config.seed) if own_attack and shards is None else None
    byzantine_momentum = None
    optimizer = optimizers.name_of(config.optimizer)
    eval_generator = torch.Generator().manual_seed(10_000 + config.seed)
    # worker momentum is kept in G's honest rows (below); Momentum handles the server side
    momentum = workers.Momentum(config.momentum, config.mu)
    curvature = metrics.Curvature(config.mu)
    timer = Timer()
    setup_s = time.perf_counter() - start

    evaluation = {"step": [], "accuracy": []}
    study = {
        k: []
        for k in (
            "step",
            "lr",
            "loss",
            "vn_ratio_sampled",
            "vn_ratio_submitted",
            "curvature",
            "honest_norm",
            "aggregate_norm",
            "cos_aggregate_honest",
            "aggregation_s",  # the rule's wall time this step (the BrSGD study's cost claim)
        )
    }

    def evaluate(step: int) -> None:
        t0 = time.perf_counter()
        evaluation["step"].append(step)
        evaluation["accuracy"].append(flat.accuracy(pipeline.test_batches(generator=eval_generator)))
        timer.add("evaluation", time.perf_counter() - t0)

    steps = range(config.steps)
    if progress:
        from tqdm import tqdm

        steps = tqdm(steps, desc=config.run_id(), unit="step", leave=False)
    honest, byzantine, d = config.honest, config.byzantine, flat.dim
    # G (n, d): honest rows first, then the Byzantine rows. Under worker momentum its first
    # rows are the workers' momentum buffers (zero at start), updated in place.
    G = torch.zeros(honest + byzantine, d, device=device)
    submitted = G[:honest]
    scratch = torch.empty(honest, d, device=device) if config.momentum == "worker" or optimizer != "sgd" else None
    # optimisers other than sgd (optimizers.py): the workers' local states; MRA sends a
    # second matrix, Gv (v_hat), aggregated by a second instance of the rule
    local = byzantine_local = None
    matrices = (G,)
    rule_v = None
    if optimizer != "sgd":
        local = optimizers.LocalState(config.optimizer, honest, d, device=device)
        if byzantine and own_attack:
            byzantine_local = optimizers.LocalState(config.optimizer, byzantine, d, device=device)
        if optimizers.SENT[optimizer] == 2:
            matrices = (G, torch.zeros(honest + byzantine, d, device=device))
            rule_v = rules.build(config.rule, config.preset, config.seed)
    train_start = time.perf_counter()
    for step in steps:
        if step % config.eval_every == 0:
            evaluate(step)
        t0 = time.perf_counter()
        if shard_batches is None:
            x, y = pipeline.worker_batches(honest, config.batch_size)
        else:
            x, y = shard_batches.draw(range(honest), config.batch_size)
        _sync(device)
        t1 = time.perf_counter()
        gradients, losses = flat.gradients(x, y, out=submitted if scratch is None else scratch)
        regulariser = workers.regularisation_gradient(flat.theta, config.l2, preset.l2_mode)
        if regulariser is not None:
            gradients.add_(regulariser)
        workers.clip_rows_(gradients, config.clip, clip_mode)
        _sync(device)
        t2 = time.perf_counter()
        sampled_var, sampled_mean = metrics.column_moments(gradients)
        if local is not None:
            for M, sent in zip(matrices, local.send(gradients)):
                M[:honest] = sent
            submitted_var, submitted_mean = metrics.column_moments(submitted)
        elif scratch is not None:
            submitted.mul_(config.mu).add_(gradients)
            submitted_var, submitted_mean = metrics.column_moments(submitted)
        else:
            submitted_var, submitted_mean = sampled_var, sampled_mean
        if byzantine and attack == "gaussian":
            for M in matrices:
                M[honest:] = attacks.gaussian(byzantine, d, attack_generator, attack_params["variance"], device)
        elif byzantine and attack == "omniscient":
            estimate = attacks.true_gradient_estimate(flat, pipeline, attack_params["batch"], attack_generator)
            if regulariser is not None:
                estimate.add_(regulariser)
            G[honest:] = attacks.omniscient(estimate, byzantine, attack_params["factor"])
        elif byzantine and attack == "model_negation":
            for M in matrices:
                M[honest:] = attacks.model_negation(M[:honest], byzantine, attack_params["factor"])
        elif byzantine and own_attack:
            if shard_batches is None:
                xb, yb = own_batches.draw(byzantine, config.batch_size)
            else:
                xb, yb = shard_batches.draw(range(honest, honest + byzantine), config.batch_size)
            if attack == "label_flip":
                yb = attacks.label_flip(yb, dataset.num_classes)
            own, _ = flat.gradients(xb, yb)
            if regulariser is not None:
                own.add_(regulariser)
            workers.clip_rows_(own, config.clip, clip_mode)
            if byzantine_local is not None:
                owns = byzantine_local.send(own)
            else:
                if config.momentum == "worker":
                    byzantine_momentum = (
                        own if byzantine_momentum is None else byzantine_momentum.mul_(config.mu).add_(own)
                    )
                    own = byzantine_momentum
                owns = (own,)
            for M, own in zip(matrices, owns):
                if attack == "gradient_scale":
                    M[honest:] = attacks.gradient_scale(own, attack_params["factor"])
                elif attack in attacks.BASED:
                    M[honest:] = attacks.from_own(attack, own, attack_params.get("factor", 1.0))
                else:
                    M[honest:] = own
        elif byzantine and attack in attacks.INFINITE:
            for M in matrices:
                M[honest:] = attacks.infinite(byzantine, d, attacks.INFINITE[attack], device, M.dtype)
        elif byzantine:
            for k, M in enumerate(matrices):
                var, mean = (submitted_var, submitted_mean) if k == 0 else metrics.column_moments(M[:honest])
                M[honest:] = attacks.from_honest(attack, mean, var, byzantine, attack_params.get("factor", 1.0))
        _sync(device)
        t3 = time.perf_counter()
        aggregate = rule(G, config.f)
        if rule_v is not None:
            aggregate_v = rule_v(matrices[1], config.f)
        _sync(device)
        t4 = time.perf_counter()
        lr = config.learning_rate(step)
        if optimizer == "sgd":
            flat.theta.sub_(momentum.direction(aggregate), alpha=lr)
        else:
            aggregates = (aggregate,) if rule_v is None else (aggregate, aggregate_v)
            flat.theta.sub_(optimizers.server_direction(config.optimizer, aggregates), alpha=lr)
        flat.track_statistics(x[0])
        _sync(device)
        t5 = time.perf_counter()
        study["step"].append(step)
        study["lr"].append(lr)
        study["loss"].append(float(losses.mean()))
        study["vn_ratio_sampled"].append(metrics.ratio_from_moments(sampled_var, sampled_mean))
        study["vn_ratio_submitted"].append(metrics.ratio_from_moments(submitted_var, submitted_mean))
        study["curvature"].append(curvature.update(sampled_mean))
        study["honest_norm"].append(float(sampled_mean.norm()))
        study["aggregate_norm"].append(float(aggregate.norm()))
        study["cos_aggregate_honest"].append(metrics.cosine(aggregate, submitted_mean))
        study["aggregation_s"].append(t4 - t3)
        _sync(device)
        t6 = time.perf_counter()
        for name, seconds in (
            ("data", t1 - t0),
            ("gradients", t2 - t1),
            ("momentum_attack", t3 - t2),
            ("aggregation", t4 - t3),
            ("update", t5 - t4),
            ("metrics", t6 - t5),
        ):
            timer.add(name, seconds)
    evaluate(config.steps)
    train_s = time.perf_counter() - train_start
    training_only = train_s - timer.totals.get("evaluation", 0.0)
    return {
        **result_header(config),
        "rule_spec": rules.describe(config.rule, config.preset),
        "data": {"source": dataset.source, "train": len(dataset.train_labels), "test": len(dataset.test_labels)},
        "dimension": flat.dim,
        "parameters": models.parameter_count(model),
        "model": {"name": config.model, "description": str(model)},
        "attack_spec": {"name": attack, "params": attack_params},
        **(
            {"optimizer_spec": {"name": optimizer, "params": optimizers.params(config.optimizer)}}
            if optimizer != "sgd"
            else {}
        ),
        **({"split_sizes": [len(s) for s in shards]} if shards is not None else {}),
        **({"krum_1p_choices": rule.choices} if isinstance(rule, rules.OneMinusPKrum) else {}),
        "clip_mode": clip_mode,
        "eval": evaluation,
        "study": study,
        "timing": {
            "wall_s": time.perf_counter() - start,
            "setup_s": setup_s,
            "train_s": train_s,
            "steps_per_s": config.steps / training_only if training_only > 0 else math.nan,
            "split_s": timer.totals,
        },
        "environment": environment(device),
    }


# ----------------------------------------------------------------------------------------
# Files


def result_header(config: RunConfig) -> dict:
    """The fields that open every run file (this process's runs and the torchrun path's):
    what a reader needs to recognise the run and its configuration."""
    return {
        "format": FORMAT,
        "complete": True,
        "run_id": config.run_id(),
        "setup_id": config.setup_id(),
        "key": config.key(),
        "config": config.to_dict(),
    }


def write_atomic(path: Path, write, binary: bool = False, sync_directory: bool = False) -> None:
    """Write through `write(stream)` so that `path` holds either what it held before or the
    whole new content, whenever the process dies: a temporary file beside it, fsync, then
    os.replace (and, with sync_directory, an fsync of the folder: the rename made durable)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb" if binary else "w") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except FileNotFoundError:
            pass
        raise
    if sync_directory:
        try:
            directory = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError:
            pass


def write_json_atomic(path: Path, payload: dict) -> None:
    """Write JSON so that `path` either does not exist or holds the whole document."""
    write_atomic(path, lambda stream: json.dump(payload, stream, indent=1))


def result_path(out_dir: Path, config: RunConfig) -> Path:
    return Path(out_dir) / "run-json" / f"{config.run_id()}.json"


def legacy_result_path(out_dir: Path, config: RunConfig) -> Path:
    return Path(out_dir) / "run-json" / f"{config.legacy_run_id()}.json"


def load_result(path: Path) -> dict | None:
    """The result in `path` if it is a complete run file (``.json``, or ``.json.gz`` as
    `compress_runs` writes them), else None."""
    try:
        if str(path).endswith(".gz"):
            with gzip.open(path, "rt") as stream:
                result = json.load(stream)
        else:
            with open(path) as stream:
                result = json.load(stream)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(result, dict) or result.get("format") != FORMAT or not result.get("complete"):
        return None
    return result


def stored_config(result: dict) -> RunConfig | None:
    """The config of a run file (missing fields at their defaults), or None if unreadable."""
    try:
        return RunConfig.from_dict(result["config"])
    except (KeyError, TypeError, ValueError):
        return None


def find_result(out_dir: Path, config: RunConfig) -> Path | None:
    """The complete run file of exactly this config in out_dir, or None. Looks at the run's
    file and at its legacy name (files written before the run id named the steps); a file
    counts only if the config it stores equals this one, field by field."""
    for plain in (result_path(out_dir, config), legacy_result_path(out_dir, config)):
        for path in (plain, gz_path(plain)):
            result = load_result(path)
            if result is not None and stored_config(result) == config:
                return path
    return None


def gz_path(path: Path) -> Path:
    """Where `compress_runs` puts the run file `path` (``<run id>.json.gz``)."""
    return Path(str(path) + ".gz")


def compress_runs(folder: str | Path) -> list[Path]:
    """Replace every complete run file ``run-json/*.json`` under `folder` by its gzip copy
    ``*.json.gz`` (written atomically, then the plain file removed): committed grids stay
    small; every reader of run files (find_result, so grids resume and skip them; the
    report) reads both. Returns the files written."""
    written = []
    for path in sorted(Path(folder).rglob("run-json/*.json")):
        result = load_result(path)
        if result is None:
            continue
        target = gz_path(path)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as stream:
                stream.write(json.dumps(result, indent=1).encode())
            os.replace(temporary, target)
        except BaseException:
            if os.path.exists(temporary):
                os.unlink(temporary)
            raise
        check = load_result(target)
        if check is None or check.get("run_id") != result.get("run_id") or check.get("config") != result.get("config"):
            raise OSError(f"{target}: the compressed copy does not read back as {path}")
        path.unlink()
        written.append(target)
    return written


def is_done(out_dir: Path, config: RunConfig) -> bool:
    return find_result(out_dir, config) is not None


class RunExistsError(ValueError):
    """A run file holds another config than the run that would replace it."""


def conflict(out_dir: Path, config: RunConfig) -> str | None:
    """Why writing this run's file would replace a different run (None if it would not):
    the file exists and holds another config, or is no complete run file."""
    path = result_path(out_dir, config)
    if not path.exists() and gz_path(path).exists():
        path = gz_path(path)
    if not path.exists():
        return None
    result = load_result(path)
    if result is None:
        return f"{path} exists and is not a complete run file"
    stored = stored_config(result)
    if stored == config:
        return None
    if stored is None:
        return f"{path} holds a config this version cannot read"
    old, new = stored.to_dict(), config.to_dict()
    differences = ", ".join(f"{k}={old[k]!r} (this run: {new[k]!r})" for k in old if old[k] != new[k])
    return f"{path} holds another run: {differences}"


def check_conflicts(out_dir: Path, configs: list[RunConfig]) -> None:
    """Raise RunExistsError listing the runs whose file holds another config."""
    problems = [p for p in (conflict(out_dir, c) for c in configs) if p]
    if problems:
        shown = "\n  ".join(problems[:5]) + (f"\n  ... and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise RunExistsError(
            f"{len(problems)} run file(s) would be replaced by a different run:\n  {shown}\n"
            "choose another --out, or pass --overwrite to replace them"
        )


def run_and_save(
    config: RunConfig,
    out_dir: str,
    data_dir: str | None = None,
    device: str = "cpu",
    threads: int | None = None,
    progress: bool = False,
) -> dict:
    if threads:
        torch.set_num_threads(threads)
    result = run(config, data_dir=data_dir, device=device, progress=progress)
    write_json_atomic(result_path(Path(out_dir), config), result)
    return {
        "run_id": result["run_id"],
        "wall_s": result["timing"]["wall_s"],
        "final_accuracy": result["eval"]["accuracy"][-1],
    }


def run_grid(
    configs: list[RunConfig],
    out_dir: str,
    data_dir: str | None = None,
    device: str = "cpu",
    jobs: int = 1,
    progress: bool = True,
    grid_name: str = "custom",
    threads: int | None = 1,
    overwrite: bool = False,
) -> dict:
    """Run every config whose complete result file is not yet in out_dir/run-json.

    A file there that holds another config raises RunExistsError before anything runs,
    unless `overwrite`. jobs > 1 runs that many processes, jobs <= 1 runs in this one;
    each process running runs is set to `threads` torch threads (default 1; None: torch's
    own choice). Returns a summary (counts, wall time). The grid's manifest (all
    configs) goes to out_dir/grid.json.
    """
    out = Path(out_dir)
    start = time.perf_counter()
    for config in configs:
        config.check()
    todo = [c for c in configs if not is_done(out, c)]
    if not overwrite:
        check_conflicts(out, todo)
    write_json_atomic(
        out / "grid.json",
        {
            "grid": grid_name,
            "data_dir": data_dir,
            "device": device,
            "jobs": jobs,
            "runs": [c.to_dict() for c in configs],
        },
    )
    skipped = len(configs) - len(todo)
    done = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(configs), initial=skipped, desc=grid_name, unit="run")
    try:
        if jobs <= 1 or len(todo) <= 1:
            for config in todo:
                done.append(run_and_save(config, out_dir, data_dir, device, threads))
                if bar:
                    bar.update(1)
                    bar.set_postfix_str(f"{done[-1]['run_id']}: acc {done[-1]['final_accuracy']:.3f}")
        else:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor, as_completed

            with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
                futures = [pool.submit(run_and_save, c, out_dir, data_dir, device, threads) for c in todo]
                for future in as_completed(futures):
                    done.append(future.result())
                    if bar:
                        bar.update(1)
                        bar.set_postfix_str(f"{done[-1]['run_id']}: acc {done[-1]['final_accuracy']:.3f}")
    finally:
        if bar:
            bar.close()
    return {
        "grid": grid_name,
        "total": len(configs),
        "skipped": skipped,
        "ran": len(done),
        "wall_s": time.perf_counter() - start,
    }

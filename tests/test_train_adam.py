"""The Adam study's harness (issue 17): optimisers, attacks, the data split in the run loop,
the grids, and the committed run files still found."""

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import byzagg
from byzagg.train import attacks, cli, data, experiment, grids, optimizers, rules, workers
from byzagg.train.experiment import RunConfig

REPO = Path(__file__).resolve().parents[1]

# a tiny run: a linear model on the synthetic MNIST-shaped set
TINY = RunConfig(
    dataset="mnist-synthetic",
    model="mnist-mlp",
    preset="canonical",
    n=5,
    f=1,
    rule="median",
    attack="none",
    momentum="server",
    mu=0.0,
    batch_size=6,
    lr=0.1,
    l2=1e-4,
    clip=2.0,
    steps=2,
    eval_every=100,
)


def tiny_model() -> nn.Module:
    generator = torch.Generator().manual_seed(7)
    linear = nn.Linear(784, 10)
    with torch.no_grad():
        linear.weight.copy_(0.05 * torch.randn(10, 784, generator=generator))
        linear.bias.copy_(0.05 * torch.randn(10, generator=generator))
    return nn.Sequential(nn.Flatten(), linear, nn.LogSoftmax(dim=-1))


class Recording(workers.FlatModel):
    """FlatModel that remembers its instances (the run's final theta)."""

    made: list = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        Recording.made.append(self)


@pytest.fixture
def tiny(monkeypatch):
    monkeypatch.setattr(experiment, "build_model", lambda config, preset, dataset=None: tiny_model())
    monkeypatch.setattr(experiment.workers, "FlatModel", Recording)
    Recording.made = []
    return Recording


def final_theta(config: RunConfig, recording) -> torch.Tensor:
    experiment.run(config)
    return recording.made[-1].theta.clone()


def hand_gradients(theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor, l2: float, clip: float) -> torch.Tensor:
    """Each worker's gradient, one at a time through autograd: mean NLL of its batch, + l2 theta
    (the canonical squared term), clipped to norm clip."""
    rows = []
    for xi, yi in zip(x, y):
        w = theta[: 7840].view(10, 784).clone().requires_grad_(True)
        b = theta[7840:].clone().requires_grad_(True)
        loss = F.nll_loss(F.log_softmax(xi.reshape(len(xi), -1) @ w.T + b, dim=-1), yi)
        gw, gb = torch.autograd.grad(loss, (w, b))
        g = torch.cat([gw.reshape(-1), gb]) + l2 * theta
        norm = g.norm()
        rows.append(g * (clip / norm) if norm > clip else g)
    return torch.stack(rows)


def hand_run(config: RunConfig) -> torch.Tensor:
    """config.steps steps of the optimiser written out by hand, on the run's own batches."""
    dataset = data.load_dataset(config.dataset)
    pipeline = data.Pipeline(dataset, seed=config.seed)
    shards = data.run_split(config.split, dataset.train_labels, config.n, config.seed, 10)
    shard_batches = data.ShardBatches(pipeline, shards, 60_000 + config.seed) if shards else None
    theta = torch.cat([p.detach().reshape(-1) for p in tiny_model().parameters()])
    h = config.honest
    name, p = optimizers.name_of(config.optimizer), optimizers.params(config.optimizer)
    m = torch.zeros(h, theta.numel())
    v = torch.zeros(h, theta.numel())
    rule = lambda G: byzagg.aggregate(config.rule, G, f=config.f)  # noqa: E731
    for t in range(1, config.steps + 1):
        if shard_batches is None:
            x, y = pipeline.worker_batches(h, config.batch_size)
        else:
            x, y = shard_batches.draw(range(h), config.batch_size)
        g = hand_gradients(theta, x, y, config.l2, config.clip)
        if name == "sgd":  # worker momentum m = mu m + g
            m = config.mu * m + g
            direction = rule(m)
        elif name == "resam":
            m = p["beta"] * m + (1 - p["beta"]) * g
            direction = rule(m)
        else:
            m = p["beta1"] * m + (1 - p["beta1"]) * g
            v = p["beta2"] * v + (1 - p["beta2"]) * g * g
            m_hat, v_hat = m / (1 - p["beta1"] ** t), v / (1 - p["beta2"] ** t)
            if name == "dra":
                direction = rule(m_hat / (v_hat.sqrt() + p["eps"]))
            else:
                direction = rule(m_hat) / (rule(v_hat) + p["eps"]).sqrt()
        theta = theta - config.learning_rate(t - 1) * direction
    return theta


# --- optimisers ----------------------------------------------------------------------------


def test_optimizer_specifications():
    assert optimizers.canonical("sgd") == "sgd"
    assert optimizers.canonical(" resam : beta=0.99 ") == "resam"  # the default is left out
    assert optimizers.canonical("dra:eps=1e-8,beta1=0.9") == "dra:beta1=0.9,eps=1e-08"
    assert optimizers.params("mra") == {"beta1": 0.99, "beta2": 0.999, "eps": 1e-10}
    assert optimizers.params("resam") == {"beta": 0.99}
    for bad, message in [
        ("adam", "unknown optimizer"),
        ("resam:beta1=0.9", "unknown parameter"),
        ("resam:beta=1", r"\[0, 1\)"),
        ("dra:eps=-1", "eps must be"),
        ("dra:eps=x", "must be a number"),
        ("mra:", "nothing after"),
        ("sgd:mu=0.9", "unknown parameter"),
    ]:
        with pytest.raises(ValueError, match=message):
            optimizers.parse(bad)
    with pytest.raises(ValueError, match="unknown optimizer"):
        replace(TINY, optimizer="adamw").check()
    with pytest.raises(ValueError, match="set mu to 0"):
        replace(TINY, optimizer="resam", mu=0.9).check()
    with pytest.raises(ValueError, match="sgd only"):
        replace(TINY, optimizer="dra", attack="omniscient").check()


def test_local_states_follow_the_formulas():
    g1, g2 = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)).unbind(0)[:2]
    G1, G2 = torch.stack([g1, -g1]), torch.stack([g2, 2 * g2])
    resam = optimizers.LocalState("resam:beta=0.5", 2, 50)
    resam.send(G1)
    (m,) = resam.send(G2)
    torch.testing.assert_close(m, 0.5 * (0.5 * G1) + 0.5 * G2)
    for name in ("dra", "mra"):
        state = optimizers.LocalState(name, 2, 50)
        state.send(G1)
        sent = state.send(G2)
        m = 0.99 * 0.01 * G1 + 0.01 * G2
        v = 0.999 * 0.001 * G1**2 + 0.001 * G2**2
        m_hat, v_hat = m / (1 - 0.99**2), v / (1 - 0.999**2)
        if name == "dra":
            torch.testing.assert_close(sent[0], m_hat / (v_hat.sqrt() + 1e-10))
        else:
            torch.testing.assert_close(sent[0], m_hat)
            torch.testing.assert_close(sent[1], v_hat)
            assert bool((sent[1] >= 0).all())  # honest second moments are never negative
    # MRA's eps is under the square root; a negative v* gives NaN there
    direction = optimizers.server_direction("mra:eps=0.25", (torch.tensor([1.0, 1.0]), torch.tensor([0.0, -1.0])))
    assert direction[0] == pytest.approx(2.0) and math.isnan(direction[1])
    with pytest.raises(ValueError, match="no local state"):
        optimizers.LocalState("sgd", 2, 3)


@pytest.mark.parametrize(
    "optimizer, mu, lr, split",
    [
        ("sgd", 0.9, 0.1, "shared"),
        ("resam", 0.0, 0.5, "shared"),
        ("resam:beta=0.9", 0.0, 0.5, "homogeneous"),
        ("dra:eps=0.001", 0.0, 0.01, "shared"),
        ("mra:eps=0.001", 0.0, 0.01, "dirichlet:alpha=1"),
    ],
)
def test_each_optimizer_by_hand_equals_the_harness(tiny, optimizer, mu, lr, split):
    config = replace(TINY, optimizer=optimizer, mu=mu, lr=lr, split=split, momentum="worker")
    config.check()
    harness = final_theta(config, tiny)
    torch.testing.assert_close(harness, hand_run(config), rtol=1e-5, atol=1e-6)
    start = torch.cat([p.detach().reshape(-1) for p in tiny_model().parameters()])
    assert float((harness - start).norm()) > 1e-4  # the steps moved the model


def test_sgd_default_is_todays_run():
    config = replace(TINY, attack="little", rule="krum", n=7, f=1)
    assert config == replace(config, optimizer="sgd", split="shared")
    assert "sgd" not in config.run_id() and "split" not in config.run_id()
    assert config.key() == replace(config, optimizer="sgd").key()
    # fields at their defaults stay out of the key (the committed files' keys are unchanged)
    assert "dra" in replace(config, optimizer="dra", mu=0.0).run_id()
    assert config.key() != replace(config, optimizer="dra").key()


# --- attacks -------------------------------------------------------------------------------


def test_attack_specifications_of_the_study():
    assert attacks.canonical("little:factor=1.5,base=honest") == "little"  # defaults left out
    assert attacks.canonical("empire:factor=1.1") == "empire"
    assert attacks.canonical("empire:factor=1.9,base=own") == "empire:base=own,factor=1.9"
    assert attacks.canonical("sign_flip:base=own") == "sign_flip"
    assert attacks.params("sign_flip") == {"base": "own"}
    assert attacks.params("little") == {"factor": 1.5, "base": "honest"}
    assert attacks.params("inf") == {} and attacks.params("neg_inf") == {}
    assert attacks.uses_own("sign_flip") and attacks.uses_own("little:base=own")
    assert not attacks.uses_own("little") and not attacks.uses_own("sign_flip:base=honest")
    assert not attacks.uses_own("inf")
    for bad, message in [
        ("little:base=mine", "must be one of honest, own"),
        ("sign_flip:factor=2", "unknown parameter"),
        ("inf:factor=1", "unknown parameter"),
        ("empire:factor=-1", ">= 0"),
    ]:
        with pytest.raises(ValueError, match=message):
            attacks.parse(bad)
    with pytest.raises(ValueError, match="needs f >= 2"):
        replace(TINY, attack="little:base=own", n=5, f=1).check()


def test_attacks_on_own_vectors_see_only_them():
    own = torch.randn(4, 30, generator=torch.Generator().manual_seed(1))
    std = own.std(0, unbiased=True)
    torch.testing.assert_close(attacks.from_own("little", own, 1.0), own - std)
    torch.testing.assert_close(attacks.from_own("empire", own, 1.9), -0.9 * own)
    torch.testing.assert_close(attacks.from_own("sign_flip", own), -own)
    for name in ("little", "empire", "sign_flip"):
        rows = attacks.from_own(name, own, 1.0)
        assert rows.shape == own.shape
        assert torch.equal(rows, attacks.from_own(name, own.clone(), 1.0))  # a function of own alone
    with pytest.raises(ValueError, match="at least 2"):
        attacks.from_own("little", own[:1])
    # the omniscient forms: f identical rows from the honest moments
    H = torch.randn(6, 30, generator=torch.Generator().manual_seed(2))
    var, mean = H.var(0, unbiased=True), H.mean(0)
    rows = attacks.from_honest("sign_flip", mean, var, 3)
    assert rows.shape == (3, 30) and torch.equal(rows[2], -mean)
    torch.testing.assert_close(attacks.from_honest("little", mean, var, 2, 1.5)[0], mean - 1.5 * var.sqrt())
    torch.testing.assert_close(attacks.from_honest("empire", mean, var, 2, 1.1)[1], mean - 1.1 * mean)
    inf = attacks.infinite(3, 5, -1.0)
    assert inf.shape == (3, 5) and bool((inf == -math.inf).all())


def record_matrices(monkeypatch):
    """rules.build -> a rule that keeps a copy of every matrix it gets (one list per built rule;
    config.check() builds one too, for its small trial matrix)."""
    built = []
    original = rules.build

    def build(spec, preset="canonical", seed=0):
        rule, seen = original(spec, preset, seed), []
        built.append(seen)

        def recorded(G, f):
            seen.append(G.clone())
            return rule(G, f)

        return recorded

    monkeypatch.setattr(experiment.rules, "build", build)
    return built


@pytest.mark.parametrize("optimizer", ["sgd", "mra"])
def test_sign_flip_sends_the_negated_own_vectors_of_the_byzantine_shards(tiny, monkeypatch, optimizer):
    config = replace(TINY, n=6, f=2, attack="sign_flip", optimizer=optimizer, split="homogeneous", steps=1)
    built = record_matrices(monkeypatch)
    experiment.run(config)
    matrices = [seen[0] for seen in built if seen and seen[0].shape[1] == 7850]  # G, and Gv under MRA
    assert len(matrices) == (2 if optimizer == "mra" else 1)
    # by hand: the Byzantine workers' (4, 5) gradients on their own shards, their state, negated
    dataset = data.load_dataset(config.dataset)
    pipeline = data.Pipeline(dataset, seed=config.seed)
    shards = data.run_split(config.split, dataset.train_labels, config.n, config.seed, 10)
    batches = data.ShardBatches(pipeline, shards, 60_000 + config.seed)
    theta = torch.cat([p.detach().reshape(-1) for p in tiny_model().parameters()])
    xb, yb = batches.draw(range(4, 6), config.batch_size)
    own = hand_gradients(theta, xb, yb, config.l2, config.clip)
    expected = (own,) if optimizer == "sgd" else (0.01 * own / 0.01, 0.001 * own**2 / 0.001)
    for G, sent in zip(matrices, expected):
        torch.testing.assert_close(G[4:], -sent, rtol=1e-5, atol=1e-7)
        assert not torch.equal(G[4], G[5])  # each Byzantine worker its own vector
    if optimizer == "mra":
        assert bool((matrices[1][4:] <= 0).all()) and bool((matrices[1][:4] >= 0).all())


@pytest.mark.parametrize("attack, value", [("inf", math.inf), ("neg_inf", -math.inf)])
def test_infinite_attacks_reach_every_matrix_and_the_rule_filters_them(tiny, monkeypatch, attack, value):
    config = replace(TINY, n=7, f=2, attack=attack, optimizer="mra", rule="trimmed_mean", steps=2)
    built = record_matrices(monkeypatch)
    result = experiment.run(config)
    matrices = [G for seen in built for G in seen if G.shape[1] == 7850]  # not config.check()'s matrix
    assert len(matrices) == 4  # two steps, two moments
    for G in matrices:
        assert G.shape == (7, 7850) and bool((G[5:] == value).all()) and bool(torch.isfinite(G[:5]).all())
    assert all(math.isfinite(a) for a in result["study"]["aggregate_norm"])


def test_infinite_attack_makes_the_average_infinite(tiny):
    result = experiment.run(replace(TINY, n=4, f=1, attack="inf", rule="average", steps=1))
    assert result["study"]["aggregate_norm"] == [math.inf]


def test_attacks_are_deterministic_under_a_seed(tiny):
    config = replace(TINY, n=7, f=3, attack="little:base=own,factor=1", optimizer="dra", split="dirichlet", steps=3)
    a, b = experiment.run(config), experiment.run(config)
    assert a["study"]["aggregate_norm"] == b["study"]["aggregate_norm"]
    c = experiment.run(replace(config, seed=2))
    assert c["study"]["aggregate_norm"] != a["study"]["aggregate_norm"]


# --- the split in the run loop -------------------------------------------------------------


def test_split_specifications():
    assert data.canonical_split("dirichlet") == "dirichlet:alpha=0.1"
    assert data.canonical_split("dirichlet:alpha=0.10") == "dirichlet:alpha=0.1"
    assert data.canonical_split(" homogeneous ") == "homogeneous"
    assert RunConfig(split="dirichlet").split == "dirichlet:alpha=0.1"
    for bad, message in [
        ("random", "unknown split"),
        ("dirichlet:alpha=0", "> 0"),
        ("dirichlet:beta=1", "unknown parameter"),
        ("homogeneous:alpha=1", "unknown parameter"),
        ("dirichlet:", "nothing after"),
    ]:
        with pytest.raises(ValueError, match=message):
            data.parse_split(bad)
    with pytest.raises(ValueError, match="unknown split"):
        replace(TINY, split="iid").check()


def test_an_empty_shard_is_an_error():
    labels = torch.arange(10) % 2
    with pytest.raises(ValueError, match="without data"):
        data.run_split("dirichlet:alpha=0.01", labels, 9, 0, 2)


def test_shard_batches_stay_in_their_shards_and_are_independent():
    dataset = data.load_dataset("mnist-synthetic")
    pipeline = data.Pipeline(dataset)
    shards = data.dirichlet_split(dataset.train_labels, 5, alpha=0.5, seed=3)
    a = data.ShardBatches(pipeline, shards, 1)
    b = data.ShardBatches(pipeline, shards, 1)
    for _ in range(4):
        a.draw(range(5), 40)
    first = [set(a.indices(w, 300).tolist()) for w in range(5)]
    b.draw([3], 7)  # another worker's draws leave worker 0's stream alone
    b2 = data.ShardBatches(pipeline, shards, 1)
    assert torch.equal(b.indices(0, 50), b2.indices(0, 50))
    for w in range(5):
        assert first[w] <= set(shards[w].tolist())
        if len(shards[w]) <= 300:
            assert first[w] == set(shards[w].tolist())  # a pass covers the shard
    x, y = a.draw([4, 0], 3)
    assert x.shape == (2, 3, 1, 28, 28) and y.shape == (2, 3)


def test_each_worker_sees_only_its_shard_in_a_run(tiny, monkeypatch):
    drawn = []
    original = data.ShardBatches.indices

    def indices(self, worker, count):
        out = original(self, worker, count)
        drawn.append((worker, out))
        return out

    monkeypatch.setattr(data.ShardBatches, "indices", indices)
    config = replace(TINY, n=6, f=2, attack="label_flip", split="dirichlet:alpha=1", optimizer="resam", steps=3)
    experiment.run(config)
    dataset = data.load_dataset(config.dataset)
    shards = data.run_split(config.split, dataset.train_labels, 6, config.seed, 10)
    assert sorted({w for w, _ in drawn}) == list(range(6))  # honest 0-3 and Byzantine 4-5
    assert len(drawn) == 3 * 6
    for worker, index in drawn:
        assert set(index.tolist()) <= set(shards[worker].tolist())
    # the shared stream of the default split is untouched by the new code
    before = experiment.run(replace(TINY, steps=2))
    assert before["study"]["loss"] == experiment.run(replace(TINY, steps=2, split="shared"))["study"]["loss"]


# --- grids ---------------------------------------------------------------------------------


def test_adam_grids_shape():
    for name in grids.ADAM_GRIDS:
        configs = grids.make_grid(name)
        assert len(configs) == 4 * 5 * 7 == 140 and len({c.run_id() for c in configs}) == 140
        for c in configs:
            c.check()
            assert c.preset == "canonical" and c.mu == 0 and c.clip == 2.0 and c.l2 == 1e-4
            assert c.lr == (0.001 if c.optimizer in ("dra", "mra") else c.lr)
        assert {c.optimizer for c in configs} == set(grids.ADAM_OPTIMIZERS)
        assert {c.attack for c in configs} == set(grids.ADAM_ATTACKS)
    homogeneous = grids.make_grid("adam-mnist-homogeneous")
    assert {(c.n, c.f, c.split, c.model, c.batch_size) for c in homogeneous} == {
        (15, 5, "homogeneous", "mnist-cnn-adam", 25)
    }
    assert {c.rule for c in homogeneous} == set(grids.ADAM_RULES)
    assert {(c.optimizer, c.lr, c.lr_decay) for c in homogeneous if c.optimizer in ("sgd", "resam")} == {
        ("sgd", 0.75, None),
        ("resam", 0.75, None),
    }
    heterogeneous = grids.make_grid("adam-mnist-heterogeneous")
    assert {(c.n, c.f, c.split) for c in heterogeneous} == {(17, 4, "dirichlet:alpha=0.1")}
    assert all(c.rule.startswith("nnm+") for c in heterogeneous)
    sgd = next(c for c in heterogeneous if c.optimizer == "sgd")
    assert [sgd.learning_rate(t) for t in (0, 49, 50, 99, 100, 150)] == [0.75, 0.75, 0.375, 0.375, 0.25, 0.1875]
    cifar = grids.make_grid("adam-cifar10-heterogeneous")
    assert {(c.dataset, c.model, c.n, c.f, c.batch_size, c.steps) for c in cifar} == {
        ("cifar10", "cifar-cnn", 15, 4, 50, 1500)
    }
    assert {c.lr for c in cifar if c.optimizer == "resam"} == {0.25}
    assert grids.make_grid("adam-mnist-homogeneous", dataset="mnist")[0].dataset == "mnist"


@pytest.mark.parametrize(
    "name, dataset, steps",
    [
        ("adam-mnist-homogeneous", None, 3),
        ("adam-mnist-heterogeneous", None, 3),
        ("adam-cifar10-homogeneous", "cifar10-synthetic", 1),
        ("adam-cifar10-heterogeneous", "cifar10-synthetic", 1),
    ],
)
def test_adam_grid_first_configuration_runs(tmp_path, name, dataset, steps):
    (config,) = grids.make_grid(name, dataset=dataset, steps=steps)[:1]
    if config.model == "cifar-cnn":  # CPU time: CIFAR-shaped mini-batches of 4, not 50
        config = replace(config, batch_size=4)
    summary = experiment.run_and_save(config, str(tmp_path))
    assert summary["run_id"] == config.run_id()
    result = experiment.load_result(experiment.find_result(tmp_path, config))
    assert result["eval"]["step"] == [0, steps] and len(result["study"]["loss"]) == steps
    assert len(result["split_sizes"]) == config.n and min(result["split_sizes"]) > 0
    assert all(math.isfinite(v) for v in result["study"]["loss"])


def test_adam_grid_mra_under_label_flip_runs(tmp_path):
    configs = grids.make_grid("adam-mnist-heterogeneous", steps=1)
    config = next(c for c in configs if c.optimizer == "mra" and c.attack == "label_flip" and c.rule == "nnm+mda")
    result = experiment.run(config)
    assert result["optimizer_spec"] == {"name": "mra", "params": optimizers.params("mra")}
    assert all(math.isfinite(v) for v in result["study"]["aggregate_norm"])


# --- command line and committed files ------------------------------------------------------


def test_cli_pre_option_and_errors(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    common = ["run", "--dataset", "mnist-synthetic", "--n", "7", "--f", "1", "--steps", "1", "--eval-every", "1"]
    assert cli.main([*common, "--pre", "nnm", "--rule", "median", "--optimizer", "resam", "--mu", "0",
                     "--attack", "sign_flip", "--split", "homogeneous", "--no-progress"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "-nnm+median-sign_flip-" in out and "-resam-split-homogeneous-" in out
    assert cli.main([*common, "--optimizer", "dra", "--no-progress"]) == 2
    assert "set mu to 0" in capsys.readouterr().err
    assert cli.main([*common, "--split", "dirichlet:alpha=-1", "--no-progress"]) == 2
    assert "alpha must be finite and > 0" in capsys.readouterr().err


def test_the_distributed_path_refuses_what_it_does_not_implement():
    from byzagg.train import distributed_run

    for changes, message in [
        ({"optimizer": "resam", "mu": 0.0}, "simulated only"),
        ({"split": "homogeneous"}, "simulated only"),
        ({"attack": "little:base=own", "f": 2, "n": 7}, "simulated only"),
        ({"attack": "sign_flip"}, "simulated only"),
    ]:
        with pytest.raises(ValueError, match=message):
            distributed_run.run_distributed(replace(TINY, **{"attack": "little", **changes}))


def test_every_committed_run_file_is_still_found():
    paths = sorted(p for p in (REPO / "results").rglob("run-json/*.json*") if p.name.endswith((".json", ".json.gz")))
    if not paths:
        pytest.skip("no committed run files")
    found = 0
    for path in paths:
        result = experiment.load_result(path)
        assert result is not None, path
        config = experiment.stored_config(result)
        assert config is not None, path
        assert experiment.find_result(path.parent.parent, config) == path, path
        assert config.key() == result["key"], path  # the new fields at their defaults change no key
        found += 1
    assert found == len(paths)

"""The BrSGD study's pieces of the harness (Li et al., "Efficient Byzantine-Resilient
Stochastic Gradient Descent", Section 5): the model negation, gradient scale and label flip
attacks (and the Gaussian attack at standard deviation 200), the Byzantine workers' own
mini-batches, every rule on rows of 1e10 x gradients, LeNet, the grid `brsgd-table1` (its
first configurations, a few steps each) and the report."""

import inspect
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import byzagg
from byzagg.train import attacks, brsgd_report, data, experiment, grids, models, rules

# ----------------------------------------------------------------------------------------
# Attacks


def test_new_attack_specifications():
    for name in ("model_negation", "gradient_scale", "label_flip"):
        assert attacks.canonical(name) == name and name in attacks.NAMES
    assert attacks.params("model_negation") == {"factor": 1e10}
    assert attacks.params("gradient_scale") == {"factor": 1e10}
    assert attacks.params("label_flip") == {}
    assert attacks.canonical("model_negation:factor=10000000000.0") == "model_negation"  # default left out
    assert attacks.canonical("gradient_scale:factor=100") == "gradient_scale:factor=100"
    # "standard deviation 200" is the Gaussian attack with variance 200^2: one implementation
    assert attacks.canonical("gaussian:variance=40000") == "gaussian:variance=40000"
    rows = attacks.gaussian(3, 50_000, torch.Generator().manual_seed(1), variance=40_000)
    assert float(rows.std()) == pytest.approx(200, rel=0.02)
    with pytest.raises(ValueError, match="unknown parameter"):
        attacks.parse("label_flip:factor=2")


def test_model_negation_sees_the_honest_vectors_only():
    assert set(inspect.signature(attacks.model_negation).parameters) == {"H", "f", "factor"}
    H = torch.randn(15, 300, generator=torch.Generator().manual_seed(0))
    rows = attacks.model_negation(H, 5)
    assert rows.shape == (5, 300) and rows.dtype == H.dtype
    expected = (-1e10 * H.double().sum(0)).float()
    torch.testing.assert_close(rows[0], expected)
    assert all(torch.equal(rows[0], rows[i]) for i in range(5))  # all Byzantine workers send it
    assert torch.isfinite(rows).all()
    torch.testing.assert_close(attacks.model_negation(H, 2, factor=2.0)[1], -2 * H.sum(0))
    # deterministic: a function of H alone
    assert torch.equal(attacks.model_negation(H.clone(), 5), rows)


def test_scaled_vectors_stay_finite_in_float32():
    huge = torch.full((2, 4), 1e30)
    huge[1] = -1e30
    negated = attacks.model_negation(huge[:1].expand(2, -1), 3)  # -1e10 x 2e30 overflows float32
    assert torch.isfinite(negated).all() and float(negated.min()) == -torch.finfo(torch.float32).max
    scaled = attacks.gradient_scale(huge)
    assert torch.isfinite(scaled).all()
    assert float(scaled[0, 0]) == torch.finfo(torch.float32).max and float(scaled[1, 0]) == -torch.finfo(torch.float32).max
    half = attacks.gradient_scale(torch.ones(1, 3, dtype=torch.float16))
    assert half.dtype == torch.float16 and torch.isfinite(half).all()


def test_gradient_scale_scales_the_workers_own_vectors():
    assert set(inspect.signature(attacks.gradient_scale).parameters) == {"own", "factor"}
    own = torch.randn(4, 100)
    rows = attacks.gradient_scale(own)
    assert rows.shape == own.shape
    torch.testing.assert_close(rows, (own.double() * 1e10).float())
    torch.testing.assert_close(attacks.gradient_scale(own, 3.0), 3 * own)
    assert torch.equal(attacks.gradient_scale(own.clone()), rows)


def test_label_flip():
    assert set(inspect.signature(attacks.label_flip).parameters) == {"labels", "num_classes"}
    y = torch.arange(10).repeat(3).view(3, 10)
    flipped = attacks.label_flip(y)
    assert flipped.shape == y.shape and torch.equal(flipped, 9 - y)
    assert torch.equal(attacks.label_flip(flipped), y)  # an involution
    assert torch.equal(y, torch.arange(10).repeat(3).view(3, 10))  # the input is not modified
    assert torch.equal(attacks.label_flip(torch.tensor([0, 1]), num_classes=2), torch.tensor([1, 0]))
    with pytest.raises(ValueError, match="labels must lie"):
        attacks.label_flip(torch.tensor([10]))


def _pipeline(seed=3):
    dataset = data.synthetic("mnist-synthetic")
    return data.Pipeline(dataset, "cpu", seed=seed)


def test_own_batches_are_seeded_and_leave_the_honest_stream_alone():
    a, b = _pipeline(), _pipeline()
    own = attacks.OwnBatches(a, seed=7)
    x, y = own.draw(3, 5)
    assert x.shape == _pipeline().worker_batches(3, 5)[0].shape == (3, 5, 1, 28, 28) and y.shape == (3, 5)
    again = attacks.OwnBatches(_pipeline(), seed=7).draw(3, 5)
    assert torch.equal(x, again[0]) and torch.equal(y, again[1])
    other = attacks.OwnBatches(_pipeline(), seed=8).draw(3, 5)
    assert not torch.equal(y, other[1]) or not torch.equal(x, other[0])
    # the honest workers' stream of `a` is the one of the untouched pipeline `b`
    for _ in range(3):
        own.draw(4, 8)
        xa, ya = a.worker_batches(6, 4)
        xb, yb = b.worker_batches(6, 4)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


# ----------------------------------------------------------------------------------------
# Every rule on 1e10-scale rows


@pytest.mark.parametrize("rule", sorted(byzagg.RULES))
@pytest.mark.parametrize("attack", ["model_negation", "gradient_scale"])
def test_every_rule_handles_1e10_rows(rule, attack):
    n, f, d = 20, 2, 257
    generator = torch.Generator().manual_seed(0)
    H = 0.05 * torch.randn(n - f, d, generator=generator)
    if attack == "model_negation":
        byzantine = attacks.model_negation(H, f)
    else:
        byzantine = attacks.gradient_scale(0.05 * torch.randn(f, d, generator=generator))
    G = torch.cat([H, byzantine])
    assert torch.isfinite(G).all() and float(G.abs().max()) > 1e8
    params = {"f": f}
    if rule == "centered_clipping":
        params["tau"] = 1.0
    elif rule == "bucketing":
        params = {"s": 2, "generator": torch.Generator().manual_seed(0)}
    elif rule == "mda":
        params["f"] = 2
    out = byzagg.aggregate(rule, G, **params)
    # the documented behaviour: every rule returns finite values on finite input (API.md);
    # the robust ones, with f < n / 4 here, stay near the honest vectors
    assert torch.isfinite(out).all(), rule
    robust = {"median", "trimmed_mean", "meamed", "phocas", "krum", "multi_krum", "bulyan", "medoid",
              "geometric_median", "mda", "brsgd", "centered_clipping"}
    if rule in robust:
        assert float((out - H.mean(0)).norm()) < 10 * float(H.norm(dim=1).max()), rule
    if rule == "average":
        assert float(out.abs().max()) > 1e7  # the mean is carried away


# ----------------------------------------------------------------------------------------
# LeNet


def test_lenet_shapes_and_parameters():
    model = models.build_model("lenet")
    x = torch.randn(7, 1, 28, 28)
    out = model(x)
    assert out.shape == (7, 10)
    torch.testing.assert_close(out.exp().sum(1), torch.ones(7))  # log-probabilities
    assert models.parameter_count(model) == 61_706
    # conv 6@5x5 pad 2 (156), conv 16@5x5 (2,416), 400-120 (48,120), 120-84 (10,164), 84-10 (850)
    sizes = [p.numel() for p in model.parameters()]
    assert sizes == [150, 6, 2400, 16, 48000, 120, 10080, 84, 840, 10]
    hidden = model[:3](x)
    assert hidden.shape == (7, 6, 14, 14) and model[:6](x).shape == (7, 16, 5, 5)


# ----------------------------------------------------------------------------------------
# The grid


def test_brsgd_grid_shape():
    configs = grids.make_grid("brsgd-table1", seeds=[1])
    assert len(configs) == 46 and len({c.run_id() for c in configs}) == 46
    assert {c.rule for c in configs} == set(grids.BRSGD_RULES)
    assert all((c.model, c.n, c.lr, c.mu, c.clip, c.l2, c.preset) == ("lenet", 20, 0.03, 0.0, None, 0.0, "canonical")
               for c in configs)
    assert all(c.dataset == "fashion-mnist" for c in configs)
    baseline = [c for c in configs if c.attack == "none"]
    assert [(c.rule, c.f) for c in baseline] == [("average", 0), ("brsgd", 0)]
    assert {c.f for c in configs if c.rule == "krum"} == {2, 5}  # n >= 2f + 3
    assert {c.attack for c in configs} - {"none"} == {
        "gaussian:variance=40000", "model_negation", "gradient_scale", "label_flip"}
    for c in configs:
        c.check()
    two = grids.make_grid("brsgd-table1")
    assert [c.seed for c in two] == [s for s in grids.BRSGD_SEEDS for _ in range(46)]


def _small_dataset():
    dataset = data.synthetic("mnist-synthetic")
    dataset.name = "fashion-mnist"  # the Fashion-MNIST pre-processing on synthetic digits
    return dataset


def test_grid_first_configuration_runs_end_to_end(tmp_path):
    config = replace(grids.make_grid("brsgd-table1", seeds=[1])[0], steps=3, eval_every=2)
    result = experiment.run(config, dataset=_small_dataset())
    assert result["parameters"] == result["dimension"] == 61_706
    assert result["eval"]["step"] == [0, 2, 3] and all(0 <= a <= 1 for a in result["eval"]["accuracy"])
    assert len(result["study"]["aggregation_s"]) == 3 and all(t >= 0 for t in result["study"]["aggregation_s"])
    assert all(np.isfinite(result["study"]["loss"]))
    again = experiment.run(config, dataset=_small_dataset())
    assert again["eval"] == result["eval"] and again["study"]["loss"] == result["study"]["loss"]


@pytest.mark.parametrize("attack", ["model_negation", "gradient_scale", "label_flip", "gaussian:variance=40000"])
def test_each_attack_runs_under_brsgd(attack, monkeypatch):
    seen = []
    real_build = rules.build

    def spying_build(spec, preset="canonical", seed=0):
        rule = real_build(spec, preset, seed)
        return lambda G, f: (seen.append(G.clone()), rule(G, f))[1]

    monkeypatch.setattr(rules, "build", spying_build)
    config = next(c for c in grids.make_grid("brsgd-table1", seeds=[1]) if c.attack == attacks.canonical(attack)
                  and c.rule == "brsgd" and c.f == 5)
    result = experiment.run(replace(config, steps=2, eval_every=2), dataset=_small_dataset())
    G = seen[-1]
    assert G.shape == (20, 61_706) and torch.isfinite(G).all()
    honest_norm = float(G[:15].norm(dim=1).max())
    byzantine_norm = float(G[15:].norm(dim=1).min())
    if attack in ("model_negation", "gradient_scale"):
        assert byzantine_norm > 1e8 * honest_norm
    elif attack.startswith("gaussian"):
        assert byzantine_norm == pytest.approx(200 * math.sqrt(61_706), rel=0.05)
    else:  # label flip: gradients of the same scale as the honest ones, but other gradients
        assert 0.1 * honest_norm < byzantine_norm < 10 * honest_norm
        assert not any(torch.allclose(G[15], G[i]) for i in range(15))
    assert result["attack_spec"]["name"] == attacks.name_of(attack)


def test_label_flip_reaches_only_the_byzantine_workers(monkeypatch):
    """The honest workers' labels are the data's; the Byzantine workers' are 9 - y."""
    calls = []
    real = experiment.workers.FlatModel.gradients

    def spy(self, x, y, out=None):
        calls.append((x.clone(), y.clone()))
        return real(self, x, y, out=out)

    monkeypatch.setattr(experiment.workers.FlatModel, "gradients", spy)
    flips = []
    real_flip = attacks.label_flip
    monkeypatch.setattr(attacks, "label_flip", lambda y, n=10: (flips.append(y.clone()), real_flip(y, n))[1])
    config = next(c for c in grids.make_grid("brsgd-table1", seeds=[1]) if c.attack == "label_flip" and c.f == 2)
    dataset = _small_dataset()
    experiment.run(replace(config, steps=1, eval_every=1), dataset=dataset)
    (hx, hy), (bx, by) = calls  # one step: the honest pass, then the Byzantine one
    assert hy.shape == (18, config.batch_size) and by.shape == (2, config.batch_size)
    assert torch.equal(by, 9 - flips[0])
    # the honest labels are the stream's own, the same as in the attack-free run
    plain = data.Pipeline(dataset, "cpu", seed=config.seed)
    x0, y0 = plain.worker_batches(18, config.batch_size)
    assert torch.equal(hy, y0) and torch.equal(hx, x0)
    # the Byzantine labels are the true labels of their own samples, flipped
    own = attacks.OwnBatches(data.Pipeline(dataset, "cpu", seed=config.seed), 30_000 + config.seed)
    ox, oy = own.draw(2, config.batch_size)
    assert torch.equal(bx, ox) and torch.equal(by, 9 - oy)


# ----------------------------------------------------------------------------------------
# The report


def _tiny_grid(folder):
    """A few runs of the grid (2 steps each, synthetic images), saved as run files: seed 1 of
    the mean and BrSGD without attack and under model negation at 10%, and BrSGD under label
    flip at 50% with seeds 1 and 2."""
    dataset = _small_dataset()
    wanted = {("none", 0, 1), ("model_negation", 2, 1), ("label_flip", 10, 1), ("label_flip", 10, 2)}
    picked = [c for c in grids.make_grid("brsgd-table1", seeds=[1, 2])
              if (c.attack, c.f, c.seed) in wanted and c.rule in ("average", "brsgd")
              and not (c.attack == "label_flip" and c.rule == "average")]
    results = []
    for config in picked:
        config = replace(config, steps=2, eval_every=1)
        result = experiment.run(config, dataset=dataset)
        experiment.write_json_atomic(experiment.result_path(folder, config), result)
        results.append(result)
    return results


def test_report_numbers_come_from_the_runs(tmp_path, monkeypatch):
    results = _tiny_grid(tmp_path / "grid")
    groups = brsgd_report.group(results)
    assert set(groups) == {(r, a, p) for r in ("average", "brsgd") for a, p in (("none", 0), ("model_negation", 10))} | {
        ("brsgd", "label_flip", 50)}
    runs = groups[("brsgd", "label_flip", 50)]
    finals = [100 * r["eval"]["accuracy"][-1] for r in runs]
    mean, std, count = brsgd_report.final_accuracy(runs)
    assert count == 2 and mean == pytest.approx(np.mean(finals)) and std == pytest.approx(np.std(finals, ddof=1))
    table = brsgd_report.table1(groups)
    printed = brsgd_report.SOURCE_TABLE1["label_flip"][3]  # Ours, 50%
    assert f"{mean:.2f} ± {std:.2f}" in table and f"{mean - printed:+.2f}" in table
    assert "not run" in table  # median and Krum were not run here
    costs = {r["rule"]: r for r in brsgd_report.cost_rows(groups)}
    assert costs["average"]["ratio_to_mean"] == pytest.approx(1.0)
    times = brsgd_report.aggregation_times(sum((v for k, v in groups.items() if k[0] == "brsgd"), []))
    assert costs["brsgd"]["median_ms"] == pytest.approx(1e3 * np.median(times)) and times.size == 4 * 1
    verdicts = {c["claim"][:20]: c["verdict"] for c in brsgd_report.claims(groups, list(costs.values()))}
    assert set(verdicts.values()) <= {"holds", "partly", "does not", "not tested"} and len(verdicts) >= 4

    monkeypatch.chdir(tmp_path)
    doc = tmp_path / "docs" / "reproduction.md"
    doc.parent.mkdir()
    doc.write_text("# Reproduction\n\n## Earlier section\n\ntext\n")
    written = brsgd_report.make_report("grid", doc=doc)
    assert written["runs"] == len(results)
    once = doc.read_text()
    assert once.startswith("# Reproduction\n\n## Earlier section\n\ntext\n") and "## BrSGD study" in once
    assert "](../grid/report/brsgd-figure3.png)" in once
    assert "`byzagg.brsgd(G, beta=0.5, threshold=inf)` (as the run files state it" in once
    assert (tmp_path / "grid" / "report" / "brsgd-figure3.png").stat().st_size < 300_000
    brsgd_report.make_report("grid", doc=doc)
    assert doc.read_text() == once  # replaced, not appended again
    assert once.count(brsgd_report.BEGIN_MARKER) == 1


def test_report_states_the_parameters_the_runs_ran_with():
    run = {"run_id": "r", "rule_spec": {"effective": [{"name": "brsgd", "params": {"beta": 0.5, "threshold": "inf"}}]}}
    assert brsgd_report.stated_params([run, run]) == "beta=0.5, threshold=inf"
    other = {"run_id": "s", "rule_spec": {"effective": [{"name": "brsgd", "params": {"beta": 0.3, "threshold": "inf"}}]}}
    with pytest.raises(ValueError, match="different parameters"):
        brsgd_report.stated_params([run, other])
    with pytest.raises(ValueError, match="does not state"):
        brsgd_report.stated_params([run, {"run_id": "old", "rule_spec": {"rule": "brsgd"}}])

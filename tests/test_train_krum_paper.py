"""The Krum paper's pieces of the harness (Blanchard et al. 2017, supplementary Section 5):
the Gaussian, omniscient and honest attacks, 1-p Krum, the MLP and the ConvNet, the
Spambase reader and the offline breast-cancer set, the three grids (a couple of steps of
their first configurations), gzip'd run files and the report's figures."""

import copy
import gzip
import inspect
import json
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

import byzagg
from byzagg.train import attacks, cli, data, experiment, grids, krum_report, models, report, rules, workers
from byzagg.train.data import DatasetError

# ----------------------------------------------------------------------------------------
# Attacks


def test_attack_specifications_are_canonical_and_checked():
    assert attacks.canonical("gaussian") == "gaussian"
    assert attacks.canonical("gaussian:variance=200") == "gaussian"  # the default is left out
    assert attacks.canonical(" gaussian : variance=40000.0") == "gaussian:variance=40000"
    assert attacks.canonical("omniscient:factor=10,batch=0") == "omniscient:batch=0,factor=10"
    assert attacks.params("omniscient") == {"factor": 100.0, "batch": 500}
    config = experiment.RunConfig(attack="gaussian:variance=200.0", rule="krum", f=5, n=15)
    assert config.attack == "gaussian" and "-gaussian-" in config.run_id()
    assert "gaussian@variance=1-" in replace(config, attack="gaussian:variance=1").run_id()
    for bad, message in [
        ("gauss", "unknown attack"),
        ("gaussian:sigma=1", "unknown parameter"),
        ("omniscient:batch=1.5", "integer"),
        ("gaussian:variance=-1", ">= 0"),
        ("gaussian:", "nothing after"),
    ]:
        with pytest.raises(ValueError, match=message):
            attacks.parse(bad)
    with pytest.raises(ValueError, match="unknown attack"):
        experiment.RunConfig(attack="bogus").check()


def test_gaussian_attack_shape_law_and_seed():
    rows = attacks.gaussian(5, 20_000, torch.Generator().manual_seed(3))
    assert rows.shape == (5, 20_000)
    assert abs(float(rows.var()) - 200) < 200 * 0.03 and abs(float(rows.mean())) < 0.2
    assert not torch.equal(rows[0], rows[1])  # one random vector per Byzantine worker
    again = attacks.gaussian(5, 20_000, torch.Generator().manual_seed(3))
    torch.testing.assert_close(rows, again, rtol=0, atol=0)
    assert attacks.gaussian(2, 100, torch.Generator().manual_seed(0), variance=4.0).std() == pytest.approx(2, rel=0.3)
    # what it sees: the shape, its generator and the variance, nothing of the training
    assert set(inspect.signature(attacks.gaussian).parameters) == {"f", "d", "generator", "variance", "device"}


def test_omniscient_attack_negates_and_scales_the_estimate():
    estimate = torch.randn(40)
    rows = attacks.omniscient(estimate, 3, factor=7.0)
    assert rows.shape == (3, 40)
    torch.testing.assert_close(rows, (-7.0 * estimate).expand(3, -1))
    # what it sees: the estimate of the true gradient (from the model and the training set)
    assert set(inspect.signature(attacks.omniscient).parameters) == {"estimate", "f", "factor"}


def _flat_and_pipeline(dataset, model):
    torch.manual_seed(0)
    flat = workers.FlatModel(model, train_mode=False)
    return flat, data.Pipeline(dataset, seed=0)


def test_true_gradient_estimate_whole_set_is_the_full_gradient_and_batches_are_seeded():
    dataset = data.synthetic("mnist-synthetic")
    flat, pipeline = _flat_and_pipeline(dataset, models.mnist_convnet())
    full = attacks.true_gradient_estimate(flat, pipeline, 0, torch.Generator().manual_seed(0), chunk=700)
    x = pipeline.prepare(dataset.train_images)
    reference = copy.deepcopy(flat.module)  # plain autograd on a copy holding theta
    torch.nn.utils.vector_to_parameters(flat.theta.clone(), reference.parameters())
    loss = torch.nn.functional.nll_loss(reference(x), dataset.train_labels)
    expected = torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, list(reference.parameters()))])
    torch.testing.assert_close(full, expected, rtol=1e-4, atol=1e-6)
    position, state = pipeline.position, pipeline.generator.get_state()
    a = attacks.true_gradient_estimate(flat, pipeline, 1000, torch.Generator().manual_seed(5))
    b = attacks.true_gradient_estimate(flat, pipeline, 1000, torch.Generator().manual_seed(5))
    c = attacks.true_gradient_estimate(flat, pipeline, 1000, torch.Generator().manual_seed(6))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    small = attacks.true_gradient_estimate(flat, pipeline, 50, torch.Generator().manual_seed(5))

    def cosine(u):
        return float(torch.nn.functional.cosine_similarity(u, full, dim=0))

    assert cosine(a) > 0.7 and cosine(a) > cosine(small)  # half the set: an accurate estimate
    # the workers' stream is untouched
    assert pipeline.position == position and torch.equal(pipeline.generator.get_state(), state)


def test_honest_attack_means_n_correct_workers_and_the_rule_assumes_f():
    config = experiment.RunConfig(n=15, f=5, attack="honest", rule="krum", preset="canonical")
    assert config.honest == 15 and config.byzantine == 0
    config.check()  # Krum on 15 rows with f = 5
    none = replace(config, attack="none")
    assert none.honest == 10 and none.byzantine == 0
    with pytest.raises(ValueError, match="rows and f=5"):
        none.check()  # 10 rows: Krum needs n >= 2f + 3


# ----------------------------------------------------------------------------------------
# 1-p Krum


def test_one_minus_p_schedule():
    assert [rules.one_minus_p_probability(t) for t in (1, 4, 100)] == [1.0, 0.5, 0.1]
    assert rules.one_minus_p_probability(9, power=1.0) == pytest.approx(1 / 9)
    with pytest.raises(ValueError):
        rules.one_minus_p_probability(0)


def test_krum_1p_spec_alias_and_parameters():
    assert rules.canonical("krum-1p") == "krum_1p"
    assert rules.canonical("krum-1p:power=1.0,m=2") == "krum_1p:m=2,power=1"
    assert experiment.RunConfig(rule="krum-1p").rule == "krum_1p"
    with pytest.raises(ValueError, match="unknown parameter"):
        rules.parse("krum_1p:p=0.5")
    assert "krum_1p" in rules.HELP


def test_krum_1p_draws_are_seeded_and_follow_p_t():
    G = torch.randn(15, 8, generator=torch.Generator().manual_seed(0))
    first = rules.build("krum_1p", "canonical", seed=3)
    second = rules.build("krum_1p", "canonical", seed=3)
    other = rules.build("krum_1p", "paper", seed=4)  # the library's Krum under either preset
    outputs = [first(G, 5) for _ in range(400)]
    for _ in range(400):
        second(G, 5)
        other(G, 5)
    assert first.choices == second.choices and first.choices != other.choices
    assert first.choices[0] == "average"  # p_1 = 1
    mean, krum = G.mean(0), byzagg.krum(G, 5)
    for choice, out in zip(first.choices, outputs):
        torch.testing.assert_close(out, mean if choice == "average" else krum)
    expected = sum(1 / math.sqrt(t) for t in range(1, 401))  # ~ 38.6 averages expected
    assert abs(first.choices.count("average") - expected) < 4 * math.sqrt(expected)
    late = first.choices[200:]
    assert late.count("krum") > 0.9 * len(late)


def test_krum_1p_checks_krum_requirement_every_round():
    rule = rules.build("krum_1p", "canonical")
    with pytest.raises(ValueError, match="n >= 2f \\+ 3"):
        rule(torch.randn(12, 3), 5)  # round 1 would average, but Krum cannot run on 12 rows
    with pytest.raises(ValueError, match="krum_1p"):
        rules.check("krum_1p", "canonical", 12, 5)


# ----------------------------------------------------------------------------------------
# Models


def test_krum_paper_models_shapes_and_parameter_counts():
    mlp = models.tabular_mlp(57, 2)
    assert models.parameter_count(mlp) == 57 * 100 + 100 + 100 * 100 + 100 + 100 * 2 + 2 == 16_102
    assert mlp(torch.randn(4, 57)).shape == (4, 2)
    assert models.parameter_count(models.tabular_mlp(30, 2)) == 13_402
    hidden = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    assert len(hidden) == 3  # two hidden layers, then the output
    convnet = models.mnist_convnet()
    assert models.parameter_count(convnet) == 18_026
    assert sum(isinstance(m, torch.nn.Conv2d) for m in convnet) == 4
    assert isinstance([m for m in convnet if not isinstance(m, torch.nn.LogSoftmax)][-1], torch.nn.Linear)
    out = convnet(torch.randn(3, 1, 28, 28))
    assert out.shape == (3, 10) and torch.allclose(out.exp().sum(1), torch.ones(3))
    with pytest.raises(ValueError, match="does not fit"):
        experiment.RunConfig(model="tabular-mlp", dataset="mnist-embedded", attack="honest").check()


# ----------------------------------------------------------------------------------------
# Spambase and breast-cancer


def write_spambase(path, rows=40, seed=0, compress=False):
    rng = np.random.default_rng(seed)
    features = rng.exponential(1.0, (rows, 57)).round(3)
    labels = np.arange(rows) % 2
    text = "\n".join(",".join([*(f"{v:g}" for v in row), str(label)]) for row, label in zip(features, labels)) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(text.encode()) if compress else text.encode())
    return features, labels


@pytest.mark.parametrize("where,compress", [("", False), ("spambase", False), ("", True)])
def test_spambase_reader(tmp_path, where, compress):
    name = "spambase.data.gz" if compress else "spambase.data"
    features, labels = write_spambase(tmp_path / where / name, compress=compress)
    ds = data.load_dataset("spambase", tmp_path)
    assert ds.train_images.shape == (32, 57) and ds.test_images.shape == (8, 57)
    assert ds.train_images.dtype == torch.float32 and ds.num_classes == 2 and ds.tabular
    assert sorted(ds.train_labels.tolist() + ds.test_labels.tolist()) == sorted(labels.tolist())
    torch.testing.assert_close(ds.train_images.mean(0), torch.zeros(57), atol=1e-5, rtol=0)
    torch.testing.assert_close(ds.train_images.std(0, unbiased=False), torch.ones(57), atol=1e-4, rtol=0)
    again = data.load_dataset("spambase", tmp_path)  # the split is fixed
    assert torch.equal(ds.test_labels, again.test_labels) and torch.equal(ds.test_images, again.test_images)
    pipeline = data.Pipeline(ds, seed=1)
    x, y = pipeline.worker_batches(4, 3)
    assert x.shape == (4, 3, 57) and y.shape == (4, 3)


@pytest.mark.parametrize(
    "content,message",
    [
        ("1,2,3\n", "3 comma-separated fields, expected 58"),
        (",".join(["0.1"] * 57) + ",2\n", "label '2'"),
        (",".join(["x"] * 58) + "\n", "not a number"),
        (",".join(["nan"] * 57) + ",1\n", "not finite"),
        ((",".join(["0.5"] * 57) + ",1\n") * 12, "both classes"),
        ((",".join(["0.5"] * 57) + ",1\n") * 3, "too few"),
    ],
)
def test_spambase_reader_errors(tmp_path, content, message):
    (tmp_path / "spambase.data").write_text(content)
    with pytest.raises(DatasetError, match=message) as error:
        data.load_dataset("spambase", tmp_path)
    assert "spambase.data" in str(error.value)


def test_spambase_missing_file_and_folder(tmp_path, capsys):
    with pytest.raises(DatasetError, match="not found"):
        data.load_dataset("spambase", tmp_path)
    with pytest.raises(DatasetError, match="needs --data-dir"):
        data.load_dataset("spambase")
    (tmp_path / "spambase.data").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DatasetError, match="not a text file"):
        data.load_dataset("spambase", tmp_path)
    args = ["grid", "krum-paper-nobyz", "--dataset", "spambase", "--no-progress", "--out", str(tmp_path / "o")]
    assert cli.main(args + ["--data-dir", str(tmp_path / "absent")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert cli.main(args + ["--data-dir", str(tmp_path)]) == 2
    assert "spambase.data" in capsys.readouterr().err


def test_breast_cancer_offline():
    pytest.importorskip("sklearn")
    ds = data.load_dataset("breast-cancer")
    assert ds.train_images.shape == (455, 30) and ds.test_images.shape == (114, 30)
    assert set(ds.train_labels.unique().tolist()) == {0, 1} and "scikit-learn" in ds.source


def test_breast_cancer_without_scikit_learn(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_sklearn(name, *args, **kwargs):
        if name.startswith("sklearn"):
            raise ImportError("no sklearn here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sklearn)
    with pytest.raises(DatasetError, match="needs scikit-learn"):
        data.load_dataset("breast-cancer")


# ----------------------------------------------------------------------------------------
# Grids, end to end


def test_krum_paper_grids_shape():
    nobyz = grids.make_grid("krum-paper-nobyz")
    assert len(nobyz) == 25 and {c.rule for c in nobyz} == set(grids.KRUM_PAPER_RULES)
    assert {(c.n, c.f, c.attack, c.batch_size, c.preset, c.mu) for c in nobyz} == {(15, 5, "honest", 3, "canonical", 0.0)}
    gaussian = grids.make_grid("krum-paper-gaussian")
    assert len(gaussian) == 30 and {c.attack for c in gaussian} == {"gaussian", "gaussian:variance=40000"}
    omniscient = grids.make_grid("krum-paper-omniscient")
    assert len(omniscient) == 30 and {c.seed for c in omniscient} == set(range(1, 6))
    assert {c.batch_size for c in omniscient} == set(grids.KRUM_PAPER_BATCHES)
    attacked = [c for c in omniscient if c.attack != "none"]
    assert {(c.n, c.f, c.rule) for c in attacked} == {(31, 14, "multi_krum")} and 31 >= 2 * 14 + 3
    assert {(c.n, c.f, c.rule) for c in omniscient if c.attack == "none"} == {(31, 0, "average")}
    assert grids.make_grid("krum-paper-nobyz", preset="paper")[0].preset == "paper"


def _first(name, **changes):
    return replace(grids.make_grid(name, seeds=[1])[0], steps=2, eval_every=1, **changes)


@pytest.mark.parametrize("name", ["krum-paper-nobyz", "krum-paper-gaussian"])
def test_tabular_grids_first_configuration_runs(tmp_path, name):
    write_spambase(tmp_path / "spambase.data", rows=60)
    config = _first(name, dataset="spambase")
    result = experiment.run(config, data_dir=str(tmp_path))
    assert result["parameters"] == result["dimension"] == 16_102
    assert len(result["eval"]["accuracy"]) == 3 and result["attack_spec"]["name"] == config.attack
    one_p = experiment.run(replace(config, rule="krum_1p", steps=3), data_dir=str(tmp_path))
    assert one_p["krum_1p_choices"][0] == "average" and len(one_p["krum_1p_choices"]) == 3
    again = experiment.run(replace(config, rule="krum_1p", steps=3), data_dir=str(tmp_path))
    assert again["eval"] == one_p["eval"] and again["krum_1p_choices"] == one_p["krum_1p_choices"]


def test_gaussian_rows_reach_the_rule(tmp_path, monkeypatch):
    write_spambase(tmp_path / "spambase.data", rows=60)
    seen = []
    real_build = rules.build

    def spying_build(spec, preset="canonical", seed=0):
        rule = real_build(spec, preset, seed)
        return lambda G, f: (seen.append(G.clone()), rule(G, f))[1]

    monkeypatch.setattr(rules, "build", spying_build)
    experiment.run(_first("krum-paper-gaussian", dataset="spambase"), data_dir=str(tmp_path))
    G = seen[-1]  # (the first calls are the rule's check on a small matrix)
    assert G.shape == (15, 16_102)
    assert float(G[:10].norm(dim=1).max()) < 100 < float(G[10:].norm(dim=1).min())  # ~ sqrt(200 d) = 1,794


@pytest.mark.parametrize("index", [0, 1])  # the average without attack, then Multi-Krum vs omniscient
def test_omniscient_grid_first_configurations_run(index, monkeypatch):
    config = replace(grids.make_grid("krum-paper-omniscient", seeds=[1])[index], steps=2, eval_every=1)
    config = replace(config, attack="omniscient:batch=64") if index else config
    dataset = data.synthetic("mnist-synthetic")
    dataset.name = config.dataset  # the embedded subset's pre-processing on synthetic digits
    result = experiment.run(config, dataset=dataset)
    assert result["parameters"] == 18_026 and len(result["eval"]["step"]) == 3
    if index:
        assert (config.n, config.f, config.honest, config.byzantine) == (31, 14, 17, 14)
        assert result["study"]["cos_aggregate_honest"][0] > 0.5  # Multi-Krum kept the honest rows


def test_cli_runs_the_new_rule_and_attack(tmp_path, capsys):
    write_spambase(tmp_path / "spambase.data", rows=60)
    args = ["run", "--dataset", "spambase", "--data-dir", str(tmp_path), "--model", "tabular-mlp", "--n", "15"]
    args += ["--f", "5", "--rule", "krum-1p", "--attack", "gaussian:variance=100", "--steps", "2", "--batch-size", "3"]
    args += ["--preset", "canonical", "--no-progress", "--out", str(tmp_path / "o")]
    assert cli.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert "krum_1p-gaussian@variance=100" in out["run_id"]
    assert cli.main(args[:-2] + ["--attack", "gauss", "--out", str(tmp_path / "o")]) == 2
    assert "unknown attack" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------
# Compressed run files and the report


def test_compressed_runs_are_found_skipped_and_reported(tmp_path, capsys):
    write_spambase(tmp_path / "spambase.data", rows=60)
    out = tmp_path / "grid"
    base = ["grid", "krum-paper-gaussian", "--dataset", "spambase", "--data-dir", str(tmp_path), "--steps", "2"]
    base += ["--seeds", "1", "--no-progress", "--out", str(out)]
    assert cli.main(base + ["--filter", "rule=krum,average"]) == 0
    capsys.readouterr()
    assert cli.main(["compress", str(out)]) == 0
    files = sorted(p.name for p in (out / "run-json").iterdir())
    assert len(files) == 3 and all(name.endswith(".json.gz") for name in files)
    configs = grids.make_grid("krum-paper-gaussian", dataset="spambase", seeds=[1], steps=2)
    done = [c for c in configs if experiment.is_done(out, c)]
    assert len(done) == 3 and all(str(experiment.find_result(out, c)).endswith(".gz") for c in done)
    assert cli.main(base) == 0  # resumes: the compressed runs are skipped, the others run
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["skipped"] == 3 and summary["ran"] == 3
    assert len(report.load_results(out)) == 6
    assert cli.main(["report", str(out)]) == 0
    text = (out / "report" / "report.md").read_text()
    assert "| krum_1p |" in text and "gaussian:variance=40000" in text
    assert (out / "report" / "krum-rules-spambase-gaussian.png").exists()
    # the same run compressed and not: read once
    experiment.write_json_atomic(out / "run-json" / files[0][: -len(".gz")], experiment.load_result(out / "run-json" / files[0]))
    assert len(report.load_results(out)) == 6


def test_omniscient_figures(tmp_path):
    results = []
    for batch in (2, 8):
        for rule, attack, f in (("average", "none", 0), ("multi_krum", "omniscient", 14)):
            for seed in (1, 2):
                config = experiment.RunConfig(
                    dataset="mnist-embedded", model="mnist-convnet", n=31, f=f, rule=rule, attack=attack,
                    batch_size=batch, seed=seed, steps=50, eval_every=25, preset="canonical",
                )
                results.append(
                    {
                        "config": config.to_dict(),
                        "eval": {"step": [0, 25, 50], "accuracy": [0.1, 0.5 + 0.01 * seed, 0.8]},
                        "study": {
                            "loss": [2.3, 1.0, 0.5] if seed == 1 else [2.3, float("nan"), float("nan")],
                            "cos_aggregate_honest": [1.0, -0.5, 0.9, 1.0],
                        },
                        "timing": {"wall_s": 1.0},
                        "parameters": 18_026,
                    }
                )
    text, rows, figures = krum_report.krum_section(results, tmp_path)
    assert {p.name for p in figures} == {
        "krum-omniscient-error-mnist-embedded.png",
        "krum-omniscient-batch-mnist-embedded.png",
    }
    assert len(rows) == 4 and "| multi_krum |" in text and "NaN (diverged)" in text
    assert rows[0]["rounds_against_honest"] == (0.25, 0.0)

"""Runs, atomic result files, grids that resume, the CIFAR pipeline on synthetic data,
and the command line."""

import json
import os
import pickle
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from byzagg.train import cli, data, experiment, grids
from byzagg.train.experiment import RunConfig

TINY = RunConfig(
    dataset="mnist-synthetic",
    n=7,
    f=1,
    rule="median",
    attack="little",
    momentum="worker",
    batch_size=6,
    lr=0.1,
    steps=4,
    eval_every=2,
    preset="canonical",
)


def test_run_result_shape_and_determinism():
    a = experiment.run(TINY)
    b = experiment.run(TINY)
    assert a["complete"] and a["eval"]["step"] == [0, 2, 4]
    assert len(a["study"]["vn_ratio_submitted"]) == 4 and a["study"]["curvature"][0] == 0.0
    assert all(np.isfinite(a["study"]["loss"]))
    assert a["eval"]["accuracy"] == b["eval"]["accuracy"] and a["study"]["loss"] == b["study"]["loss"]
    assert a["dimension"] == 79510 and a["timing"]["steps_per_s"] > 0


def test_server_and_worker_momentum_agree_under_averaging():
    # with a linear rule both placements give the same trajectory (the paper's remark)
    base = replace(TINY, rule="average", attack="none", steps=6, eval_every=3)
    server = experiment.run(replace(base, momentum="server"))
    worker = experiment.run(replace(base, momentum="worker"))
    np.testing.assert_allclose(server["study"]["loss"], worker["study"]["loss"], rtol=1e-4)
    # ... while the submitted vectors differ, hence the variance-norm ratios
    assert server["study"]["vn_ratio_submitted"][3] != worker["study"]["vn_ratio_submitted"][3]


@pytest.mark.parametrize("preset", ["canonical", "paper"])
def test_cifar_model_and_pipeline_on_synthetic_data(preset):
    config = RunConfig(
        dataset="cifar10-synthetic",
        model="cifar-cnn",
        preset=preset,
        n=5,
        f=1,
        rule="krum",
        attack="empire",
        momentum="worker",
        mu=0.99,
        batch_size=3,
        lr=0.01,
        lr_decay=167.0,
        lr_decay_every=2,
        l2=1e-2,
        clip=5.0,
        steps=2,
        eval_every=2,
    )
    dataset = data.synthetic("cifar10-synthetic", train=40, test=20)
    result = experiment.run(config, dataset=dataset)
    assert result["dimension"] == 1310922
    assert result["study"]["lr"] == [0.01, 0.01]
    assert all(np.isfinite(result["study"]["loss"])) and len(result["eval"]["accuracy"]) == 2


def test_learning_rate_schedule_of_the_cifar_setup():
    config = RunConfig(lr=0.01, lr_decay=167.0, lr_decay_every=1500)
    assert config.learning_rate(0) == config.learning_rate(1499) == 0.01
    assert config.learning_rate(1500) == pytest.approx(0.01 / (1500 / 167 + 1))
    assert config.learning_rate(2999) == config.learning_rate(1500)


def test_atomic_write_leaves_old_file_or_new_one(tmp_path):
    path = tmp_path / "run-json" / "x.json"
    experiment.write_json_atomic(path, {"a": 1})
    with pytest.raises(TypeError):
        experiment.write_json_atomic(path, {"a": object()})  # fails mid-write
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]  # no temporary left


def test_grid_killed_then_resumed_does_not_redo_finished_runs(tmp_path, monkeypatch):
    configs = [
        replace(TINY, rule=rule, momentum=m, steps=2) for rule in ("median", "krum") for m in ("server", "worker")
    ]
    real_run = experiment.run
    calls = []

    def dying_run(config, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # the grid is killed during its third run
        calls.append(config.run_id())
        return real_run(config, **kwargs)

    monkeypatch.setattr(experiment, "run", dying_run)
    with pytest.raises(KeyboardInterrupt):
        experiment.run_grid(configs, str(tmp_path), progress=False)
    finished = sorted(p.name for p in (tmp_path / "run-json").iterdir())
    assert finished == sorted(f"{c}.json" for c in calls)  # two complete files, nothing partial
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "run-json").iterdir()}

    calls.clear()
    monkeypatch.setattr(
        experiment, "run", lambda config, **kw: (calls.append(config.run_id()), real_run(config, **kw))[1]
    )
    summary = experiment.run_grid(configs, str(tmp_path), progress=False)
    assert summary["skipped"] == 2 and summary["ran"] == 2 and len(calls) == 2
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())
    assert all(experiment.is_done(tmp_path, c) for c in configs)

    # an incomplete or foreign file is redone; a changed config is redone
    victim = experiment.result_path(tmp_path, configs[0])
    victim.write_text('{"format": "byzagg-train-run/1", "complete": false}')
    assert not experiment.is_done(tmp_path, configs[0])
    assert not experiment.is_done(tmp_path, replace(configs[1], lr=0.2))


def test_grids_and_filters():
    mnist = grids.make_grid("paper-mnist", dataset="fashion-mnist")
    assert len(mnist) == 220 and len({c.setup_id() for c in mnist}) == 44
    assert {c.dataset for c in mnist} == {"fashion-mnist"}
    cifar = grids.make_grid("paper-cifar10")
    assert len(cifar) == 220 and {c.n for c in cifar} == {25} and max(c.steps for c in cifar) == 3000
    chosen = grids.apply_filters(mnist, grids.parse_filters(["rule=bulyan", "lr=0.5", "momentum=worker"]))
    assert len(chosen) == 2 * 5 and {c.f for c in chosen} == {12}
    baselines = [c for c in mnist if c.attack == "none"]
    assert len(baselines) == 4 * 5 and {c.honest for c in baselines} == {27, 39}
    with pytest.raises(ValueError, match="unknown field"):
        grids.parse_filters(["colour=red"])


def test_cli_quick_grid_and_report(tmp_path, capsys):
    out = tmp_path / "quick"
    args = ["grid", "quick", "--steps", "2", "--out", str(out), "--filter", "rule=median,average", "--no-progress"]
    assert cli.main(args + ["--report"]) == 0
    runs = sorted(p.name for p in (out / "run-json").iterdir())
    assert len(runs) == 3
    table = (out / "report" / "report.md").read_text()
    assert "| median |" in table
    assert any(p.suffix == ".png" for p in (out / "report").iterdir())
    assert cli.main(args) == 0  # resumes: nothing to do
    assert '"skipped": 3' in capsys.readouterr().out
    assert cli.main(["report", str(out), "--out", str(tmp_path / "r2"), "--no-plots"]) == 0
    assert (tmp_path / "r2" / "summary.json").exists()


def test_cli_run_on_cifar_python_batches(tmp_path, capsys):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in data.CIFAR10_TRAIN_BATCHES + [data.CIFAR10_TEST_BATCH]:
        with open(folder / name, "wb") as stream:
            pickle.dump(
                {b"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), b"labels": rng.integers(0, 10, 4).tolist()},
                stream,
            )
    code = cli.main(
        [
            "run",
            "--dataset",
            "cifar10",
            "--data-dir",
            str(tmp_path),
            "--model",
            "cifar-cnn",
            "--n",
            "5",
            "--f",
            "1",
            "--rule",
            "median",
            "--batch-size",
            "2",
            "--steps",
            "1",
            "--eval-every",
            "1",
            "--out",
            str(tmp_path / "out"),
            "--no-progress",
        ]
    )
    assert code == 0
    assert json.loads(capsys.readouterr().out)["run_id"].startswith("cifar10-canonical-n5-f1-median")


def test_cli_clear_error_on_missing_data(tmp_path, capsys):
    assert cli.main(["grid", "paper-mnist", "--data-dir", str(tmp_path), "--no-progress"]) == 2
    assert "were not found" in capsys.readouterr().err


def test_module_entry_point():
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    out = subprocess.run(
        [sys.executable, "-m", "byzagg.train", "grid", "quick", "--list"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0 and out.stdout.count("quick") == 0 and len(out.stdout.splitlines()) == 7

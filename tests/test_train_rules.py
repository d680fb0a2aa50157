"""The harness as a newcomer expects it (issue 12, point 3): every rule by name with its
parameters, output under runs/, no silent overwrite, one thread per process, clear errors
for missing folders."""

import inspect
import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import byzagg
from byzagg.train import cli, data, experiment, grids, paper_rules, report, rules
from byzagg.train.experiment import RunConfig

REPO = Path(__file__).resolve().parents[1]

TINY = RunConfig(
    dataset="mnist-synthetic",
    n=7,
    f=1,
    rule="median",
    attack="little",
    momentum="worker",
    batch_size=4,
    lr=0.1,
    steps=1,
    eval_every=1,
    preset="canonical",
)
# what a name needs to run (required parameters)
SPEC = {"centered_clipping": "centered_clipping:tau=1", "bucketing": "bucketing:s=2"}
CLI_TINY = ["--dataset", "mnist-synthetic", "--n", "7", "--f", "1", "--batch-size", "4", "--eval-every", "1"]


@pytest.fixture(scope="module")
def small_data():
    return data.synthetic("mnist-synthetic", train=64, test=32)


@pytest.fixture
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", byzagg.RULES + rules.PAPER_VARIANTS)
def test_every_rule_runs_one_step(name, small_data):
    config = replace(TINY, rule=SPEC.get(name, name))
    result = experiment.run(config, dataset=small_data)
    assert result["complete"] and len(result["study"]["loss"]) == 1
    assert torch.isfinite(torch.tensor(result["study"]["aggregate_norm"])).all()
    assert result["rule_spec"]["rule"] == ("average" if name in rules.PRE_AGGREGATIONS else name)


def test_parameter_table_matches_the_library_signatures():
    for name in byzagg.RULES:
        signature = set(inspect.signature(getattr(byzagg, name)).parameters) - set(rules.NOT_FROM_SPEC)
        assert signature == set(rules.PARAMS[name]), name
    assert set(inspect.signature(paper_rules.paper_krum).parameters) - {"G", "f"} == set(rules.PARAMS["paper_krum"])


def test_parameters_reach_the_rule():
    G = torch.randn(11, 20, generator=torch.Generator().manual_seed(3))
    f = 2
    torch.testing.assert_close(rules.build("krum:m=3")(G, f), byzagg.krum(G, f, m=3))
    assert not torch.equal(rules.build("krum:m=3")(G, f), rules.build("krum")(G, f))
    torch.testing.assert_close(
        rules.build("centered_clipping:tau=0.5,iters=4")(G, f), byzagg.centered_clipping(G, tau=0.5, iters=4)
    )
    torch.testing.assert_close(rules.build("brsgd:beta=0.3")(G, f), byzagg.brsgd(G, beta=0.3))
    stateful = rules.build("centered_clipping:tau=0.5,center=previous")
    first = stateful(G, f)
    torch.testing.assert_close(first, byzagg.centered_clipping(G, tau=0.5))
    torch.testing.assert_close(stateful(G, f), byzagg.centered_clipping(G, tau=0.5, center=first))
    assert not torch.equal(stateful(G, f), first)
    torch.testing.assert_close(rules.build("nnm+krum")(G, f), byzagg.krum(byzagg.nnm(G, f), f))
    # bucketing: permutations from the run's seed, reproducible
    bucketed = rules.build("bucketing:s=2+median", seed=4)(G, f)
    expected = byzagg.median(byzagg.bucketing(G, 2, generator=torch.Generator().manual_seed(30_004)))
    torch.testing.assert_close(bucketed, expected)
    # the paper preset keeps its variants for the four names of the grids; others are the library's
    torch.testing.assert_close(rules.build("krum", "paper")(G, f), paper_rules.paper_krum(G, f))
    torch.testing.assert_close(rules.build("paper_krum:m=2")(G, f), paper_rules.paper_krum(G, f, m=2))
    torch.testing.assert_close(rules.build("multi_krum", "paper")(G, f), byzagg.multi_krum(G, f))


def test_specifications_are_canonical_and_validated():
    assert rules.canonical("centered_clipping: iters=3, tau=10.0") == "centered_clipping:iters=3,tau=10"
    assert rules.canonical("nnm") == "nnm+average"
    assert rules.canonical("brsgd:threshold=1e+3") == "brsgd:threshold=1000"
    assert RunConfig(rule="centered_clipping:tau=10,iters=3") == RunConfig(rule="centered_clipping:iters=3,tau=10.0")
    for spec, message in [
        ("foo", "unknown rule 'foo'; library rules: average, median, trimmed_mean"),
        ("krum:x=1", "unknown parameter 'x'; krum takes: m"),
        ("krum:m=1.5", "m must be an integer"),
        ("centered_clipping", "missing parameter tau"),
        ("median+krum", "median is not a pre-aggregation"),
        ("brsgd:beta=nan", "beta must be a number"),
        ("centered_clipping:tau=1,center=mean", "center must be one of zero, previous"),
    ]:
        with pytest.raises(ValueError, match=message):
            rules.canonical(spec)
    # requirements on n and f: the library's message, before any training
    with pytest.raises(ValueError, match="bulyan"):
        replace(TINY, rule="bulyan", f=2).check()
    with pytest.raises(ValueError, match="tau"):
        replace(TINY, rule="centered_clipping:tau=-1").check()


def run_cli(tmp_path, monkeypatch, *args):
    monkeypatch.chdir(tmp_path)
    return cli.main(["run", *CLI_TINY, "--no-progress", *args])


def test_run_takes_any_rule_with_parameters_into_runs(tmp_path, monkeypatch, capsys, keep_threads):
    assert run_cli(tmp_path, monkeypatch, "--rule", "trimmed_mean", "--steps", "1") == 0
    assert run_cli(tmp_path, monkeypatch, "--rule", "centered_clipping:tau=10,iters=2", "--steps", "1") == 0
    files = sorted(p.name for p in (tmp_path / "runs" / "single" / "run-json").iterdir())
    assert files == [
        "mnist-synthetic-canonical-n7-f1-centered_clipping@iters=2,tau=10-little-worker-lr0.5-t1-s1.json",
        "mnist-synthetic-canonical-n7-f1-trimmed_mean-little-worker-lr0.5-t1-s1.json",
    ]
    stored = json.loads((tmp_path / "runs" / "single" / "run-json" / files[0]).read_text())
    assert stored["config"]["rule"] == "centered_clipping:iters=2,tau=10"
    assert stored["rule_spec"] == {
        "pre": [],
        "rule": "centered_clipping",
        "params": {"iters": 2, "tau": 10.0},
        "effective": [
            {"name": "centered_clipping", "runs": "centered_clipping", "params": {"center": "zero", "iters": 2, "tau": 10.0}}
        ],
    }
    assert not (tmp_path / "results").exists()
    capsys.readouterr()
    assert run_cli(tmp_path, monkeypatch, "--rule", "no_such_rule") == 2
    assert "unknown rule 'no_such_rule'; library rules: average, median, trimmed_mean" in capsys.readouterr().err


def test_grid_default_out_is_runs(tmp_path, monkeypatch, keep_threads):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["grid", "quick", "--steps", "1", "--filter", "rule=average", "--no-progress"]) == 0
    (done,) = (tmp_path / "runs" / "quick-mnist-embedded" / "run-json").iterdir()
    assert done.name == "mnist-embedded-paper-n51-f12-average-none-server-lr0.5-t1-s1.json"
    assert not (tmp_path / "results").exists()


def test_different_steps_never_replace_a_run(tmp_path, monkeypatch, capsys, keep_threads):
    assert run_cli(tmp_path, monkeypatch, "--rule", "median", "--steps", "2") == 0
    folder = tmp_path / "runs" / "single" / "run-json"
    (longer,) = folder.iterdir()
    stamp = longer.stat().st_mtime_ns
    assert run_cli(tmp_path, monkeypatch, "--rule", "median", "--steps", "1") == 0
    assert len(list(folder.iterdir())) == 2 and longer.stat().st_mtime_ns == stamp
    assert json.loads(longer.read_text())["config"]["steps"] == 2
    # the same config again: found, not rerun
    capsys.readouterr()
    assert run_cli(tmp_path, monkeypatch, "--rule", "median", "--steps", "2") == 0
    assert "done already" in capsys.readouterr().out and longer.stat().st_mtime_ns == stamp


def test_a_file_with_another_config_is_refused_unless_overwrite(tmp_path, monkeypatch, capsys, keep_threads):
    assert run_cli(tmp_path, monkeypatch, "--rule", "median", "--steps", "1") == 0
    (path,) = (tmp_path / "runs" / "single" / "run-json").iterdir()
    stored = json.loads(path.read_text())
    stored["config"]["mu"] = 0.5  # a field the run id does not name
    path.write_text(json.dumps(stored))
    capsys.readouterr()
    assert run_cli(tmp_path, monkeypatch, "--rule", "median", "--steps", "1") == 2
    error = capsys.readouterr().err
    assert "holds another run: mu=0.5 (this run: 0.9)" in error and "--overwrite" in error
    assert json.loads(path.read_text())["config"]["mu"] == 0.5
    assert run_cli(tmp_path, monkeypatch, "--rule", "median", "--steps", "1", "--overwrite") == 0
    assert json.loads(path.read_text())["config"]["mu"] == 0.9

    # a grid refuses before running anything
    config = replace(TINY, seed=1, lr=0.5)
    experiment.write_json_atomic(experiment.result_path(tmp_path / "g", config), stored)
    monkeypatch.setattr(experiment, "run", lambda *a, **k: pytest.fail("ran despite the conflict"))
    with pytest.raises(experiment.RunExistsError, match="would be replaced by a different run"):
        experiment.run_grid([config], str(tmp_path / "g"), progress=False)


def test_committed_results_are_recognised():
    out = REPO / "results" / "quick-mnist-embedded"
    configs = grids.make_grid("quick")
    assert all(experiment.is_done(out, c) for c in configs)  # files under the legacy run ids
    assert not experiment.is_done(out, replace(configs[0], steps=30))
    assert experiment.conflict(out, replace(configs[0], steps=30)) is None  # another file: nothing replaced
    rows = report.summarise(report.load_results(out))
    assert len(rows) == 7 and {r["steps"] for r in rows} == {150}


def test_legacy_and_new_files_of_one_setup_group_together(tmp_path):
    source = REPO / "results" / "quick-mnist-embedded" / "run-json"
    (legacy,) = [p for p in source.iterdir() if "-median-little-worker-" in p.name]
    (tmp_path / "run-json").mkdir()
    shutil.copy(legacy, tmp_path / "run-json" / legacy.name)
    result = json.loads(legacy.read_text())
    config = replace(RunConfig.from_dict(result["config"]), seed=2)
    experiment.write_json_atomic(experiment.result_path(tmp_path, config), result | {"config": config.to_dict()})
    (row,) = report.summarise(report.load_results(tmp_path))
    assert row["seeds"] == [1, 2]


def test_one_thread_by_default(tmp_path, monkeypatch, capsys, keep_threads):
    parser = cli.build_parser()
    assert parser.parse_args(["run"]).threads == 1
    assert parser.parse_args(["grid", "quick"]).threads == 1
    assert parser.parse_args(["grid", "quick", "--threads", "auto"]).threads is None
    torch.set_num_threads(2)
    assert run_cli(tmp_path, monkeypatch, "--steps", "1", "--rule", "average") == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 1 and torch.get_num_threads() == 1
    assert run_cli(tmp_path, monkeypatch, "--steps", "1", "--rule", "median", "--threads", "2") == 0
    assert json.loads(capsys.readouterr().out)["threads"] == 2


def test_missing_folders_are_errors(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli.main(["report", str(missing)]) == 2
    assert "nope: no such folder" in capsys.readouterr().err
    assert not missing.exists()
    (tmp_path / "empty").mkdir()
    assert cli.main(["report", str(tmp_path / "empty")]) == 2
    assert "no complete run file" in capsys.readouterr().err
    assert not (tmp_path / "empty" / "report").exists()
    assert cli.main(["run", *CLI_TINY, "--data-dir", str(missing), "--no-progress"]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert cli.main(["grid", "quick", "--data-dir", str(missing), "--no-progress"]) == 2
    assert "no such folder" in capsys.readouterr().err
    with pytest.raises(data.DatasetError, match="does not exist"):
        data.load_dataset("mnist", missing)


def test_run_files_state_the_parameters_a_rule_ran_with():
    """describe(spec, preset)["effective"]: every specification parameter with the value the
    call gets, the function's defaults filled in, and the function that runs under the preset."""
    (brsgd,) = rules.describe("brsgd", "canonical")["effective"]
    assert brsgd == {"name": "brsgd", "runs": "brsgd", "params": {"beta": 0.5, "threshold": "inf"}}
    (brsgd,) = rules.describe("brsgd:beta=0.25,threshold=3", "canonical")["effective"]
    assert brsgd["params"] == {"beta": 0.25, "threshold": 3.0}
    (krum,) = rules.describe("krum", "paper")["effective"]
    assert krum == {"name": "krum", "runs": "paper_krum", "params": {"m": None}}
    (median,) = rules.describe("median", "paper-text")["effective"]
    assert median["runs"] == "text_median"
    bucketing, gm = rules.describe("bucketing:s=2+geometric_median", "canonical")["effective"]
    assert bucketing["params"] == {"s": 2}
    assert gm["params"] == {"eps": 1e-8, "max_iter": 100, "tol": 1e-7}
    (one_minus_p,) = rules.describe("krum-1p", "canonical")["effective"]
    assert one_minus_p["params"] == {"m": 1, "power": 0.5}
    # every name of the harness has its parameters' defaults on record (a rule whose
    # function lost a default would show up here as a missing key)
    for name in rules.NAMES:
        spec = {"centered_clipping": "centered_clipping:tau=1", "bucketing": "bucketing:s=2"}.get(name, name)
        (*_, final) = rules.describe(spec, "canonical")["effective"]
        optional = set(rules.PARAMS[name]) - set(rules.REQUIRED.get(name, ()))
        assert optional <= set(final["params"]), name
    assert "effective" not in rules.describe("brsgd")

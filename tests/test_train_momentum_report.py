"""momentum_report: the figures of the momentum sections of docs/reproduction.md, computed on
small synthetic run files against values worked out by hand, and the doc kept in step with
the committed run files."""

import json
import math
from pathlib import Path

import pytest

from byzagg.train import momentum_report as mr
from byzagg.train.experiment import FORMAT

ROOT = Path(__file__).resolve().parent.parent


# --- statistics -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "df,quantile",  # two-sided 95% critical values of Student's t (standard tables)
    [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (5, 2.5706), (10, 2.2281), (30, 2.0423)],
)
def test_student_t_quantile_matches_the_tables(df, quantile):
    assert mr.student_t_quantile(0.975, df) == pytest.approx(quantile, abs=5e-5)
    assert mr.student_t_quantile(0.025, df) == pytest.approx(-quantile, abs=5e-5)
    assert mr.student_t_cdf(0.0, df) == pytest.approx(0.5)


def test_student_t_against_scipy_when_available():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 4, 7, 12):
        for t in (-3.0, -0.4, 0.7, 2.5):
            assert mr.student_t_cdf(t, df) == pytest.approx(stats.t.cdf(t, df), abs=1e-12)


def test_t_interval_on_a_known_sample():
    # 1..5: mean 3, s = sqrt(2.5), half-width t_{0.975,4} s / sqrt(5) = 2.776445 * 0.707107 = 1.963243
    ci = mr.t_interval([1, 2, 3, 4, 5])
    assert ci["mean"] == pytest.approx(3.0)
    assert ci["half"] == pytest.approx(1.963243, abs=1e-6)
    assert (ci["low"], ci["high"]) == pytest.approx((1.036757, 4.963243), abs=1e-6)
    assert ci["k"] == 5
    assert math.isinf(mr.t_interval([2.0])["half"])


def test_kappa_and_the_bounds():
    # kappa(51, 12) = 39 + (12 * 37 + 144 * 38) / 25 = 39 + 5916 / 25
    assert mr.kappa(51, 12) == pytest.approx(39 + 5916 / 25)
    assert mr.ratio_bound("median", 51, 12) == pytest.approx(1 / 39)
    assert mr.ratio_bound("krum", 51, 12) == pytest.approx(1 / (2 * (39 + 5916 / 25)))
    # the original code's expression is the paper's kappa rearranged
    for n, f in [(51, 12), (51, 24), (25, 5), (25, 11), (11, 2)]:
        assert mr.ratio_bound("bulyan", n, f, "code") == pytest.approx(mr.ratio_bound("bulyan", n, f))
    assert mr.longest_true_stretch([True, False, True, True, True, False, True]) == 3


# --- synthetic run files ------------------------------------------------------------------------


def run(rule, attack, momentum, seed, accuracy, ratio=None, curvature=None, loss=None, f=1, lr=0.5, env=None):
    steps = 60
    ratio = ratio if ratio is not None else [1.0] * steps
    steps = len(ratio)
    return {
        "format": FORMAT,
        "complete": True,
        "run_id": f"syn-{rule}-{attack}-{momentum}-{seed}",
        "setup_id": f"syn-{rule}-{attack}-{momentum}",
        "config": {
            "dataset": "mnist-synthetic", "model": "mnist-mlp", "preset": "paper", "n": 5, "f": f, "rule": rule,
            "attack": attack, "momentum": momentum, "mu": 0.9, "batch_size": 8, "lr": lr, "lr_decay": None,
            "lr_decay_every": 1, "l2": 1e-4, "clip": 2.0, "clip_mode": None, "steps": steps, "eval_every": 5,
            "seed": seed,
        },
        "eval": {"step": list(range(0, 5 * len(accuracy), 5)), "accuracy": accuracy},
        "study": {
            "step": list(range(steps)),
            "vn_ratio_submitted": ratio,
            "vn_ratio_sampled": [2 * r for r in ratio],
            "curvature": curvature if curvature is not None else [0.0] * steps,
            "loss": loss if loss is not None else [1.0] * steps,
        },
        "timing": {"wall_s": 1.0, "steps_per_s": 60.0},
        "environment": env or {"torch": "2.13.0+cpu", "threads": 1},
    }


def write(folder: Path, runs):
    (folder / "run-json").mkdir(parents=True)
    for r in runs:
        (folder / "run-json" / f"{r['run_id']}.json").write_text(json.dumps(r))
    return mr.Runs.load(folder)


@pytest.fixture
def synthetic(tmp_path):
    server = [0.5, 0.6, 0.7]
    worker = [0.6, 0.8, 0.9]
    runs = []
    for seed in (1, 2, 3):
        runs.append(run("average", "none", "server", seed, [0.1, 0.9]))
        runs.append(run("median", "little", "server", seed, [0.1, server[seed - 1], 0.2]))
        runs.append(run("median", "little", "worker", seed, [worker[seed - 1], 0.3]))
    return write(tmp_path / "syn", runs)


def test_gains_with_their_interval(synthetic):
    (row,) = mr.gains(synthetic)
    assert (row["rule"], row["attack"], row["f"], row["lr"]) == ("median", "little", 1, 0.5)
    assert row["seeds"] == [1, 2, 3]
    assert row["server"][0] == pytest.approx(0.6) and row["worker"][0] == pytest.approx(2.3 / 3)
    assert row["baseline"] == pytest.approx((0.9, 0.0))
    assert row["loss_server"] == pytest.approx(0.3) and row["loss_worker"] == pytest.approx(0.9 - 2.3 / 3)
    # per-seed differences 0.1, 0.2, 0.2: mean 1/6, s = 0.057735, t_{0.975,2} = 4.302653
    assert row["gain"]["mean"] == pytest.approx(1 / 6)
    assert row["gain"]["half"] == pytest.approx(4.302653 * 0.0577350 / math.sqrt(3), abs=1e-6)
    assert not row["within_noise"]
    drop = mr.drop_reduction([row])
    assert drop["effective_setups"] == 1
    assert drop["pooled"] == pytest.approx(0.3 / (0.9 - 2.3 / 3))
    assert drop["per_setup"][0]["ratio"] == pytest.approx(0.3 / (0.9 - 2.3 / 3))


def test_early_ratio_is_the_geometric_mean_over_steps_1_to_50(tmp_path):
    ratios = {1: [1000.0] + [2.0] * 50 + [1000.0] * 9, 2: [1000.0] + [8.0] * 50 + [1000.0] * 9}
    runs = write(tmp_path / "r", [run("krum", "little", "server", s, [0.5], ratio=ratios[s]) for s in (1, 2)])
    assert mr.early_ratio(runs.get(1, "krum", "little", "server", "lr0.5")) == pytest.approx(4.0)


def test_requirement_counts(tmp_path):
    # median, n = 5, f = 1: bound 1 / (n - f) = 0.25
    ratio = [1, 0.1, 0.1, 1, 0.1, 0.1, 0.1, 0.1, 0.1, 1]
    loss = [2, 3, 3, 3, 3, 3, 3, 1, 3, 3]
    runs = write(
        tmp_path / "q",
        [
            run("median", "little", "server", 1, [0.5], ratio=ratio, loss=loss),
            run("median", "little", "worker", 1, [0.5], ratio=[1.0] * 10),
            run("krum", "little", "worker", 1, [0.5], ratio=[0.1] * 10),  # krum's bound is 1/(2 kappa): not met
            run("average", "none", "server", 1, [0.5], ratio=[0.01] * 10),  # not attacked: not counted
        ],
    )
    req = mr.requirement(runs)
    assert req["runs"] == 3
    assert req["runs_with_a_step"] == 1
    assert req["steps"] == 30 and req["steps_held"] == 7
    assert req["longest_consecutive"] == 5 and req["most_steps_in_a_run"] == 7
    assert req["runs_with_a_step_loss_below_initial"] == 1  # step 7: ratio 0.1, loss 1 <= 2
    assert req["runs_with_a_step_by_rule"] == {"krum": 0, "median": 1}
    assert req["min_ratio_over_bound_by_rule"]["median"] == pytest.approx(0.4)


def test_st_phases(tmp_path):
    s = [0, 1, 2, 3, 2, -1, 1, -1, -1, 1]
    runs = write(tmp_path / "s", [run("krum", "little", "worker", 1, [0.5], ratio=[1.0] * 10, curvature=s)])
    (phase,) = mr.st_phases(runs).values()
    # from step 1: 1, 2, 3, 2 positive (4 steps), peak at step 3, rising on 2 of 3 steps
    assert phase["positive_window_median"] == 4 and phase["peak_step_median"] == 3
    assert phase["increasing_fraction_median"] == pytest.approx(2 / 3)
    # then -1, 1, -1, -1, 1: 2/5 positive, 3 sign changes in 4 transitions
    assert phase["after_positive_fraction_median"] == pytest.approx(0.4)
    assert phase["after_sign_change_rate_median"] == pytest.approx(0.75)


def test_provenance_says_not_recorded(tmp_path):
    env_new = {"cpu_model": "CPU X", "cpu_isa": "avx2", "torch": "2.13.0+cpu", "torch_git": "abc", "threads": 1}
    runs = write(
        tmp_path / "p",
        [run("krum", "little", "worker", 1, [0.5]), run("krum", "little", "worker", 2, [0.5], env=env_new)],
    )
    rows = mr.provenance(runs)["rows"]
    assert ["CPU X", "avx2", "2.13.0+cpu", "abc", "1", 1] in rows
    assert ["not recorded", "not recorded", "2.13.0+cpu", "not recorded", "1", 1] in rows


def test_byzagg_repro_report_shows_the_provenance(tmp_path, synthetic):
    from byzagg.train import report

    report.make_report(tmp_path / "syn", tmp_path / "out", plots=False)
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Provenance" in text
    assert "| not recorded | not recorded | 2.13.0+cpu | not recorded | 1 | 9 |" in text


def test_compare_presets_pairs_seeds(tmp_path, synthetic):
    other = write(
        tmp_path / "o",
        [run("median", "little", m, s, [a]) for s in (1, 2) for m, a in (("server", 0.55), ("worker", 0.85))],
    )
    (row,) = mr.compare_presets(synthetic, other)
    assert row["server"]["seeds"] == [1, 2]
    # seeds 1, 2: paper 0.5, 0.6 -> 0.55, 0.55: differences +0.05, -0.05
    assert row["server"]["difference"]["mean"] == pytest.approx(0.0, abs=1e-12)
    assert row["worker"]["reference"] == pytest.approx(0.7) and row["worker"]["other"] == pytest.approx(0.85)
    assert row["other_gain"]["mean"] == pytest.approx(0.3)


def test_fill_replaces_between_markers():
    doc = "a\n<!-- momentum-report:x -->\nold\nlines\n<!-- /momentum-report:x -->\nb\n"
    assert mr.fill(doc, {"x": "new"}) == "a\n<!-- momentum-report:x -->\nnew\n<!-- /momentum-report:x -->\nb\n"
    with pytest.raises(ValueError, match="markers"):
        mr.fill("no markers", {"x": "new"})


@pytest.mark.skipif(not (ROOT / mr.FASHION).is_dir(), reason="committed run files absent")
def test_the_doc_is_generated_from_the_committed_run_files():
    blocks = mr.render(mr.compute(ROOT))
    doc = (ROOT / mr.DOC).read_text()
    assert mr.fill(doc, blocks) == doc, "run python -m byzagg.train.momentum_report --write"


# --- throughput (CPU) --------------------------------------------------------------------------


def test_read_json_plain_and_gzip(tmp_path):
    import gzip

    (tmp_path / "a.json").write_text(json.dumps({"x": [1, 2.5]}))
    with gzip.open(tmp_path / "b.json.gz", "wt") as stream:
        json.dump({"y": "z"}, stream)
    assert mr.read_json(tmp_path / "a.json") == {"x": [1, 2.5]}
    assert mr.read_json(tmp_path / "b.json.gz") == {"y": "z"}
    assert mr.read_json(tmp_path / "b.json") == {"y": "z"}  # only the gzip'd copy is there


def profile_file(f=1):
    return {
        "setup": {
            "dataset": "mnist-synthetic",
            "preset": "paper",
            "f": f,
            "threads": "1",
            "steps": 40,
            "momentum": "worker",
        },
        "rows": [
            {
                "rule": "average",
                "steps_per_s": 20.0,
                "ms_per_step": 50.0,
                "eval_ms": 40.0,
                "split_ms": {"data": 10.0, "gradients": 25.0, "momentum_attack": 10.0, "aggregation": 5.0},
            },
            {
                "rule": "krum",
                "steps_per_s": 12.5,
                "ms_per_step": 80.0,
                "eval_ms": 44.4,
                "split_ms": {"data": 10.0, "gradients": 40.0, "momentum_attack": 10.0, "aggregation": 20.0},
            },
        ],
        "environment": {"torch": "2.13.0+cpu", "threads": 1},
        "loadavg": [1.25, 1.0, 0.75],
    }


def test_profile_summary_shares():
    p = mr.profile_summary(profile_file())
    average, krum = p["rows"]
    assert average["share"]["aggregation"] == pytest.approx(0.1) and krum["share"]["aggregation"] == pytest.approx(0.25)
    assert p["aggregation_share"] == pytest.approx((0.1, 0.25))
    assert p["gradients_share"] == pytest.approx((0.5, 0.5))  # 25/50 and 40/80
    assert krum["total_ms"] == 80.0 and krum["eval_ms"] == pytest.approx(44.4)


def timing_entry(wall, ran, total, start, end, jobs=2, grid="paper-mnist"):
    return {
        "grid": grid,
        "total": total,
        "skipped": total - ran,
        "ran": ran,
        "wall_s": wall,
        "out": "/elsewhere",
        "cpu_count": 2,
        "loadavg_start": start,
        "loadavg_end": end,
        "filters": [],
        "jobs": jobs,
    }


def test_grid_timing_takes_the_last_timing():
    entries = [
        timing_entry(999.0, 10, 10, [9, 9, 9], [9, 9, 9]),
        timing_entry(1800.0, 40, 40, [0.5, 1.0, 1.5], [2.0, 2.5, 3.0]),
    ]
    g = mr.grid_timing(entries, total_runs=200)
    assert g["timings"] == 2 and g["wall_s"] == 1800.0 and g["ran"] == 40
    assert g["wall_min"] == pytest.approx(30.0)
    assert g["target_margin"] == pytest.approx(2.0)  # 3600 / 1800
    assert g["extrapolated_s"] == pytest.approx(9000.0)  # 1800 s x 200 / 40
    assert g["load_range"] == (0.5, 3.0)
    assert "extrapolated_s" not in mr.grid_timing(entries)


def test_run_walls_and_grid_shape():
    results = [{"timing": {"wall_s": w}} for w in (1.0, 10.0, 2.0)]
    assert mr.run_walls(results) == {"runs": 3, "sum_s": 13.0, "median_s": 2.0}
    configs = [{"rule": r, "f": 1, "seed": s} for r in ("krum", "median") for s in (2, 1)]
    assert mr.grid_shape(configs) == {"runs": 4, "setups": 2, "seeds": [1, 2]}


def test_same_value_is_bit_for_bit():
    assert mr.same_value({"a": [1.0, math.nan, "x"]}, {"a": [1.0, math.nan, "x"]})
    assert not mr.same_value(0.1 + 0.2, 0.3)
    assert not mr.same_value(1.0, math.nextafter(1.0, 2.0))
    assert not mr.same_value(1, 1.0)
    assert not mr.same_value([1.0], [1.0, 1.0])
    assert not mr.same_value({"a": 1}, {"b": 1})


def test_bit_identity_ignores_timing_and_environment_only():
    reference = [run("krum", "little", m, s, [0.5, 0.75]) for m in ("server", "worker") for s in (1, 2)]
    reference[0]["study"]["loss"][3] = math.nan
    other = json.loads(json.dumps(reference))  # the same runs, read again
    other[0]["timing"]["wall_s"] = 99.0
    other[0]["environment"]["threads"] = 2
    other[1]["eval"]["accuracy"][1] = math.nextafter(0.75, 1.0)  # one ulp off
    other[2]["study"]["curvature"][0] = 1e-30
    other[2]["config"]["mu"] = 0.99
    other.append(run("median", "little", "server", 1, [0.5]))  # not in the reference
    ident = mr.bit_identity(reference, other)
    assert ident["runs"] == 5 and ident["compared"] == 4
    assert ident["identical"] == 2  # run 0 (timing, environment, NaN loss) and run 3
    assert ident["differing"] == {other[1]["run_id"]: ["eval"], other[2]["run_id"]: ["config", "study"]}
    assert ident["missing"] == [other[4]["run_id"]]


def test_throughput_blocks_from_synthetic_files(tmp_path):
    import gzip

    grid_runs = [run("krum", "little", "worker", s, [0.5]) for s in (1, 2)]
    for r in grid_runs:
        r["dimension"], r["data"] = 100, {"train": 60, "test": 20}
    grid_runs[0]["timing"]["wall_s"], grid_runs[1]["timing"]["wall_s"] = 3.0, 5.0
    write(tmp_path / mr.FASHION, grid_runs)
    (tmp_path / mr.FASHION / "grid.json").write_text(json.dumps({"jobs": 1, "runs": [r["config"] for r in grid_runs]}))
    (tmp_path / mr.FASHION / "grid-timing.json").write_text(
        json.dumps([timing_entry(8.0, 1, 2, [1, 1, 1], [1, 1, 1], jobs=1)])
    )
    profile = tmp_path / mr.PROFILE
    profile.parent.mkdir(parents=True)
    with gzip.open(profile.with_name(profile.name + ".gz"), "wt") as stream:  # only the gzip'd copy
        json.dump(profile_file(), stream)
    full = tmp_path / mr.TIMING_FULL
    full.mkdir(parents=True)
    (full / "grid-timing.json").write_text(json.dumps([timing_entry(1200.0, 2, 2, [0.25, 1, 1], [1.75, 2.0, 2.0])]))
    (full / "grid.json").write_text(json.dumps({"jobs": 2, "runs": [r["config"] for r in grid_runs]}))
    slice_runs = json.loads(json.dumps(grid_runs[:1]))
    slice_runs[0]["timing"]["wall_s"] = 7.0
    write(tmp_path / mr.SLICE, slice_runs)
    (tmp_path / mr.SLICE / "grid-timing.json").write_text(
        json.dumps([timing_entry(30.0, 1, 1, [3.5, 4, 4], [6, 8, 7])])
    )
    write(tmp_path / mr.QUICK, [run("average", "none", "server", 1, [0.5])])
    (tmp_path / mr.QUICK / "grid-timing.json").write_text(
        json.dumps([timing_entry(120.0, 1, 1, [4.4, 4, 4], [4, 4, 4], grid="quick")])
    )

    t = mr.throughput(tmp_path)
    # forward pass: 2 x 100 parameters x 8 samples x (5 - 1) workers = 6400 FLOP
    assert t["profile_model"]["forward_flop"] == 6400.0 and t["profile_model"]["workers"] == 4
    assert t["grid_walls"] == {"runs": 2, "sum_s": 8.0, "median_s": 4.0}
    assert t["full_has_runs"] is False and "full_identity" not in t
    assert t["slice"]["extrapolated_s"] == pytest.approx(60.0)  # 30 s for 1 run, the grid has 2
    assert t["slice_identity"]["identical"] == 1
    blocks = mr.render_throughput({"throughput": t})
    assert "| krum | 12.5 | 80.0 | 10.0 | 40.0 | 10.0 | 20.0 | - | - | 44 |" in blocks["throughput-profile"]
    assert "10 to 25% of it" in blocks["throughput-profile"]
    assert "**measured on an idle 2-core machine: 1200 s = 20.0 min**" in blocks["throughput-grid"]
    assert (
        "margin of 3.0x" in blocks["throughput-grid"]
        and "load average 0.2 at the start, 1.8 at the end" in blocks["throughput-grid"]
    )
    assert "are not committed" in blocks["throughput-identity"]
    assert f"1 of the 1 runs in `{mr.SLICE}/` are bit-for-bit identical" in blocks["throughput-identity"]
    assert "add up to 0.00 h (4.0 s median per run)" in blocks["throughput-earlier"]
    assert (
        "load average 3.5-8.0" in blocks["throughput-earlier"]
        and "~1 min extrapolated to the 2 runs" in blocks["throughput-earlier"]
    )
    assert "**120 s**" in blocks["throughput-quick"] and "20% of the 10-minute budget" in blocks["throughput-quick"]

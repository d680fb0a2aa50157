"""The report on small synthetic run files: the curvature (s_t) figure and its place in report.md."""

from dataclasses import replace

import numpy as np
import pytest

from byzagg.train import experiment, report
from byzagg.train.experiment import RunConfig

STEPS = 12
SEEDS = (1, 2)
RULES = ("median", "krum")


def curvature_series(rule: str, momentum: str, seed: int) -> np.ndarray:
    """Made-up s_t that no other recorded series has: signed, spanning four decades, different
    per rule, placement and seed."""
    steps = np.arange(STEPS)
    scale = 10.0 ** np.linspace(-2, 2, STEPS) * (1 + 0.1 * seed) * (2 if rule == "krum" else 1)
    return scale * (np.where(steps % 3 == 0, -1.0, 1.0) if momentum == "worker" else 1.0)


def synthetic_run(config: RunConfig) -> dict:
    rng = np.random.default_rng(config.seed)
    study = {
        "step": list(range(STEPS)),
        "vn_ratio_sampled": (1 + rng.random(STEPS)).tolist(),
        "vn_ratio_submitted": (0.5 + rng.random(STEPS)).tolist(),
    }
    if config.attack != "none":
        study["curvature"] = curvature_series(config.rule, config.momentum, config.seed).tolist()
    else:
        study["curvature"] = np.zeros(STEPS).tolist()
    return {
        "format": experiment.FORMAT,
        "complete": True,
        "run_id": config.run_id(),
        "setup_id": config.setup_id(),
        "key": config.key(),
        "config": config.to_dict(),
        "eval": {"step": [0, STEPS // 2, STEPS], "accuracy": (0.1 + 0.8 * rng.random(3)).tolist()},
        "study": study,
        "timing": {"wall_s": 1.0, "steps_per_s": float(STEPS)},
    }


@pytest.fixture
def synthetic_runs(tmp_path):
    """Run files of one attacked group (two rules x both placements x two seeds) and its baseline."""
    base = RunConfig(dataset="mnist-synthetic", n=7, f=1, attack="little", lr=0.1, steps=STEPS, preset="paper")
    configs = [
        replace(base, rule=rule, momentum=momentum, seed=seed)
        for rule in RULES
        for momentum in ("server", "worker")
        for seed in SEEDS
    ]
    configs += [replace(base, rule="average", attack="none", seed=seed) for seed in SEEDS]
    for config in configs:
        experiment.write_json_atomic(experiment.result_path(tmp_path / "runs", config), synthetic_run(config))
    return tmp_path / "runs"


def test_report_writes_the_curvature_figure_and_shows_it(synthetic_runs, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    saved = {}
    real_savefig = Figure.savefig

    def recording_savefig(fig, path, *args, **kwargs):
        saved[str(path)] = [
            {
                "title": ax.get_title(),
                "ylabel": ax.get_ylabel(),
                "yscale": ax.get_yscale(),
                "lines": [np.asarray(line.get_ydata(), dtype=float) for line in ax.get_lines()],
            }
            for ax in fig.axes
        ]
        return real_savefig(fig, path, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    out = tmp_path / "report"
    summary = report.make_report(synthetic_runs, out)

    name = "curvature-mnist-synthetic-paper-f1-little-lr0.1.png"
    path = out / name
    assert str(path) in summary["figures"]
    assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (out / "report.md").read_text()
    assert f"]({name})" in markdown
    assert markdown.index("## Figures") < markdown.index(f"]({name})")
    # the accuracy and ratio figures are shown too, and every shown figure exists
    for kind in ("accuracy", "ratio"):
        shown = f"{kind}-mnist-synthetic-paper-f1-little-lr0.1.png"
        assert f"]({shown})" in markdown and (out / shown).exists()

    # what the figure plots: per rule, the mean over seeds of s_t, server and worker momentum
    assert "s_t" in saved[str(path)][0]["ylabel"]
    panels = {panel["title"]: panel for panel in saved[str(path)]}
    assert set(panels) == set(RULES)
    for rule, panel in panels.items():
        assert panel["yscale"] == "symlog"  # signed and spanning four decades
        for momentum in ("server", "worker"):
            expected = np.mean([curvature_series(rule, momentum, seed) for seed in SEEDS], axis=0)
            assert any(
                line.shape == expected.shape and np.allclose(line, expected) for line in panel["lines"]
            ), f"the mean s_t of {rule} with {momentum} momentum is not in the figure"


def test_report_without_plots_shows_no_figures(synthetic_runs, tmp_path):
    out = tmp_path / "report"
    summary = report.make_report(synthetic_runs, out, plots=False)
    assert summary["figures"] == []
    markdown = (out / "report.md").read_text()
    assert "## Figures" not in markdown and ".png" not in markdown


def test_value_scale():
    assert report.value_scale([np.array([1.0, 5.0, 20.0])]) == ("linear", {})
    assert report.value_scale([np.array([0.01, 100.0])]) == ("log", {})
    assert report.value_scale([np.array([0.0, 0.01, 100.0])])[0] == "symlog"  # zero has no log
    name, options = report.value_scale([np.array([-0.01, 0.0, 1.0, 100.0])])
    assert name == "symlog" and options["linthresh"] in (0.01, 0.1, 1.0)  # a power of ten
    assert report.value_scale([np.zeros(3)]) == ("linear", {})

"""The resilience-coefficient study (byzagg/train/resilience.py, issue 17)."""

import gzip
import json
import math

import pytest
import torch

from byzagg.train import cli
from byzagg.train import resilience as R


def cloud(m, d, seed=0):
    return R._gaussian(m, d, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("radius", [10.0, 1e3, 1e5])
def test_search_finds_the_mean_unbounded(radius):
    n, f = 11, 2
    H = cloud(n - f, 5)
    objective = R.Objective("average", H, f)
    generator = torch.Generator().manual_seed(0)
    found = R.optimise_byzantine(objective, generator, radius=radius, es_iters=20, ascent_steps=3)
    # the largest lambda of the mean with rows within `radius` diameters: f * radius / n
    assert found.value == pytest.approx(f * radius / n, rel=1e-6)


def test_mean_lambda_grows_without_limit():
    H = cloud(9, 3)
    values = []
    for r in (1e1, 1e2, 1e3, 1e4):
        objective = R.Objective("average", H, 2)
        found = R.optimise_byzantine(objective, torch.Generator().manual_seed(1), radius=r, es_iters=10, ascent_steps=0)
        values.append(found.value)
    assert all(b > 9 * a for a, b in zip(values, values[1:]))


@pytest.mark.parametrize("rule", ["mda", "trimmed_mean", "geometric_median", "krum", "median", "meamed"])
@pytest.mark.parametrize("n,f", [(11, 2), (15, 5), (17, 4)])
def test_honest_only_input_within_bounds(rule, n, f):
    # n honest rows (the f "Byzantine" ones drawn like the others): lambda with S = the first n - f
    G = cloud(n, 10, seed=n + f)
    H, B = G[f:], G[:f]
    value = R.Objective(rule, H, f)(B)
    assert math.isfinite(value)
    for kind, bound in R.bounds(rule, n, f, 10).items():
        if bound is not None and kind != "lower":
            assert value <= bound, (kind, value, bound)


def test_bounds_values():
    b = R.bounds("mda", 11, 2, 10)
    assert b["slides"] == b["thesis"] == pytest.approx(4 / 9)
    assert b["lower"] == pytest.approx(2 / 9)
    tm = R.bounds("trimmed_mean", 11, 2, 4)
    assert tm["slides"] == pytest.approx(2 / 6) and tm["thesis"] == pytest.approx(2 / 9 * 2)
    assert R.bounds("trimmed_mean", 11, 2, 10_000)["thesis"] == pytest.approx(2 / 9 * 6)
    assert R.bounds("krum", 15, 5, 3)["slides"] == pytest.approx(1 + math.sqrt(2))
    assert R.bounds("average", 11, 2, 3)["slides"] is None


def test_requirement_is_the_rules_own():
    assert R.requirement_error("krum", 11, 5) is not None and "krum" in R.requirement_error("krum", 11, 5)
    assert R.requirement_error("krum", 11, 2) is None


@pytest.mark.parametrize("n,f", [(7, 1), (11, 2)])
def test_design_beats_the_slides_trimmed_mean_bound(n, f):
    # the 0/1 design: one coordinate per f-subset of the m honest rows; the f Byzantine rows
    # far below in every coordinate make the trimmed mean 0 where the honest mean is f/m:
    # lambda^2 = (m - 1) f / (2 m (m - f)), above the slides' f / (2 sqrt(m)) for f <= 2
    m = n - f
    H = R.design(m, f, max_d=10_000, generator=torch.Generator())
    assert H.shape == (m, math.comb(m, f)) and torch.all(H.sum(0) == f)
    B = torch.full((f, H.shape[1]), -1e3, dtype=H.dtype)
    value = R.Objective("trimmed_mean", H, f)(B)
    assert value == pytest.approx(math.sqrt((m - 1) * f / (2 * m * (m - f))), rel=1e-9)
    bounds = R.bounds("trimmed_mean", n, f, H.shape[1])
    assert value > bounds["slides"]
    assert value <= bounds["thesis"]


def test_named_attacks_shapes_determinism_and_infinities():
    H = cloud(9, 4)
    a = R.named_attacks(H, 2, torch.Generator().manual_seed(5))
    b = R.named_attacks(H, 2, torch.Generator().manual_seed(5))
    assert set(a) >= {"little", "little-study", "empire", "empire-study", "signflip", "inf+", "inf-"}
    for name, rows in a.items():
        assert rows.shape == (2, 4)
        assert torch.equal(rows, b[name])
    assert torch.allclose(a["empire"][0], -0.1 * H.mean(0))
    assert R.Objective("average", H, 2)(a["inf+"]) == math.inf
    for rule in ("mda", "trimmed_mean", "median", "meamed", "geometric_median", "krum"):
        assert math.isfinite(R.Objective(rule, H, 2)(a["inf-"]))


def test_small_study_writes_table_and_plot(tmp_path):
    result = R.study(
        rules=("average", "median", "krum"), cases=((4, 1), (7, 1)), seeds=(0,), dims=(2,), effort=0.05, joint_iters=5,
        only=("gauss",),
    )
    assert {(s["rule"], s["n"], s["f"]) for s in result["skipped"]} == {("krum", 4, 1)}
    outcome = R.write_outputs(result, tmp_path)
    payload = json.loads(gzip.decompress((tmp_path / "resilience.json.gz").read_bytes()))
    assert len(payload["summary"]) == 5 and len(payload["rows"]) == 5
    table = (tmp_path / "resilience.md").read_text()
    assert "| median | 7 | 1 |" in table and "krum requires" in table
    assert (tmp_path / "resilience.png").read_bytes()[:4] == b"\x89PNG"
    assert outcome["cases"] == len(payload["rows"])


def test_cli_resilience(tmp_path, capsys):
    argv = ["resilience", "--rules", "median", "--cases", "7,1", "--seeds", "0", "--dims", "2", "--effort", "0.05"]
    argv += ["--joint-iters", "0", "--only", "clusters", "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    payload = json.loads(gzip.decompress((tmp_path / "resilience.json.gz").read_bytes()))
    assert [r["honest"] for r in payload["rows"]] == ["clusters-d10"]
    # two tight clusters (f rows at distance 1 from the others): the median's lambda is about f/(n - f)
    assert payload["rows"][0]["optimised"] == pytest.approx(1 / 6, rel=0.02)
    assert json.loads(capsys.readouterr().out)["cases"] == 1

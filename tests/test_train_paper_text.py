"""The `paper-text` preset: the rules as the momentum paper's text states them (Sections 2.2
and 4.1), checked against reference implementations written here from the text, with loops."""

import itertools
import json

import pytest
import torch

import byzagg
from byzagg.train import cli, grids, paper_rules, presets, rules
from byzagg.train.experiment import RunConfig


def krum_scores_reference(rows: list[torch.Tensor], f: int) -> list[float]:
    """Score of each row: the sum of its squared distances to its k - f - 2 closest other rows."""
    k = len(rows)
    scores = []
    for i, x in enumerate(rows):
        distances = sorted(float(((x.double() - y.double()) ** 2).sum()) for j, y in enumerate(rows) if j != i)
        scores.append(sum(distances[: k - f - 2]))
    return scores


def ranked(scores: list[float]) -> list[int]:
    return sorted(range(len(scores)), key=lambda i: (scores[i], i))


def krum_reference(G: torch.Tensor, f: int, m: int) -> torch.Tensor:
    rows = list(G)
    best = ranked(krum_scores_reference(rows, f))[:m]
    return torch.stack([rows[i] for i in best]).mean(dim=0)


def bulyan_reference(G: torch.Tensor, f: int, m: int | None = None) -> torch.Tensor:
    """The text: theta = n - 2f - 2 times Krum on the rows left (each time the Krum output is
    selected and the best-ranked row removed), then per coordinate the mean of the
    n - 4f - 2 selected values closest to their median."""
    n, d = G.shape
    m = n - f - 2 if m is None else m
    left = list(range(n))
    selected = []
    for i in range(n - 2 * f - 2):
        rows = [G[j] for j in left]
        order = ranked(krum_scores_reference(rows, f))
        count = min(m, len(left) - f - 2)
        selected.append(torch.stack([rows[j] for j in order[:count]]).mean(dim=0))
        del left[order[0]]
    S = torch.stack(selected)
    beta = n - 4 * f - 2
    out = torch.empty(d, dtype=G.dtype)
    for c in range(d):
        values = sorted(float(v) for v in S[:, c])
        k = len(values)
        median = values[k // 2] if k % 2 else (values[k // 2 - 1] + values[k // 2]) / 2
        closest = sorted(values, key=lambda v: abs(v - median))[:beta]
        out[c] = sum(closest) / beta
    return out


def matrix(n, d, seed, byzantine=0):
    g = torch.Generator().manual_seed(seed)
    G = torch.randn(n, d, generator=g, dtype=torch.float64)
    if byzantine:
        G[-byzantine:] = 50.0 + torch.randn(d, generator=g, dtype=torch.float64)  # f identical far rows
    return G


@pytest.mark.parametrize("n,f,seed", [(11, 2, 0), (11, 4, 1), (15, 3, 2), (51, 12, 3), (51, 24, 4)])
def test_paper_text_krum_is_multi_krum_with_m_n_minus_f_minus_2(n, f, seed):
    G = matrix(n, 6, seed)
    krum = presets.get_preset("paper-text").rules["krum"]
    expected = krum_reference(G, f, n - f - 2)
    torch.testing.assert_close(krum(G, f), expected)
    # the library's Krum with the same m: the same rule
    torch.testing.assert_close(krum(G, f), byzagg.krum(G, f, m=n - f - 2))
    # m can still be set, down to the classic one-row Krum
    torch.testing.assert_close(paper_rules.text_krum(G, f, m=1), krum_reference(G, f, 1))


@pytest.mark.parametrize("n,f,seed", [(11, 2, 0), (15, 3, 1), (19, 3, 2), (23, 4, 3), (51, 12, 4)])
def test_paper_text_bulyan_follows_the_text(n, f, seed):
    G = matrix(n, 5, seed, byzantine=f)
    bulyan = presets.get_preset("paper-text").rules["bulyan"]
    torch.testing.assert_close(bulyan(G, f), bulyan_reference(G, f))
    torch.testing.assert_close(paper_rules.text_bulyan(G, f, m=3), bulyan_reference(G, f, m=3))
    weights = paper_rules.text_bulyan_selection(G, f)
    assert weights.shape == (n - 2 * f - 2, n)
    assert torch.all(weights[:, -f:] == 0)  # the far Byzantine rows are never selected here


def test_paper_text_bulyan_rescores_unlike_the_original_code():
    # the two presets' Bulyan differ (rescoring, squared distances, neighbours) on some inputs
    differ = 0
    for seed in range(20):
        G = matrix(15, 4, seed)
        differ += not torch.allclose(paper_rules.text_bulyan(G, 3), paper_rules.paper_bulyan(G, 3))
    assert differ > 0


def test_paper_text_median_and_average():
    preset = presets.get_preset("paper-text")
    G = matrix(13, 7, 5)
    torch.testing.assert_close(preset.rules["median"](G, 3), G.median(dim=0).values)
    torch.testing.assert_close(preset.rules["average"](G, 3), G.mean(dim=0))


def test_paper_text_requirements():
    with pytest.raises(ValueError, match="n >= 4f \\+ 3"):
        paper_rules.text_bulyan(matrix(14, 3, 0), 3)
    with pytest.raises(ValueError, match="n >= 2f \\+ 3"):
        paper_rules.text_krum(matrix(8, 3, 0), 3)
    with pytest.raises(ValueError, match="m <= n - f - 2"):
        paper_rules.text_krum(matrix(11, 2, 0), 2, m=8)
    with pytest.raises(ValueError):
        rules.check("bulyan", "paper-text", 14, 3)
    rules.check("bulyan", "paper-text", 51, 12)


def test_paper_text_preset_differs_from_paper_by_the_rules_only():
    text, paper = presets.get_preset("paper-text"), presets.get_preset("paper")
    for field in ("relu_last", "l2_mode", "clip_mode", "train_mode", "flip_test"):
        assert getattr(text, field) == getattr(paper, field)
    assert set(text.rules) == set(paper.rules)
    # the canonical preset is not the text: its Krum keeps one row
    G = matrix(11, 4, 9)
    torch.testing.assert_close(presets.get_preset("canonical").rules["krum"](G, 2), krum_reference(G, 2, 1))


def test_paper_text_grid_and_clip_mode_override(tmp_path):
    configs = grids.make_grid("paper-mnist", dataset="fashion-mnist", preset="paper-text")
    assert len(configs) == 220 and {c.preset for c in configs} == {"paper-text"}
    assert all("-paper-text-" in c.run_id() for c in configs)
    # the Krum paper's grids keep `canonical` as their default
    assert {c.preset for c in grids.make_grid("krum-paper-nobyz")} == {"canonical"}
    out = tmp_path / "grid"
    args = ["grid", "paper-mnist", "--dataset", "mnist-synthetic", "--preset", "paper-text", "--steps", "2",
            "--filter", "rule=bulyan", "--filter", "attack=little", "--filter", "momentum=worker",
            "--filter", "lr=0.5", "--seeds", "1", "--clip-mode", "norm1_legacy", "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    (path,) = (out / "run-json").iterdir()
    result = json.loads(path.read_text())
    assert result["config"]["preset"] == "paper-text" and result["config"]["rule"] == "bulyan"
    assert result["config"]["clip_mode"] == "norm1_legacy" and result["clip_mode"] == "norm1_legacy"
    assert RunConfig.from_dict(result["config"]).f == 12

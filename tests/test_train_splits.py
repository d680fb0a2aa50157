"""Worker data splits and the Adam study's MNIST CNN (issue 17)."""

import json

import pytest
import torch

from byzagg.train import cli, data, models


def labels(counts=(50, 40, 30, 45, 35), seed=0):
    y = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    return y[torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))]


def test_dirichlet_uses_every_sample_once():
    y = labels()
    parts = data.dirichlet_split(y, workers=7, alpha=0.1, seed=3)
    assert len(parts) == 7
    together = torch.cat(parts)
    assert torch.equal(together.sort().values, torch.arange(len(y)))
    assert data.split_counts(y, parts).sum(0).tolist() == [50, 40, 30, 45, 35]


def test_dirichlet_seed_fixes_the_split():
    y = labels()
    a = data.dirichlet_split(y, 6, alpha=0.1, seed=1)
    b = data.dirichlet_split(y, 6, alpha=0.1, seed=1)
    c = data.dirichlet_split(y, 6, alpha=0.1, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert not all(len(p) == len(q) and torch.equal(p, q) for p, q in zip(a, c))


def test_dirichlet_large_alpha_tends_to_homogeneous():
    y = labels(counts=(600, 600, 600, 600))
    workers = 5

    def spread(alpha):
        counts = data.split_counts(y, data.dirichlet_split(y, workers, alpha=alpha, seed=0)).double()
        return float((counts - 600 / workers).abs().max() / (600 / workers))

    large, small = spread(1e5), spread(0.1)
    assert large < 0.05  # each class within 5% of an equal share
    assert small > 0.5  # alpha = 0.1: far from it
    assert spread(10.0) < small


def test_homogeneous_equal_class_counts():
    y = labels()
    parts = data.homogeneous_split(y, workers=4, seed=0)
    counts = data.split_counts(y, parts)
    per = 30 // 4  # the rarest class has 30 samples
    assert torch.equal(counts, torch.full((4, 5), per))
    together = torch.cat(parts)
    assert len(together.unique()) == len(together)  # no sample twice
    again = data.homogeneous_split(y, workers=4, seed=0)
    assert all(torch.equal(p, q) for p, q in zip(parts, again))


def test_homogeneous_rejects_too_many_workers():
    with pytest.raises(ValueError, match="fewer samples"):
        data.homogeneous_split(labels(), workers=31)


def test_split_cli_writes_plot_and_counts(tmp_path):
    out = tmp_path / "s" / "mnist-a0.1"
    assert cli.main(["split", "--workers", "17", "--alpha", "0.1", "--out", str(out)]) == 0
    png = (tmp_path / "s" / "mnist-a0.1.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    summary = json.loads((tmp_path / "s" / "mnist-a0.1.json").read_text())
    assert summary["used"] == summary["train_samples"] == sum(summary["sizes"])
    assert len(summary["counts"]) == 17


def test_mnist_cnn_adam_shapes_and_size():
    model = models.build_model("mnist-cnn-adam")
    assert models.parameter_count(model) == 176_050
    out = model(torch.randn(4, 1, 28, 28))
    assert out.shape == (4, 10)
    assert torch.allclose(out.exp().sum(1), torch.ones(4, dtype=out.dtype))
    convolution = model[:6](torch.zeros(1, 1, 28, 28))
    assert convolution.shape == (1, 20, 4, 4)

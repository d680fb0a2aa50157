"""Batched (vmap) gradients against per-worker loops, clipping, l2 terms, momentum,
attacks against their formulas, the variance-norm ratio and s_t against hand computations,
and the `paper` preset's rules against direct restatements."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import replace_all_batch_norm_modules_

from byzagg.train import attacks, metrics, models, paper_rules, workers


def loop_gradients(module, x, y):
    rows = []
    for xi, yi in zip(x, y):
        module.zero_grad()
        F.nll_loss(module(xi), yi).backward()
        rows.append(torch.cat([p.grad.reshape(-1) for p in module.parameters()]))
    return torch.stack(rows)


@pytest.mark.parametrize("train_mode", [False, True])
@pytest.mark.parametrize("relu_last", [False, True])
def test_vmap_gradients_equal_loop_mlp(train_mode, relu_last):
    torch.manual_seed(0)
    module = models.mnist_mlp(relu_last=relu_last)
    reference = copy.deepcopy(module)
    flat = workers.FlatModel(module, train_mode=train_mode)
    x, y = torch.randn(5, 7, 1, 28, 28), torch.randint(0, 10, (5, 7))
    G, losses = flat.gradients(x, y)
    assert G.shape == (5, 79510)
    torch.testing.assert_close(G, loop_gradients(reference, x, y), rtol=1e-4, atol=1e-6)
    expected = torch.stack([F.nll_loss(reference(xi), yi) for xi, yi in zip(x, y)]).detach()
    torch.testing.assert_close(losses, expected)


def test_vmap_gradients_equal_loop_cnn_eval_and_train():
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 3, 32, 32), torch.randint(0, 10, (2, 3))
    # eval mode (`paper` preset): batch norm on running statistics, no dropout
    module = models.cifar_cnn()
    reference = copy.deepcopy(module).eval()
    G, _ = workers.FlatModel(module, train_mode=False).gradients(x, y)
    torch.testing.assert_close(G, loop_gradients(reference, x, y), rtol=1e-3, atol=1e-5)
    # train mode without dropout: per-worker batch statistics
    module = models.cifar_cnn(dropout=0.0)
    reference = copy.deepcopy(module)
    replace_all_batch_norm_modules_(reference)
    reference.train()
    flat = workers.FlatModel(module, train_mode=True)
    G, _ = flat.gradients(x, y)
    torch.testing.assert_close(G, loop_gradients(reference, x, y), rtol=1e-3, atol=1e-5)
    # running statistics are tracked on the module, outside vmap
    before = module[2].running_mean.clone()
    flat.track_statistics(x[0])
    assert not torch.equal(before, module[2].running_mean)


def test_flat_parameters_are_views():
    flat = workers.FlatModel(models.mnist_mlp())
    flat.theta.zero_()
    assert all(float(p.abs().sum()) == 0 for p in flat.params.values())
    assert flat.dim == models.parameter_count(models.mnist_mlp())


def test_clip_rows():
    G = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    out = workers.clip_rows_(G.clone(), 2.0)
    torch.testing.assert_close(out, torch.tensor([[1.2, 1.6], [0.3, 0.4], [0.0, 0.0]]))
    legacy = workers.clip_rows_(G.clone(), 2.0, "norm1_legacy")
    torch.testing.assert_close(legacy, torch.tensor([[0.6, 0.8], [0.3, 0.4], [0.0, 0.0]]))
    assert workers.clip_rows_(G.clone(), None).equal(G)


def test_regularisation_gradients():
    theta = torch.tensor([3.0, 4.0])
    torch.testing.assert_close(workers.regularisation_gradient(theta, 0.1, "squared"), torch.tensor([0.3, 0.4]))
    torch.testing.assert_close(workers.regularisation_gradient(theta, 0.1, "norm"), torch.tensor([0.06, 0.08]))
    assert workers.regularisation_gradient(theta, 0.0, "norm") is None


def test_momentum_placements():
    mu = 0.5
    g0, g1 = torch.tensor([[1.0], [3.0]]), torch.tensor([[2.0], [2.0]])
    worker = workers.Momentum("worker", mu)
    assert worker.submit(g0).tolist() == [[1.0], [3.0]]
    assert worker.submit(g1).tolist() == [[2.5], [3.5]]
    assert worker.direction(torch.tensor([7.0])).tolist() == [7.0]
    server = workers.Momentum("server", mu)
    assert server.submit(g0) is g0
    assert server.direction(torch.tensor([2.0])).tolist() == [2.0]
    assert server.direction(torch.tensor([1.0])).tolist() == [2.0]


def test_attacks_match_formulas():
    torch.manual_seed(0)
    H = torch.randn(9, 50, dtype=torch.float64)
    mean, std = H.mean(0), H.std(0, unbiased=True)
    little = attacks.byzantine_rows("little", H, 4)
    assert little.shape == (4, 50) and all(torch.equal(row, little[0]) for row in little)
    torch.testing.assert_close(little[0], mean - 1.5 * std)
    torch.testing.assert_close(attacks.byzantine_rows("empire", H, 3)[0], -0.1 * mean)
    assert attacks.byzantine_rows("none", H, 4).shape == (0, 50)
    with pytest.raises(ValueError, match="unknown attack"):
        attacks.byzantine_rows("bogus", H, 2)


def test_variance_norm_ratio_by_hand():
    G = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0]])
    # mean (2, 1); squared deviations 2 + 2 + 4 = 8, / (k - 1) = 4; ||mean||^2 = 5
    assert metrics.variance_norm_ratio(G) == pytest.approx(0.8)
    assert metrics.ratio_from_moments(*metrics.column_moments(G)) == pytest.approx(0.8)
    variance, _ = metrics.column_moments(G)
    torch.testing.assert_close(variance, G.var(0, unbiased=True))
    assert metrics.variance_norm_ratio(torch.tensor([[1.0, -1.0], [-1.0, 1.0]])) == math.inf


def test_curvature_by_hand():
    mu = 0.9
    g = [torch.tensor([1.0, 0.0]), torch.tensor([1.0, 1.0]), torch.tensor([0.0, -2.0])]
    curvature = metrics.Curvature(mu)
    values = [curvature.update(v) for v in g]
    assert values[0] == 0.0
    assert values[1] == pytest.approx(2 * mu * float(g[1] @ g[0]))
    assert values[2] == pytest.approx(2 * (mu * float(g[2] @ g[1]) + mu**2 * float(g[2] @ g[0])))


def direct_paper_krum(G, f):
    n = len(G)
    scores = []
    for i in range(n):
        distances = sorted(float((G[i] - G[j]).norm()) for j in range(n) if j != i)
        scores.append(sum(distances[: n - f - 1]))
    order = sorted(range(n), key=lambda i: (scores[i], i))
    return G[order[: n - f - 2]].mean(0)


def direct_paper_bulyan(G, f):
    n = len(G)
    m = n - f - 2
    scores = []
    for i in range(n):
        distances = sorted(float((G[i] - G[j]).norm()) for j in range(n) if j != i)
        scores.append(sum(distances[:m]))
    ranked = sorted(range(n), key=lambda i: (scores[i], i))
    theta, beta = n - 2 * f - 2, n - 4 * f - 2
    rows = []
    remaining = list(ranked)
    for i in range(theta):
        mi = min(m, n - f - 2 - i)
        rows.append(G[remaining[:mi]].mean(0))
        remaining.pop(0)
    S = torch.stack(rows)
    out = []
    for column in S.T:
        med = sorted(column.tolist())[(theta - 1) // 2]
        nearest = sorted(column.tolist(), key=lambda v: abs(v - med))[:beta]
        out.append(sum(nearest) / beta)
    return torch.tensor(out, dtype=G.dtype)


def test_paper_rules_match_direct_restatements():
    torch.manual_seed(1)
    G = torch.randn(15, 6, dtype=torch.float64)
    G[12:] = G[:3].mean(0) - 1.5 * G[:12].std(0)  # identical attacker rows
    torch.testing.assert_close(paper_rules.paper_krum(G, 3), direct_paper_krum(G, 3))
    torch.testing.assert_close(paper_rules.paper_bulyan(G, 3), direct_paper_bulyan(G, 3))  # beta = 1
    torch.testing.assert_close(paper_rules.paper_bulyan(G, 2), direct_paper_bulyan(G, 2))  # beta = 5
    torch.testing.assert_close(paper_rules.paper_median(G[:4]), torch.sort(G[:4], 0).values[1])
    with pytest.raises(ValueError, match="n >= 4f \\+ 3"):
        paper_rules.paper_bulyan(G, 4)
    with pytest.raises(ValueError, match="n >= 2f \\+ 3"):
        paper_rules.paper_krum(G, 7)


@pytest.mark.parametrize("method", ["byzagg", "gram"])
def test_paper_rules_with_either_distance_path(monkeypatch, method):
    monkeypatch.setattr(paper_rules, "DISTANCES", method)
    test_paper_rules_match_direct_restatements()


def test_gram_distances_agree_with_byzagg():
    import byzagg

    torch.manual_seed(2)
    common = torch.randn(3000) * 10  # a large common component: the plain Gram expansion's trap
    G = common + 0.01 * torch.randn(20, 3000)
    G[17:] = G[:17].mean(0)
    G[5, 3] = float("nan")
    D = paper_rules.gram_distances(G)
    exact = byzagg.pairwise_distances(G).double()
    finite = torch.isfinite(exact)
    # within 1e-5 relative, and a 1e-4 fraction of the typical distance near zero (the
    # identical rows: 0 exactly, the square root of a rounding error through the Gram path)
    scale = float(exact[finite].median())
    torch.testing.assert_close(D[finite], exact[finite], rtol=1e-5, atol=1e-4 * scale)
    assert torch.isinf(D[5, :5]).all() and D[5, 5] == 0

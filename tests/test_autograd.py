"""Gradients through the rules: every native op has a backward (byzagg/_autograd.py), no
result claims a gradient it does not have, and the gradients agree with finite
differences (gradcheck, float64) and with the reference's own autograd."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

import byzagg
from byzagg import _ops, reference

# Each public rule with arguments for an (n, d) input: (name, n, kwargs).
CASES = [
    ("median", 7, {}),
    ("median", 8, {}),
    ("trimmed_mean", 9, {"f": 2}),
    ("meamed", 9, {"f": 2}),
    ("phocas", 9, {"f": 2}),
    ("krum", 9, {"f": 2}),
    ("krum", 9, {"f": 2, "m": 3}),
    ("multi_krum", 9, {"f": 2}),
    ("bulyan", 11, {"f": 2}),
    ("medoid", 7, {}),
    ("mda", 8, {"f": 2}),
    ("nnm", 9, {"f": 2}),
    ("brsgd", 9, {}),
    ("brsgd", 9, {"beta": 0.5, "threshold": 6.0}),
    ("centered_clipping", 9, {"tau": 0.5, "iters": 3}),
    ("geometric_median", 9, {"max_iter": 300, "tol": 0.0}),
    ("pairwise_distances", 6, {}),
    ("pairwise_distances", 6, {"squared": True}),
    ("krum_scores", 9, {"f": 2}),
    ("average", 5, {}),
    ("bucketing", 6, {"s": 2, "generator": None}),
]


def sample(n, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=g, dtype=torch.float64)


def call(module, name, G, kwargs):
    kwargs = dict(kwargs)
    if name == "bucketing":
        kwargs["generator"] = torch.Generator().manual_seed(5)
    return getattr(module, name)(G, **kwargs)


def ids(case):
    return f"{case[0]}-{case[1]}-{'-'.join(f'{k}={v}' for k, v in case[2].items())}"


@pytest.mark.parametrize("case", CASES, ids=[ids(c) for c in CASES])
def test_gradcheck(case):
    name, n, kwargs = case
    G = sample(n).requires_grad_(True)
    tolerance = {"atol": 1e-4, "rtol": 1e-3} if name == "geometric_median" else {}
    assert torch.autograd.gradcheck(lambda X: call(byzagg, name, X, kwargs), (G,), **tolerance)


@pytest.mark.parametrize("case", CASES, ids=[ids(c) for c in CASES])
def test_gradient_equals_the_reference(case):
    name, n, kwargs = case
    G = sample(n, seed=1)
    for dtype in (torch.float64, torch.float32):
        A = G.to(dtype).clone().requires_grad_(True)
        B = G.to(dtype).clone().requires_grad_(True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch warns when an op has no autograd kernel
            out = call(byzagg, name, A, kwargs)
        want = call(reference, name, B, kwargs)
        assert out.requires_grad and out.grad_fn is not None
        w = torch.randn(out.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64).to(out.dtype)
        (out * w).sum().backward()
        (want * w).sum().backward()
        assert A.grad is not None, f"{name}: no gradient reached G"
        torch.testing.assert_close(A.grad, B.grad, rtol=1e-5, atol=1e-6 if dtype == torch.float32 else 1e-10)


def test_selection_gradient_is_the_selected_rows():
    """Krum's gradient is that of G[rows].mean(0): 1/m on the selected rows, 0 elsewhere."""
    G = sample(9, seed=4)
    G[0] += 100.0  # a far row, never selected
    X = G.clone().requires_grad_(True)
    byzagg.krum(X, 2, m=3).sum().backward()
    scores = byzagg.krum_scores(G, 2)
    rows = sorted(range(9), key=lambda i: (float(scores[i]), i))[:3]
    expect = torch.zeros_like(G)
    expect[rows] = 1.0 / 3
    assert torch.equal(X.grad, expect)


def test_median_gradient_is_the_window():
    G = torch.tensor([[1.0, 9.0], [5.0, 2.0], [3.0, 4.0]], dtype=torch.float64, requires_grad=True)
    byzagg.median(G).sum().backward()
    assert torch.equal(G.grad, torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.0, 1.0]], dtype=torch.float64))


def test_weights_and_center_get_gradients():
    G = sample(7, seed=6)
    w = torch.rand(7, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).add_(0.5).requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda W: byzagg.geometric_median(G, weights=W, max_iter=300, tol=0.0), (w,), atol=1e-4, rtol=1e-3
    )
    c = torch.zeros(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda C: byzagg.centered_clipping(G, 0.7, iters=2, center=C), (c,))


def test_no_gradient_requested_no_graph():
    G = sample(9)
    for name, n, kwargs in CASES:
        out = call(byzagg, name, sample(n), kwargs)
        assert not out.requires_grad and out.grad_fn is None, name
    with torch.no_grad():
        out = byzagg.krum(G.clone().requires_grad_(True), 2)
    assert not out.requires_grad


def test_every_native_op_has_a_backward():
    if not _ops.NATIVE_LOADED:
        pytest.skip(f"no native kernels: {_ops.LOAD_STATUS}")
    for name in _ops.native_ops("cpu"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"byzagg::{name}", "Autograd"), name


def test_second_order():
    """The backward is itself differentiable (create_graph): trimmed_mean is linear in the
    window, so the gradient of a gradient norm exists and is finite."""
    G = sample(9).requires_grad_(True)
    (grad,) = torch.autograd.grad(byzagg.trimmed_mean(G, 2).square().sum(), G, create_graph=True)
    (second,) = torch.autograd.grad(grad.square().sum(), G)
    assert torch.isfinite(second).all() and second.abs().sum() > 0
    assert math.isfinite(float(second.sum()))

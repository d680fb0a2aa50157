"""Fake kernels of the byzagg ops (shapes and dtypes only), so that torch.compile can trace
through them. Registered once, by _ops, when the extension has loaded (the ops exist only
then); the schemas themselves live in csrc/ops.cpp."""

from __future__ import annotations

import torch


def _vector(G: torch.Tensor) -> torch.Tensor:
    return G.new_empty((G.shape[1],))


def register() -> None:
    def fake(name):
        return torch.library.register_fake(f"byzagg::{name}")

    @fake("median")
    def _median(G):
        return _vector(G)

    @fake("trimmed_mean")
    def _trimmed_mean(G, f):
        return _vector(G)

    @fake("meamed")
    def _meamed(G, f):
        return _vector(G)

    @fake("phocas")
    def _phocas(G, f):
        return _vector(G)

    @fake("pairwise_distances")
    def _pairwise_distances(G, squared):
        return G.new_empty((G.shape[0], G.shape[0]))

    @fake("krum_scores")
    def _krum_scores(G, f):
        return G.new_empty((G.shape[0],), dtype=torch.float64)

    @fake("krum")
    def _krum(G, f, m):
        return _vector(G)

    @fake("bulyan")
    def _bulyan(G, f):
        return _vector(G)

    @fake("nnm")
    def _nnm(G, f):
        return G.new_empty(G.shape)

    @fake("medoid")
    def _medoid(G):
        return _vector(G)

    @fake("geometric_median")
    def _geometric_median(G, weights, eps, max_iter, tol):
        return _vector(G)

    @fake("centered_clipping")
    def _centered_clipping(G, tau, iters, center):
        return _vector(G)

    @fake("brsgd")
    def _brsgd(G, beta, threshold):
        return _vector(G)

    @fake("mda")
    def _mda(G, f):
        return _vector(G)

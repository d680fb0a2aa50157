"""Fake kernels of the byzagg ops (shapes and dtypes only), so that torch.compile can trace
through them. Registered once, by _ops, when the extension has loaded (the ops exist only
then); the schemas themselves live in csrc/ops.cpp, the result shapes in the rule table."""

from __future__ import annotations

import torch

from ._rules import OPS

_RESULTS = {
    "vector": lambda G: G.new_empty((G.shape[1],)),
    "rows": lambda G: G.new_empty(G.shape),
    "square": lambda G: G.new_empty((G.shape[0], G.shape[0])),
    "scores": lambda G: G.new_empty((G.shape[0],), dtype=torch.float64),
}


def _fake(result):
    make = _RESULTS[result]

    def fake(G, *args):
        return make(G)

    return fake


def _fake_out(G, *args, out):
    """The out= overloads (csrc/out.h) write into out and return nothing."""
    return None


def register(names, out_names=()) -> None:
    """Register the fake kernel of each op in `names` (the ops with a schema) and of the
    out= overload of each op in `out_names`."""
    for name in names:
        torch.library.register_fake(f"byzagg::{name}", _fake(OPS[name]))
    for name in out_names:
        torch.library.register_fake(f"byzagg::{name}.out", _fake_out)

"""BYZAGG_CPU_ISA: one vocabulary, honoured by every CPU kernel family.

The kernels note the vector path each family took (torch.ops.byzagg.isa_trace(): the path
per family since the last call). Under each value of BYZAGG_CPU_ISA, one call per family
must have taken min(value, what the CPU supports); an unknown value is an error in every
family; byzagg.backend() names the path.
"""

from __future__ import annotations

import pytest
import torch

import byzagg
from byzagg import _ops
from utils import require_native

ORDER = ("generic", "avx2", "avx512")
FAMILIES = ("coordinate", "distances", "selection", "iterative")


@pytest.fixture
def native():
    require_native("cpu")
    return torch.ops.byzagg


def supported(monkeypatch) -> str:
    monkeypatch.delenv("BYZAGG_CPU_ISA", raising=False)
    return _ops.cpu_isa()


def trace(ops) -> dict[str, str]:
    return dict(item.split("=") for item in ops.isa_trace().split(","))


def one_call_per_family(G: torch.Tensor) -> None:
    byzagg.median(G)  # coordinate
    byzagg.pairwise_distances(G)  # distances
    byzagg.multi_krum(G, f=2)  # distances, then the selected rows' mean (selection)
    byzagg.centered_clipping(G, tau=1.0, iters=2)  # iterative


@pytest.mark.parametrize("value", ORDER)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_every_family_takes_the_capped_path(native, monkeypatch, value, dtype):
    best = supported(monkeypatch)
    expected = ORDER[min(ORDER.index(value), ORDER.index(best))]
    G = torch.randn(11, 3000, generator=torch.Generator().manual_seed(0), dtype=dtype)
    monkeypatch.setenv("BYZAGG_CPU_ISA", value)
    trace(native)  # clear what earlier tests left
    one_call_per_family(G)
    taken = trace(native)
    assert set(taken) == set(FAMILIES)
    assert taken == {family: expected for family in FAMILIES}, (value, best, taken)
    assert _ops.cpu_isa() == expected
    assert f"vector ISA {expected}" in byzagg.backend()
    assert trace(native) == {family: "none" for family in FAMILIES}  # reading clears it


def test_half_precision_takes_the_portable_path_where_it_has_no_vector_one(native, monkeypatch):
    supported(monkeypatch)
    G = torch.randn(11, 500, generator=torch.Generator().manual_seed(1)).to(torch.bfloat16)
    trace(native)
    byzagg.centered_clipping(G, tau=1.0)
    byzagg.multi_krum(G, f=2)
    taken = trace(native)
    assert taken["iterative"] == "generic" and taken["selection"] == "generic", taken


@pytest.mark.parametrize("bad", ["scalar", "AVX2", "avx-512", "sse4"])
def test_an_unknown_value_is_an_error_in_every_family(native, monkeypatch, bad):
    G = torch.randn(11, 64, generator=torch.Generator().manual_seed(2))
    monkeypatch.setenv("BYZAGG_CPU_ISA", bad)
    for call in (
        lambda: byzagg.median(G),
        lambda: byzagg.pairwise_distances(G),
        lambda: byzagg.multi_krum(G, f=2),
        lambda: byzagg.centered_clipping(G, tau=1.0),
        lambda: byzagg.brsgd(G),
    ):
        with pytest.raises(RuntimeError, match=r"BYZAGG_CPU_ISA must be generic, avx2 or avx512"):
            call()

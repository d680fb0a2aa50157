"""aggregate() with one f for every rule, error messages that name the public function, and
flatten / unflatten for per-parameter tensors (one list or dict per worker)."""

from __future__ import annotations

import inspect

import pytest
import torch

import byzagg
from byzagg import reference

# Parameters a rule needs besides G and f (the ones without a default).
REQUIRED = {"centered_clipping": {"tau": 1.0}, "bucketing": {"s": 2}}


@pytest.mark.parametrize("module", [byzagg, reference], ids=["byzagg", "reference"])
def test_aggregate_takes_one_f_for_every_rule(module):
    G = torch.randn(11, 6, generator=torch.Generator().manual_seed(0))
    for name in module.RULES:
        out = module.aggregate(name, G, f=2, **REQUIRED.get(name, {}))
        if name in byzagg._api.RULES_WITH_F:
            direct = getattr(module, name)(G, 2, **REQUIRED.get(name, {}))
        else:
            direct = getattr(module, name)(G, **REQUIRED.get(name, {}))
        if name == "bucketing":  # random permutation: compare shapes only
            assert out.shape == direct.shape
        else:
            assert torch.equal(out, direct), name
    # f positionally, as the third argument
    assert torch.equal(module.aggregate("krum", G, 2), module.krum(G, 2))


def test_aggregate_f_is_checked_for_rules_without_f():
    G = torch.randn(7, 3)
    with pytest.raises(ValueError, match=r"aggregate: f must be >= 0, got f=-1"):
        byzagg.aggregate("median", G, f=-1)
    with pytest.raises(TypeError, match=r"aggregate: f must be an int"):
        byzagg.aggregate("median", G, f=1.5)


def test_aggregate_rules_with_f_require_it_and_check_it():
    G = torch.randn(10, 3)
    with pytest.raises(TypeError, match=r"aggregate: rule 'krum' needs f"):
        byzagg.aggregate("krum", G)
    with pytest.raises(ValueError, match=r"krum requires n >= 2f \+ 3, got n=10, f=4"):
        byzagg.aggregate("krum", G, 4)


def test_errors_name_the_public_function():
    G = torch.randn(7, 3)
    with pytest.raises(TypeError, match=r"^median\(\) got an unexpected keyword argument 'foo'"):
        byzagg.aggregate("median", G, f=1, foo=1)
    with pytest.raises(ValueError, match=r"aggregate: unknown rule 'krumm'"):
        byzagg.aggregate("krumm", G)
    for name in byzagg.RULES + ("aggregate", "pairwise_distances", "krum_scores"):
        fn = getattr(byzagg, name)
        assert fn.__qualname__ == name and fn.__module__ == "byzagg._api", name
        # a plain function: its source is the function itself, with its signature
        assert inspect.getsource(fn).startswith(f"def {name}("), name
        assert fn.__doc__ and "Returns" in fn.__doc__ and "Raises" in fn.__doc__, name
        wrapped = getattr(reference, name)
        assert wrapped.__module__ == "byzagg.reference" and wrapped.__wrapped__ is fn, name


def test_reference_functions_run_the_reference_only(monkeypatch):
    calls = []
    real = byzagg._ops.IMPLEMENTATIONS["median"]
    monkeypatch.setitem(byzagg._ops.IMPLEMENTATIONS, "median", lambda X: calls.append(1) or real(X))
    G = torch.randn(5, 4)
    assert torch.equal(reference.median(G), real(G))
    assert calls == [1]
    assert byzagg._ops._reference_calls == 0  # the flag is cleared after the call
    byzagg.median(G)
    native = "median" in byzagg._ops.native_ops("cpu")
    assert calls == ([1] if native else [1, 1])


def test_flatten_round_trip_across_dtypes_and_shapes():
    g = torch.Generator().manual_seed(1)
    workers = [
        [torch.randn(3, 4, generator=g), torch.randn(5, generator=g).double(), torch.randn(2, 2, generator=g).half()]
        for _ in range(6)
    ]
    G, spec = byzagg.flatten(workers)
    assert G.shape == (6, 12 + 5 + 4) and G.dtype == torch.float64
    back = byzagg.unflatten(G, spec)
    assert len(back) == 6
    for worker, restored in zip(workers, back):
        for t, r in zip(worker, restored):
            assert r.shape == t.shape and r.dtype == t.dtype and torch.equal(r, t)
    # a rule's (d,) result comes back as one worker
    med = byzagg.unflatten(byzagg.median(G), spec)
    assert [t.shape for t in med] == [torch.Size([3, 4]), torch.Size([5]), torch.Size([2, 2])]
    assert torch.equal(med[1], byzagg.median(torch.stack([w[1] for w in workers])))
    # an explicit dtype
    G32, _ = byzagg.flatten(workers, dtype=torch.float32)
    assert G32.dtype == torch.float32


def test_flatten_mappings_keep_names_and_never_alias():
    workers = [{"w": torch.full((2, 2), float(i)), "b": torch.full((3,), -float(i))} for i in range(5)]
    G, spec = byzagg.flatten(workers)
    assert spec.names == ("w", "b") and spec.numel == 7
    G[0].fill_(99.0)
    assert workers[0]["w"].max() == 0.0  # the inputs are copied
    out = byzagg.unflatten(byzagg.median(G[1:]), spec)
    assert set(out) == {"w", "b"} and torch.equal(out["w"], torch.full((2, 2), 2.5))


def test_flatten_errors():
    with pytest.raises(ValueError, match="0 workers"):
        byzagg.flatten([])
    with pytest.raises(TypeError, match="sequence of workers"):
        byzagg.flatten(torch.zeros(3, 3))
    with pytest.raises(ValueError, match=r"tensor 1 of worker 1 has shape \(4,\), worker 0's has \(3,\)"):
        byzagg.flatten([[torch.zeros(2), torch.zeros(3)], [torch.zeros(2), torch.zeros(4)]])
    with pytest.raises(ValueError, match="worker 1 has 1 tensors, worker 0 has 2"):
        byzagg.flatten([[torch.zeros(2), torch.zeros(3)], [torch.zeros(2)]])
    with pytest.raises(TypeError, match="only floating tensors"):
        byzagg.flatten([[torch.zeros(2, dtype=torch.int64)]])
    with pytest.raises(ValueError, match="worker 1 has tensors"):
        byzagg.flatten([{"a": torch.zeros(2)}, {"b": torch.zeros(2)}])
    G, spec = byzagg.flatten([[torch.zeros(2)], [torch.ones(2)]])
    with pytest.raises(ValueError, match="d=2 columns, the tensor 3"):
        byzagg.unflatten(torch.zeros(3), spec)
    with pytest.raises(TypeError, match="FlatSpec"):
        byzagg.unflatten(torch.zeros(2), None)

"""The native ops under torch.compile and CUDA graphs, and their registration.

- torch.library.opcheck on every op (schema, fake kernel against the real one, autograd
  registration, AOT dispatch) with one sample input per op;
- every rule compiled with fullgraph=True gives the eager result, bit for bit;
- on CUDA: no rule synchronises with the host (sync debug mode "error"), and each op
  captured in a CUDA graph and replayed on new data gives the eager result.
opcheck checks registration, not numbers: the numbers are test_native*.py's job.
"""

import pytest
import torch

import byzagg
from byzagg import _ops

from conftest import devices
from test_native import require_native

N, D, F = 11, 37, 2


def sample_matrix(device, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(N, D, generator=gen, dtype=dtype).to(device)


def op_samples(G):
    """(op name, argument tuple after G) for every native op: one place for all tests."""
    weights = torch.linspace(0.5, 1.5, N, dtype=G.dtype, device=G.device)
    center = torch.full((D,), 0.25, dtype=G.dtype, device=G.device)
    return [
        ("median", ()),
        ("trimmed_mean", (F,)),
        ("meamed", (F,)),
        ("phocas", (F,)),
        ("pairwise_distances", (False,)),
        ("pairwise_distances", (True,)),
        ("krum_scores", (F,)),
        ("krum", (F, 1)),
        ("krum", (F, N - F)),
        ("bulyan", (F,)),
        ("nnm", (F,)),
        ("medoid", ()),
        ("geometric_median", (None, 1e-8, 20, 1e-7)),
        ("geometric_median", (weights, 1e-8, 20, 0.0)),
        ("centered_clipping", (1.0, 3, None)),
        ("centered_clipping", (0.5, 2, center)),
        ("brsgd", (0.5, float("inf"))),
        ("brsgd", (0.5, 3.0)),
        ("mda", (F,)),
    ]


SAMPLE_IDS = [f"{name}-{k}" for k, (name, _) in enumerate(op_samples(torch.zeros(N, D)))]


def native_op(name, device):
    require_native(device)
    if name not in _ops.native_ops(device):
        pytest.skip(f"{name} has no native {device} kernel")
    return getattr(torch.ops.byzagg, name).default


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("index", range(len(SAMPLE_IDS)), ids=SAMPLE_IDS)
def test_opcheck(device, index):
    G = sample_matrix(device)
    name, args = op_samples(G)[index]
    op = native_op(name, device)
    torch.library.opcheck(op, (G, *args))


RULE_CALLS = {
    "average": {},
    "median": {},
    "trimmed_mean": {"f": F},
    "meamed": {"f": F},
    "phocas": {"f": F},
    "krum": {"f": F},
    "multi_krum": {"f": F},
    "bulyan": {"f": F},
    "medoid": {},
    "geometric_median": {"max_iter": 10},
    "mda": {"f": F},
    "centered_clipping": {"tau": 1.0, "iters": 2},
    "nnm": {"f": F},
    "brsgd": {"beta": 0.5},
}


def test_rule_calls_cover_every_rule():
    # bucketing draws a random permutation: compiled and eager runs draw different ones
    assert set(RULE_CALLS) == set(byzagg.RULES) - {"bucketing"}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("rule", sorted(RULE_CALLS))
def test_compiled_rule_matches_eager(device, rule):
    require_native(device)
    torch._dynamo.reset()
    G = sample_matrix(device)
    params = RULE_CALLS[rule]
    compiled = torch.compile(lambda X: byzagg.aggregate(rule, X, **params) * 2, fullgraph=True, backend="aot_eager")
    want = byzagg.aggregate(rule, G, **params) * 2
    got = compiled(G)
    assert got.shape == want.shape and got.dtype == want.dtype
    assert torch.equal(got, want)


@pytest.mark.parametrize("device", devices())
def test_inductor_compiles_around_the_op(device):
    require_native(device)
    torch._dynamo.reset()
    G = sample_matrix(device)
    compiled = torch.compile(lambda X: byzagg.median(X.abs()) + 1, fullgraph=True)
    assert torch.equal(compiled(G), byzagg.median(G.abs()) + 1)


@pytest.mark.cuda
@pytest.mark.parametrize("index", range(len(SAMPLE_IDS)), ids=SAMPLE_IDS)
def test_cuda_op_never_synchronises(index):
    G = sample_matrix("cuda")
    name, args = op_samples(G)[index]
    op = native_op(name, "cuda")
    torch.cuda.synchronize()
    previous = torch.cuda.get_sync_debug_mode()
    torch.cuda.set_sync_debug_mode("error")
    try:
        op(G, *args)
    finally:
        torch.cuda.set_sync_debug_mode(previous)
    torch.cuda.synchronize()


@pytest.mark.cuda
@pytest.mark.parametrize("index", range(len(SAMPLE_IDS)), ids=SAMPLE_IDS)
def test_cuda_graph_capture_and_replay(index):
    G = sample_matrix("cuda")
    name, args = op_samples(G)[index]
    op = native_op(name, "cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph, as torch recommends
        op(G, *args)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = op(G, *args)
    G.copy_(sample_matrix("cuda", seed=1))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, op(G, *args))

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

from utils import call_kwargs, devices, op_samples, require_native, sample_matrix

N, D, F = 11, 37, 2


def matrix(device, seed=0):
    return sample_matrix(N, D, torch.float32, device, seed)


# One sample per native op (the rule table's), plus utils.OP_VARIANTS: one place for all tests.
SAMPLE_IDS = [f"{name}-{k}" for k, (name, _) in enumerate(op_samples(torch.zeros(N, D), F))]


def native_op(name, device):
    require_native(device)
    if name not in _ops.native_ops(device):
        pytest.skip(f"{name} has no native {device} kernel")
    return getattr(torch.ops.byzagg, name).default


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("index", range(len(SAMPLE_IDS)), ids=SAMPLE_IDS)
def test_opcheck(device, index):
    G = matrix(device)
    name, args = op_samples(G, F)[index]
    op = native_op(name, device)
    torch.library.opcheck(op, (G, *args))


# Every rule with the rule table's sample call, but bucketing: it draws a random permutation,
# so compiled and eager runs draw different ones.
RULE_CALLS = {rule: call_kwargs(rule, F) for rule in byzagg.RULES if rule != "bucketing"}


@pytest.mark.parametrize("device", devices())
@pytest.mark.parametrize("rule", sorted(RULE_CALLS))
def test_compiled_rule_matches_eager(device, rule):
    require_native(device)
    torch._dynamo.reset()
    G = matrix(device)
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
    G = matrix(device)
    compiled = torch.compile(lambda X: byzagg.median(X.abs()) + 1, fullgraph=True)
    assert torch.equal(compiled(G), byzagg.median(G.abs()) + 1)


@pytest.mark.cuda
@pytest.mark.parametrize("index", range(len(SAMPLE_IDS)), ids=SAMPLE_IDS)
def test_cuda_op_never_synchronises(index):
    G = matrix("cuda")
    name, args = op_samples(G, F)[index]
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
    G = matrix("cuda")
    name, args = op_samples(G, F)[index]
    op = native_op(name, "cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up outside the graph, as torch recommends
        op(G, *args)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = op(G, *args)
    G.copy_(matrix("cuda", seed=1))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(captured, op(G, *args))

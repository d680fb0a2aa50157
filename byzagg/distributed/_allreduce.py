"""robust_allreduce: every rank contributes a vector, every rank gets one rule's result.

Two data paths (docs/distributed.md has the traffic model):
- gather: all_gather the rows, run byzagg.aggregate on the (n, d) matrix on every rank;
- sharded: all_to_all gives rank r the columns [d r / n, d (r + 1) / n) of every row;
  coordinate-wise rules run on that shard; distance rules compute the shard's exact
  squared distances (n x n, float64), all_gather them and add them in rank order, select
  rows from the sum and finish on the shard; the result's shards are all_gathered.

The sharded algorithm is written as pure steps on shards (`_shard_bounds`,
`_distance_partial`, `_combine_partials`, `_select`, `_finish_shard`), so that
`simulate` runs exactly the same arithmetic in one process: the oracle of the tests.
"""

from __future__ import annotations

import math
import zlib
from datetime import timedelta

import torch
import torch.distributed as dist

import byzagg
from byzagg import _validate as v
from byzagg._reference_impl import (
    MDA_MAX_SUBSETS,
    acc_dtype,
    mda_subset,
    median_of_sorted,
    nearest_mean,
    rank_rows,
    scores_from_squared,
    sort_columns,
)

from ._faults import CallTracker, RankFailureError, as_timedelta, group_ranks

PATHS = ("auto", "gather", "sharded")
# Per coordinate, the result depends on that coordinate's column only.
COORDINATE_RULES = frozenset({"average", "median", "trimmed_mean", "meamed", "phocas"})
# A selection of rows from the pairwise squared distances, then a per-coordinate step.
DISTANCE_RULES = frozenset({"krum", "multi_krum", "bulyan", "medoid", "mda"})
# Need every row whole at every iteration (or return a matrix): the gather path only.
GATHER_ONLY_RULES = frozenset(set(byzagg.RULES) - COORDINATE_RULES - DISTANCE_RULES)
SHARDED_RULES = COORDINATE_RULES | DISTANCE_RULES
# path="auto" shards from this many elements per rank's shard upwards (below, one
# all_gather costs less latency than an all_to_all and an all_gather).
AUTO_SHARD_MIN_COLUMNS_PER_RANK = 4096
# Grace given to the other ranks to report a failed collective before naming them.
DEFAULT_FAULT_GRACE_S = 2.0

_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
_HEADER_FIELDS = ("number of elements", "dtype", "rule", "f", "path", "parameters", "device type")


# Shard boundaries fall on multiples of this many columns. Column reductions (torch's mean
# over rows, the rules' kernels) vectorise over blocks of columns and may treat a column
# differently by its place in a block or in the tail: with aligned shards a column has the
# same place in its shard as in the whole matrix, and the sharded results of the
# column-wise steps equal the whole matrix's bit for bit (tested, not a torch promise).
SHARD_ALIGNMENT = 64


def _shard_bounds(d: int, n: int) -> list[int]:
    """Column boundaries: rank r owns [bounds[r], bounds[r + 1]); inner boundaries are
    multiples of SHARD_ALIGNMENT (so some ranks own no column when d < 64 n)."""
    inner = [(d * r // n) // SHARD_ALIGNMENT * SHARD_ALIGNMENT for r in range(1, n)]
    return [0, *inner, d]


def choose_path(rule: str, n: int, d: int, path: str = "auto") -> str:
    """The data path robust_allreduce takes for this rule, world size n and length d."""
    if path not in PATHS:
        raise ValueError(f"robust_allreduce: path must be one of {PATHS}, got {path!r}")
    if callable(rule):
        if path == "sharded":
            raise ValueError("robust_allreduce: a callable rule has no sharded path; use path='gather' or 'auto'")
        return "gather"
    if path == "sharded" and rule not in SHARDED_RULES:
        raise ValueError(
            f"robust_allreduce: rule {rule!r} has no sharded path (it needs every row whole"
            f"{' at every iteration' if rule in ('geometric_median', 'centered_clipping', 'brsgd') else ''}"
            "); use path='gather' or 'auto'"
        )
    if path != "auto":
        return path
    if rule in SHARDED_RULES and n > 1 and d >= AUTO_SHARD_MIN_COLUMNS_PER_RANK * n:
        return "sharded"
    return "gather"


def _params_digest(params: dict) -> int:
    def text(value):
        if isinstance(value, torch.Tensor):
            return f"tensor{tuple(value.shape)}:{value.dtype}"
        if isinstance(value, torch.Generator):
            return "generator"
        return repr(value)

    return zlib.crc32(repr(sorted((k, text(val)) for k, val in params.items())).encode())


def _check_rule_arguments(rule, n: int, f, params: dict) -> int | None:
    """The checks the rule would make on an (n, d) matrix, before any data moves."""
    if callable(rule):
        return f  # its own checks run on G
    if rule in byzagg._api.RULES_WITH_F:
        if f is None:
            raise TypeError(f"robust_allreduce: rule {rule!r} needs f (the number of Byzantine workers tolerated)")
        f = v.check_f(rule, n, f)
        if rule in ("krum", "multi_krum"):
            m = params.get("m", 1 if rule == "krum" else None)
            v.check_m(rule, n, f, n - f if m is None else m)
            unknown = set(params) - {"m"}
        else:
            unknown = set(params)
        if rule == "mda" and math.comb(n, f) > MDA_MAX_SUBSETS:
            raise ValueError(
                f"mda requires C(n, f) <= {MDA_MAX_SUBSETS} subsets, got n={n}, f={f}: C(n, f)={math.comb(n, f)}"
            )
        if unknown:
            raise TypeError(f"robust_allreduce: rule {rule!r} got unexpected parameters {sorted(unknown)}")
    elif f is not None:
        f = v.check_int("robust_allreduce", "f", f, minimum=0)
    return f


# ----------------------------------------------------------------------------------------
# The sharded path's steps, on one shard S = G[:, lo:hi] (n rows, all ranks' values).


def _distance_partial(S: torch.Tensor) -> torch.Tensor:
    """(n, n + 1) float64: the shard's exact squared distances, and 1.0 for rows whose
    shard values are all finite (0.0 otherwise) in the last column."""
    n = S.shape[0]
    out = torch.zeros(n, n + 1, dtype=torch.float64, device=S.device)
    if S.shape[1] > 0:
        out[:, :n] = byzagg.pairwise_distances(S.to(torch.float64), squared=True)
        out[:, n] = torch.isfinite(S).all(dim=1).to(torch.float64)
    else:
        out[:, n] = 1.0
    return out


def _combine_partials(parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of the shards' squared distances in rank order (a fixed order: the same bits on
    every rank; all_reduce's order is unspecified), +inf for non-finite rows, zero diagonal;
    and the finite-row mask."""
    n = parts[0].shape[0]
    D = parts[0][:, :n].clone()
    finite = parts[0][:, n] > 0
    for part in parts[1:]:
        D += part[:, :n]
        finite &= part[:, n] > 0
    D[~finite, :] = math.inf
    D[:, ~finite] = math.inf
    D.fill_diagonal_(0.0)
    return D, finite


def _select(rule: str, D: torch.Tensor, finite: torch.Tensor, f: int | None, params: dict) -> torch.Tensor:
    """The rows the rule selects from the squared distances D (in the rule's order)."""
    n = D.shape[0]
    if rule in ("krum", "multi_krum"):
        m = params.get("m", 1 if rule == "krum" else None)
        m = n - f if m is None else m
        return rank_rows(scores_from_squared(D, n - f - 2), finite)[:m]
    if rule == "bulyan":
        remaining = torch.arange(n, device=D.device)
        selected = []
        for _ in range(n - 2 * f):
            sub = D[remaining][:, remaining]
            best = rank_rows(scores_from_squared(sub, remaining.numel() - f - 2), finite[remaining])[0]
            selected.append(remaining[best])
            remaining = torch.cat([remaining[:best], remaining[best + 1 :]])
        return torch.stack(selected)
    if rule == "medoid":
        if not bool(finite.any()):
            return torch.zeros(1, dtype=torch.long, device=D.device)
        distances = D.sqrt()[:, finite]
        total = torch.zeros_like(distances[:, 0])
        for j in range(distances.shape[1]):  # column order, as byzagg.medoid sums
            total = total + distances[:, j]
        sums = torch.where(finite, total, torch.full_like(total, math.inf))
        return rank_rows(sums, finite)[:1]
    if rule == "mda":
        if f == 0:
            return torch.arange(n, device=D.device)
        return mda_subset(D.sqrt(), f)
    raise AssertionError(rule)


def _finish_shard(
    rule: str, S: torch.Tensor, selected: torch.Tensor | None, f: int | None, params: dict
) -> torch.Tensor:
    """The result's columns for shard S, given the selected rows (distance rules)."""
    if S.shape[1] == 0:
        return S.new_empty(0)
    if rule in COORDINATE_RULES:
        return byzagg.aggregate(rule, S, f=f, **params)
    if rule == "medoid":
        return S[selected[0]].clone()
    if rule == "bulyan":
        # per coordinate, the mean of the beta = theta - 2f selected values nearest their
        # median: meamed with f' = 2f on the theta selected rows, where its requirement
        # theta > 2 f' holds (the native kernel then); else the reference's own steps
        chosen = S[selected]
        theta = chosen.shape[0]
        if theta > 4 * f:
            return byzagg.meamed(chosen, 2 * f)
        sorted_columns = sort_columns(chosen)
        return nearest_mean(sorted_columns, median_of_sorted(sorted_columns), theta - 2 * f).to(S.dtype)
    return _mean_of_rows(S, selected, "mda" if rule == "mda" else "krum")  # krum, multi_krum, mda


def _mean_of_rows(S: torch.Tensor, rows: torch.Tensor, op: str) -> torch.Tensor:
    """The mean of the rows `rows` of S (in that order) as byzagg's implementation of `op`
    on S's device forms it, so that the shard's columns get the whole matrix's bits: the
    native kernels add the rows one by one in the accumulation type and divide by the
    count (csrc/cpu/selection.cpp, row_set_means); the reference takes torch's
    mean over the rows. Both are column by column."""
    acc = acc_dtype(S.dtype)
    if not byzagg._ops._has_native(op, S.device.type):
        return S[rows].to(acc).mean(dim=0).to(S.dtype)
    total = torch.zeros(S.shape[1], dtype=acc, device=S.device)
    for r in rows.tolist():
        total += S[r].to(acc)
    return (total / len(rows)).to(S.dtype)


def _apply(rule, G: torch.Tensor, f, params: dict) -> torch.Tensor:
    if callable(rule):
        return rule(G, **params) if f is None else rule(G, f, **params)
    return byzagg.aggregate(rule, G, f=f, **params)


def simulate(G: torch.Tensor, rule: str, f=None, path: str = "auto", **params) -> torch.Tensor:
    """What robust_allreduce returns on n = G.shape[0] ranks, rank i contributing G[i]:
    the same steps and arithmetic in one process (the oracle of the multi-process tests).

    path='gather' gives byzagg.aggregate(rule, G, f=f, **params); path='sharded' the
    sharded path's result (see robust_allreduce for what it guarantees).
    """
    if not isinstance(G, torch.Tensor) or G.dim() != 2:
        raise ValueError("simulate: G must be an (n, d) tensor")
    if not callable(rule) and rule not in byzagg.RULES:
        raise ValueError(f"robust_allreduce: unknown rule {rule!r}; known rules: {', '.join(byzagg.RULES)}")
    n, d = G.shape
    path = choose_path(rule, n, d, path)
    f = _check_rule_arguments(rule, n, f, params)
    if path == "gather":
        return _apply(rule, G, f, params)
    bounds = _shard_bounds(d, n)
    shards = [G[:, bounds[r] : bounds[r + 1]].contiguous() for r in range(n)]
    selected = None
    if rule in DISTANCE_RULES:
        D, finite = _combine_partials([_distance_partial(S) for S in shards])
        selected = _select(rule, D, finite, f, params)
    return torch.cat([_finish_shard(rule, S, selected, f, params) for S in shards])


# ----------------------------------------------------------------------------------------
# The collectives.


def _wait(work, timeout: timedelta | None) -> None:
    if timeout is None:
        work.wait()
    else:
        work.wait(timeout)


def _header(tensor, rule, f, path, params) -> torch.Tensor:
    if isinstance(tensor, torch.Tensor):
        numel = tensor.numel()
        dtype = _DTYPES.index(tensor.dtype) if tensor.dtype in _DTYPES else -1
        device = {"cpu": 0, "cuda": 1}.get(tensor.device.type, 2)
    else:
        numel, dtype, device = -1, -1, -1
    if callable(rule):  # by name: two different lambdas are not told apart
        rule_id = 1000 + zlib.crc32(getattr(rule, "__qualname__", type(rule).__name__).encode())
    else:
        rule_id = byzagg.RULES.index(rule) if rule in byzagg.RULES else -1
    f_id = -1 if f is None else (int(f) if isinstance(f, int) and not isinstance(f, bool) else -2)
    path_id = PATHS.index(path) if path in PATHS else -1
    return torch.tensor([numel, dtype, rule_id, f_id, path_id, _params_digest(params), device], dtype=torch.int64)


def _describe(field: int, value: int) -> str:
    if field == 0:
        return "not a tensor" if value < 0 else f"{value} elements"
    if field == 1:
        return "not a float tensor" if value < 0 else str(_DTYPES[value])
    if field == 2:
        if value >= 1000:
            return f"a callable rule (name digest {value - 1000:#x})"
        return "an unknown rule" if value < 0 else f"rule {byzagg.RULES[value]!r}"
    if field == 3:
        return {-1: "f=None", -2: "a non-int f"}.get(value, f"f={value}")
    if field == 4:
        return "an unknown path" if value < 0 else f"path={PATHS[value]!r}"
    if field == 5:
        return f"parameters with digest {value:#x}"
    return {0: "a CPU tensor", 1: "a CUDA tensor"}.get(value, "a tensor on another device")


def _check_headers(headers: torch.Tensor, ranks: list[int]) -> None:
    """The same ValueError on every rank when ranks disagree on what they call (names them)."""
    for field, name in enumerate(_HEADER_FIELDS):
        column = headers[:, field].tolist()
        if len(set(column)) == 1:
            continue
        counts = {value: column.count(value) for value in column}
        majority = max(counts, key=lambda value: (counts[value], -column.index(value)))
        odd = [i for i, value in enumerate(column) if value != majority]
        others = [ranks[i] for i in range(len(ranks)) if i not in odd]
        detail = ", ".join(f"rank {ranks[i]} gave {_describe(field, column[i])}" for i in odd)
        raise ValueError(
            f"robust_allreduce: every rank must give the same {name}; {detail}, while "
            f"rank{'s' if len(others) > 1 else ''} {', '.join(map(str, others))} gave {_describe(field, majority)}"
        )


class _Runner:
    """Runs the collectives of one call, turning failures into RankFailureError."""

    def __init__(self, group, what: str, timeout, grace_s: float):
        self.group = group
        self.timeout = timeout
        self.grace_s = grace_s
        self.tracker = CallTracker(group, what)

    def __call__(self, op, *args, **kwargs):
        try:
            work = op(*args, group=self.group, async_op=True, **kwargs)
            _wait(work, self.timeout)
        except RankFailureError:
            raise
        except RuntimeError as error:
            raise self.tracker.failure(error, self.grace_s) from error


def robust_allreduce(
    tensor: torch.Tensor,
    rule,
    f: int | None = None,
    group=None,
    path: str = "auto",
    timeout: float | timedelta | None = None,
    fault_grace_s: float = DEFAULT_FAULT_GRACE_S,
    **params,
) -> torch.Tensor:
    """Every rank contributes `tensor`; every rank gets the rule's result, the same bits.

    The result is byzagg.aggregate(rule, G, f=f, **params) on the matrix G whose row i is
    group rank i's tensor (flattened), reshaped to the tensor's shape (rules that return a
    matrix - nnm, bucketing - give (rows, *shape)). No rank is trusted more than another:
    each computes the rule itself from the same data.

    Args:
        tensor: this rank's contribution, any shape, floating dtype; the same number of
            elements, dtype and device type on every rank (checked first: a rank that
            differs is named in a ValueError raised on every rank).
        rule: a name of byzagg.RULES; f and **params as for byzagg.aggregate (the same on
            every rank: checked). n is the group's size: the rule's requirement on n and
            f is checked on every rank before data moves. Or a callable rule(G, f,
            **params) (rule(G, **params) when f is None), deterministic: gather path only
            (the harness's preset rules use this).
        group: the process group (default: the world).
        path: 'gather' (all_gather the rows), 'sharded' (all_to_all column shards; for
            coordinate-wise rules - average, median, trimmed_mean, meamed, phocas - and
            distance rules - krum, multi_krum, bulyan, medoid, mda), or 'auto' (sharded
            for those rules when d >= 4096 n, else gather). geometric_median,
            centered_clipping and brsgd need every row whole at every iteration and nnm
            and bucketing return matrices: gather path only.
        timeout: per collective (seconds or timedelta); default: the group's timeout
            (init_process_group(timeout=...): set it short, torch's default is 10 to 30
            minutes).
        fault_grace_s: after a failed collective, how long to wait for the other ranks to
            report before naming those that did not (RankFailureError).

    Guarantees (bit for bit):
        - every rank returns identical bits, on both paths;
        - gather path: equal to byzagg.aggregate(rule, G, ...) in one process;
        - sharded path, coordinate-wise rules: equal to byzagg.aggregate(rule, G, ...) too
          (each column's result depends on that column alone);
        - sharded path, distance rules: the rows are selected from the sum, in rank order,
          of the shards' exact float64 squared distances. That sum may differ from the
          whole matrix's sums in the last bits (another order of addition), so where two
          candidates' scores tie to within rounding the selection - and then the result -
          can differ from byzagg.<rule>(G); for the same selection the result is the same
          bits. byzagg.distributed.simulate(G, rule, f, path='sharded') reproduces the
          sharded result exactly in one process.

    Non-finite values follow the rule's policy (API.md): e.g. a row with NaN is never
    selected by Krum while a finite row remains, on both paths.

    Raises:
        ValueError/TypeError (on every rank, before data moves): ranks disagree on size,
        dtype, rule, f, path or parameters; the rule's requirement on n and f fails.
        RankFailureError: a collective failed (a rank crashed, hung past the timeout...);
        names the ranks that did not reach or report the call.

    >>> out = byzagg.distributed.robust_allreduce(grad, "krum", f=1)
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("robust_allreduce: torch.distributed is not initialised (call init_process_group first)")
    timeout = as_timedelta(timeout)
    n = dist.get_world_size(group)
    me = dist.get_rank(group)
    ranks = group_ranks(group)
    label = rule if isinstance(rule, str) else getattr(rule, "__qualname__", "callable")
    run = _Runner(group, f"robust_allreduce({label!r})", timeout, fault_grace_s)

    # 1. the header: every rank sees what every other rank is calling with
    header = _header(tensor, rule, f, path, params)
    if isinstance(tensor, torch.Tensor):
        header = header.to(tensor.device)
    headers = torch.empty(n, header.numel(), dtype=torch.int64, device=header.device)
    run(dist.all_gather, list(headers.unbind(0)), header)
    _check_headers(headers.cpu(), ranks)
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"robust_allreduce: tensor must be a torch.Tensor, got {type(tensor).__name__}")
    if tensor.dtype not in _DTYPES:
        raise TypeError(f"robust_allreduce: tensor must have a floating dtype, got {tensor.dtype}")
    if not callable(rule) and rule not in byzagg.RULES:
        raise ValueError(f"robust_allreduce: unknown rule {rule!r}; known rules: {', '.join(byzagg.RULES)}")
    d = tensor.numel()
    if d == 0:
        raise ValueError("robust_allreduce: empty tensor")
    path = choose_path(rule, n, d, path)
    f = _check_rule_arguments(rule, n, f, params)
    x = tensor.detach().reshape(-1).contiguous()

    # 2a. gather path
    if path == "gather":
        G = torch.empty(n, d, dtype=x.dtype, device=x.device)
        run(dist.all_gather, list(G.unbind(0)), x)
        result = _apply(rule, G, f, params)
        return result.reshape(tensor.shape) if result.dim() == 1 else result.reshape(result.shape[0], *tensor.shape)

    # 2b. sharded path: my shard of every row
    bounds = _shard_bounds(d, n)
    widths = [bounds[r + 1] - bounds[r] for r in range(n)]
    width = widths[me]
    received = torch.empty(n * width, dtype=x.dtype, device=x.device)
    run(dist.all_to_all_single, received, x, [width] * n, widths)
    S = received.view(n, width)
    selected = None
    if rule in DISTANCE_RULES:
        partial = _distance_partial(S)
        parts = torch.empty(n, *partial.shape, dtype=partial.dtype, device=partial.device)
        run(dist.all_gather, list(parts.unbind(0)), partial)
        D, finite = _combine_partials(list(parts.unbind(0)))
        selected = _select(rule, D, finite, f, params)
    shard = _finish_shard(rule, S, selected, f, params)
    widest = max(widths)
    padded = torch.zeros(widest, dtype=x.dtype, device=x.device)
    padded[:width] = shard
    gathered = torch.empty(n, widest, dtype=x.dtype, device=x.device)
    run(dist.all_gather, list(gathered.unbind(0)), padded)
    result = torch.cat([gathered[r, : widths[r]] for r in range(n)])
    return result.reshape(tensor.shape)


def traffic_bytes(rule: str, n: int, d: int, element_size: int = 4, path: str = "auto") -> dict:
    """Bytes each rank sends (= receives, up to rounding) in one robust_allreduce, by step.

    gather: header + (n - 1) d elements (all_gather of the rows);
    sharded: header + (n - 1) d / n (all_to_all) + (n - 1) ceil(d / n) (all_gather of the
    result's shards) elements, plus, for distance rules, (n - 1) n (n + 1) float64 (the
    shards' squared distances). A ring all_reduce moves 2 (n - 1) d / n elements.
    """
    path = choose_path(rule, n, d, path)
    header = (n - 1) * len(_HEADER_FIELDS) * 8
    steps = {"header": header}
    if path == "gather":
        steps["all_gather rows"] = (n - 1) * d * element_size
    else:
        steps["all_to_all shards"] = (d - d // n) * element_size  # what leaves: every shard but mine (about)
        if rule in DISTANCE_RULES:
            steps["all_gather distances"] = (n - 1) * n * (n + 1) * 8
        steps["all_gather result"] = (n - 1) * (-(-d // n)) * element_size
    steps["total"] = sum(steps.values())
    steps["path"] = path
    steps["all_reduce (ring) for comparison"] = 2 * (n - 1) * d * element_size // n
    return steps

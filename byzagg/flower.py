"""byzagg inside Flower: a robust strategy for Flower's message API (flwr.serverapp.strategy).

    from byzagg.flower import Robust
    strategy = Robust("krum", f=3)                        # any rule of byzagg.RULES
    strategy = Robust("geometric_median")
    strategy = Robust("trimmed_mean", f=2, pre="nnm")     # nearest-neighbour mixing first
    result = strategy.start(grid=grid, initial_arrays=ArrayRecord(model.state_dict()), num_rounds=5)

An optional extra: `pip install "byzagg[flower]"` (flwr pinned to the tested version).
`import byzagg` never imports this module nor Flower.

What a round does (aggregate_train):
1. Replies with an error (failed clients) are dropped, and so are malformed replies (not
   exactly one ArrayRecord, other keys than the global model's, another shape, a float
   array where the model has an integer one or the reverse, a non-NumPy serialisation):
   a malformed reply cannot stop the server; it counts as failed. n = the replies left.
2. Each reply's floating arrays are laid in one row of an (n, d) tensor by byzagg.flatten,
   in the model's float dtype (the promoted dtype of its floating arrays, or `dtype`), and
   the global model (the one sent in configure_train) is subtracted from every row: the
   updates, client weights minus global model. The tensor then moves to `device`.
3. The rule runs on it: optionally a pre-aggregation first (pre="nnm": byzagg.nnm with f;
   pre="bucketing": byzagg.bucketing with pre_params["s"], seeded per round), then
   byzagg.aggregate(rule, G, f=f, **params). The rule's requirement on n is checked every
   round: a round with fewer replies than `min_replies` (found when the strategy is built,
   by asking the rule itself) or whose call raises a ValueError (the rule's checks, e.g.
   mda's subset limit) keeps the global model (aggregate_train returns None, which
   Strategy.start reads as "keep the model") and logs why; `history` records it.
4. The aggregate is unflattened and added to the global model; each array gets its
   original dtype again.

Non-floating arrays (batch norm's num_batches_tracked, integer buffers, booleans) are never
put through the rule. non_float="median" (the default) takes, per element, the lower
median of the replies' values (an integer that a majority of honest replies brackets: fewer
than half the replies cannot move it outside the honest values); non_float="global" keeps
the global model's value.

Weights: the num-examples a client reports are ignored by default (weighted=False): a
Byzantine client can inflate them at will. weighted=True passes them as the weights of
geometric_median (or makes "average" the weighted mean, FedAvg on updates); the other rules
have no weights and refuse it. Train metrics are still averaged by FedAvg's
train_metrics_aggr_fn, weighted by num-examples: a report only, it never touches the model
(a round whose replies lack the key reports no metrics instead of failing).

Non-finite values in a reply are kept: the rules handle them (API.md, "Non-finite rows";
e.g. median, krum and geometric_median resist up to f such clients, average does not).
"""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from logging import INFO, WARNING

import numpy as np
import torch

import byzagg

try:
    from flwr.app import Array, ArrayRecord, ConfigRecord, Message, MetricRecord, RecordDict
    from flwr.serverapp.strategy import FedAvg
    from flwr.supercore import log
except ImportError as error:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        'byzagg.flower needs Flower: pip install "byzagg[flower]" (flwr[simulation]==1.42.0)'
    ) from error

__all__ = ["NON_FLOAT_POLICIES", "PRE_AGGREGATIONS", "Robust", "RoundReport"]

PRE_AGGREGATIONS = ("nnm", "bucketing")
NON_FLOAT_POLICIES = ("median", "global")
# The rules that can use the clients' num-examples as weights (weighted=True).
WEIGHTED_RULES = ("average", "geometric_median")
# The search for the least n a rule accepts stops here (a rule refusing every n up to it
# has a bad parameter, and its error is raised).
_MAX_SEARCHED_N = 1024
_FAILED_LOG_LIMIT = 10


@dataclass
class RoundReport:
    """What aggregate_train did in one round (Robust.history keeps one per round).

    received: replies; failed: replies carrying an error; malformed: replies dropped as not
    matching the global model (node id and why); used: the n the rule ran on;
    skipped: why the global model was kept, or None when it was updated; seconds: time of
    the aggregation (decoding, rule, encoding).
    """

    server_round: int
    received: int
    failed: int
    malformed: list[tuple[int, str]]
    used: int
    skipped: str | None
    seconds: float


def _is_float(dtype: np.dtype) -> bool:
    return np.issubdtype(dtype, np.floating)


def _to_tensor(array: Array) -> torch.Tensor:
    """An Array (NumPy serialisation) as a CPU tensor, in native byte order."""
    value = array.numpy()
    if not value.dtype.isnative:
        value = value.astype(value.dtype.newbyteorder("="))
    if not value.flags.writeable:
        value = value.copy()
    return torch.from_numpy(value)


def _to_array(tensor: torch.Tensor) -> Array:
    return Array(np.asarray(tensor.detach().cpu().numpy()))  # np.save keeps 0-d shapes


def _rule_function(name: str):
    return getattr(byzagg, name)


class Robust(FedAvg):
    """A Flower strategy that aggregates the clients' updates with a byzagg rule.

    Args:
        rule: a name of byzagg.RULES (bucketing and nnm return several rows: use them as
            `pre`, not as the rule).
        f: the number of Byzantine clients tolerated, given to the rules that take it
            (checked and ignored by the others, as byzagg.aggregate does); also nnm's f.
        pre: None, "nnm" or "bucketing": a pre-aggregation applied to the updates first.
        pre_params: the pre-aggregation's parameters (bucketing: {"s": 2}).
        weighted: use the replies' num-examples (weighted_by_key) as weights; only for
            "average" and "geometric_median". Default False: a client can lie about them.
        non_float: "median" (default) or "global", for the non-floating arrays (module doc).
        dtype: the dtype of the (n, d) matrix; default the model's float dtype.
        device: where the rule runs ("cpu", "cuda"...).
        seed: bucketing's permutation in round r comes from torch.Generator seeded seed + r.
        **params: the rule's own parameters (krum's m, centered_clipping's tau and iters,
            geometric_median's eps, max_iter, tol, brsgd's beta and threshold...).
        The other keywords are FedAvg's (sampling fractions and minima, record keys,
        metric aggregation functions).

    Raises ValueError or TypeError at construction for an unknown rule or pre-aggregation,
    a misspelled or invalid parameter, or weighted=True for a rule without weights.

    Attributes:
        min_replies: the least number of valid replies with which the rule can run
            (e.g. krum with f=3: 9). Set min_train_nodes at least this high.
        history: one RoundReport per aggregate_train call.
    """

    # pylint: disable=too-many-arguments, too-many-instance-attributes, too-many-locals
    def __init__(
        self,
        rule: str,
        f: int | None = None,
        *,
        pre: str | None = None,
        pre_params: dict | None = None,
        weighted: bool = False,
        non_float: str = "median",
        dtype: torch.dtype | None = None,
        device: str | torch.device = "cpu",
        seed: int = 0,
        fraction_train: float = 1.0,
        fraction_evaluate: float = 1.0,
        min_train_nodes: int = 2,
        min_evaluate_nodes: int = 2,
        min_available_nodes: int = 2,
        weighted_by_key: str = "num-examples",
        arrayrecord_key: str = "arrays",
        configrecord_key: str = "config",
        train_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        evaluate_metrics_aggr_fn: Callable[[list[RecordDict], str], MetricRecord] | None = None,
        **params,
    ) -> None:
        super().__init__(
            fraction_train=fraction_train,
            fraction_evaluate=fraction_evaluate,
            min_train_nodes=min_train_nodes,
            min_evaluate_nodes=min_evaluate_nodes,
            min_available_nodes=min_available_nodes,
            weighted_by_key=weighted_by_key,
            arrayrecord_key=arrayrecord_key,
            configrecord_key=configrecord_key,
            train_metrics_aggr_fn=train_metrics_aggr_fn,
            evaluate_metrics_aggr_fn=evaluate_metrics_aggr_fn,
        )
        if not isinstance(rule, str) or rule not in byzagg.RULES:
            raise ValueError(f"Robust: unknown rule {rule!r}; known rules: {', '.join(byzagg.RULES)}")
        if rule in PRE_AGGREGATIONS:
            raise ValueError(f"Robust: {rule} returns one row per worker; use it as pre={rule!r} before a rule")
        if pre is not None and pre not in PRE_AGGREGATIONS:
            raise ValueError(f"Robust: unknown pre-aggregation {pre!r}; known: {', '.join(PRE_AGGREGATIONS)}")
        if pre is None and pre_params:
            raise ValueError("Robust: pre_params given without pre")
        if pre == "nnm" and f is None:
            raise TypeError("Robust: pre='nnm' needs f")
        if non_float not in NON_FLOAT_POLICIES:
            raise ValueError(f"Robust: non_float must be one of {', '.join(NON_FLOAT_POLICIES)}, got {non_float!r}")
        if not isinstance(weighted, bool):
            raise TypeError(f"Robust: weighted must be a bool, got {weighted!r}")
        if weighted and rule not in WEIGHTED_RULES:
            raise ValueError(
                f"Robust: weighted=True needs a rule that takes weights ({', '.join(WEIGHTED_RULES)}), got {rule!r}"
            )
        if "weights" in params:
            raise ValueError("Robust: per-client weights change every round; use weighted=True")
        if dtype is not None and dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
            raise TypeError(f"Robust: dtype must be a floating torch dtype, got {dtype!r}")
        # out= is left out: each round's result is a new tensor handed to Flower's records
        accepted = set(inspect.signature(_rule_function(rule)).parameters) - {"G", "f", "out"}
        unknown = sorted(set(params) - accepted)
        if unknown:
            raise TypeError(
                f"Robust: rule {rule!r} has no parameter {', '.join(unknown)}; "
                f"its parameters: {', '.join(sorted(accepted)) or 'none'}"
            )
        self.rule = rule
        self.f = f
        self.pre = pre
        self.pre_params = dict(pre_params or {})
        self.params = dict(params)
        self.weighted = weighted
        self.non_float = non_float
        self.dtype = dtype
        self.device = torch.device(device)
        self.seed = int(seed)
        self.history: list[RoundReport] = []
        self._global: dict[str, torch.Tensor] | None = None
        self.min_replies = self._least_n()

    # ------------------------------------------------------------------------------------
    # the rule

    def _run_rule(self, G: torch.Tensor, weights: torch.Tensor | None, server_round: int) -> torch.Tensor:
        """The pre-aggregation, then the rule, on the (n, d) updates G: the (d,) aggregate."""
        if self.pre == "nnm":
            G = byzagg.nnm(G, self.f, **self.pre_params)
        elif self.pre == "bucketing":
            generator = torch.Generator().manual_seed(self.seed + server_round)
            G = byzagg.bucketing(G, generator=generator, **self.pre_params)
            weights = None  # a bucket is a mean of clients: num-examples no longer apply
        if self.rule == "average" and weights is not None:
            w = (weights / weights.sum()).to(G.dtype if G.dtype == torch.float64 else torch.float32)
            return (w @ G.to(w.dtype)).to(G.dtype)
        params = dict(self.params)
        if weights is not None:
            params["weights"] = weights
        return byzagg.aggregate(self.rule, G, f=self.f, **params)

    def _least_n(self) -> int:
        """The least n for which the configured rule runs (asked of the rule itself, on a
        tiny matrix): each rule's requirement on n, f, m, s... without a copy of it here."""
        last_error: Exception | None = None
        for n in range(1, _MAX_SEARCHED_N + 1):
            weights = torch.ones(n, dtype=torch.float64) if self.weighted else None
            try:
                self._run_rule(torch.zeros((n, 1), dtype=torch.float64), weights, 0)
                return n
            except ValueError as error:
                if " requires " not in str(error):  # a bad parameter, not a requirement on n
                    raise ValueError(f"Robust({self.rule!r}): {error}") from error
                last_error = error
            except TypeError as error:  # a parameter of a wrong type: the same at every n
                raise TypeError(f"Robust({self.rule!r}): {error}") from error
        raise ValueError(f"Robust({self.rule!r}): the rule accepts no n up to {_MAX_SEARCHED_N}: {last_error}")

    def requirement_unmet(self, n: int) -> str | None:
        """Why the rule cannot run on n replies (its own message), or None if it can."""
        if n >= self.min_replies:
            return None
        if n == 0:
            return "no valid reply"
        weights = torch.ones(n, dtype=torch.float64) if self.weighted else None
        try:
            self._run_rule(torch.zeros((n, 1), dtype=torch.float64), weights, 0)
        except ValueError as error:
            return f"{error} (at least {self.min_replies} replies needed)"
        return f"at least {self.min_replies} replies needed, got n={n}"

    def describe(self) -> str:
        """e.g. "krum(f=3)" or "trimmed_mean(f=2) after nnm"."""
        args = ([] if self.f is None else [f"f={self.f}"]) + [f"{k}={v!r}" for k, v in self.params.items()]
        text = f"{self.rule}({', '.join(args)})"
        if self.pre is not None:
            pre_args = ", ".join(f"{k}={v!r}" for k, v in self.pre_params.items())
            text += f" after {self.pre}({pre_args})"
        return text

    def summary(self) -> None:
        """Log summary configuration of the strategy."""
        log(INFO, "\t├──> byzagg Robust settings:")
        log(INFO, "\t│\t├── Rule: %s (byzagg backend: %s)", self.describe(), byzagg.backend())
        log(INFO, "\t│\t├── Least number of replies: %d", self.min_replies)
        log(INFO, "\t│\t├── Weighted by num-examples: %s", self.weighted)
        log(INFO, "\t│\t└── Non-floating arrays: %s", self.non_float)
        if self.min_train_nodes < self.min_replies:
            log(
                WARNING,
                "min_train_nodes=%d is below the %d replies that %s needs: such rounds keep the model",
                self.min_train_nodes,
                self.min_replies,
                self.describe(),
            )
        super().summary()

    # ------------------------------------------------------------------------------------
    # rounds

    def remember_global(self, arrays: ArrayRecord) -> None:
        """Keep the global model that the next replies are updates of. configure_train
        calls it; call it yourself when you drive aggregate_train directly."""
        self._global = {key: _to_tensor(array) for key, array in arrays.items()}
        if not any(t.is_floating_point() for t in self._global.values()):
            raise ValueError("Robust: the global model has no floating array to aggregate")

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid) -> Iterable[Message]:
        """FedAvg's configure_train, remembering the global model sent."""
        self.remember_global(arrays)
        return super().configure_train(server_round, arrays, config, grid)

    def _model_dtype(self) -> torch.dtype:
        if self.dtype is not None:
            return self.dtype
        dtype = None
        for t in self._global.values():
            if t.is_floating_point():
                dtype = t.dtype if dtype is None else torch.promote_types(dtype, t.dtype)
        return dtype

    def _read_reply(self, message: Message) -> tuple[dict[str, torch.Tensor] | None, str | None]:
        """The reply's arrays as tensors, or None and why it is malformed."""
        content = message.content
        records = content.array_records
        if len(records) != 1:
            return None, f"expected one ArrayRecord, got {len(records)}"
        record = next(iter(records.values()))
        if set(record.keys()) != set(self._global.keys()):
            missing = sorted(set(self._global) - set(record.keys()))
            extra = sorted(set(record.keys()) - set(self._global))
            return None, f"keys differ from the global model's (missing {missing[:3]}, extra {extra[:3]})"
        tensors = {}
        for key, reference in self._global.items():
            try:
                tensor = _to_tensor(record[key])
            except (TypeError, ValueError) as error:
                return None, f"array {key!r} cannot be read: {error}"
            if tensor.shape != reference.shape:
                return None, f"array {key!r} has shape {tuple(tensor.shape)}, the model {tuple(reference.shape)}"
            if tensor.is_floating_point() != reference.is_floating_point() or tensor.is_complex():
                return None, f"array {key!r} has dtype {tensor.dtype}, the model {reference.dtype}"
            tensors[key] = tensor
        return tensors, None

    def _weights_of(self, replies: list[Message]) -> tuple[torch.Tensor | None, str | None]:
        values = []
        for message in replies:
            metrics = list(message.content.metric_records.values())
            value = metrics[0].get(self.weighted_by_key) if len(metrics) == 1 else None
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
                return None, f"reply from node {message.metadata.src_node_id} has no valid {self.weighted_by_key!r}"
            values.append(float(value))
        weights = torch.tensor(values, dtype=torch.float64)
        if not weights.sum() > 0:
            return None, f"the {self.weighted_by_key!r} of the replies sum to 0"
        return weights, None

    def _metrics(self, replies: list[Message]) -> MetricRecord | None:
        contents = [m.content for m in replies]
        for content in contents:
            records = list(content.metric_records.values())
            if len(records) != 1 or not isinstance(records[0].get(self.weighted_by_key), (int, float)):
                return None
        try:
            return self.train_metrics_aggr_fn(contents, self.weighted_by_key)
        except (ArithmeticError, TypeError, ValueError) as error:  # a report only: never stop the round
            log(WARNING, "Robust: train metrics not aggregated: %s", error)
            return None

    def aggregate_train(
        self, server_round: int, replies: Iterable[Message]
    ) -> tuple[ArrayRecord | None, MetricRecord | None]:
        """Aggregate the replies' updates with the rule (module doc); (None, None) keeps the
        global model when the round cannot meet the rule's requirement."""
        start = time.perf_counter()
        if self._global is None:
            raise RuntimeError("Robust.aggregate_train: no global model; configure_train (or remember_global) first")
        replies = list(replies)
        failed = [m for m in replies if m.has_error()]
        for message in failed[:_FAILED_LOG_LIMIT]:
            log(INFO, "\t> Robust: node %d failed: %s", message.metadata.src_node_id, message.error.reason)
        used_messages, updates_of, malformed = [], [], []
        for message in replies:
            if message.has_error():
                continue
            tensors, why = self._read_reply(message)
            if tensors is None:
                malformed.append((message.metadata.src_node_id, why))
                log(WARNING, "\t> Robust: reply of node %d dropped: %s", message.metadata.src_node_id, why)
                continue
            used_messages.append(message)
            updates_of.append(tensors)
        n = len(used_messages)
        log(
            INFO,
            "aggregate_train: %d replies, %d failed, %d malformed: %s on n=%d",
            len(replies),
            len(failed),
            len(malformed),
            self.describe(),
            n,
        )

        def keep_model(reason: str):
            log(WARNING, "Robust round %d keeps the global model: %s", server_round, reason)
            self.history.append(
                RoundReport(server_round, len(replies), len(failed), malformed, n, reason, time.perf_counter() - start)
            )
            return None, None

        unmet = self.requirement_unmet(n)
        if unmet is not None:
            return keep_model(unmet)
        weights = None
        if self.weighted:
            weights, why = self._weights_of(used_messages)
            if weights is None:
                return keep_model(why)

        dtype = self._model_dtype()
        float_keys = [k for k, t in self._global.items() if t.is_floating_point()]
        # The replies' floating arrays as rows (one copy each, cast to the model's float
        # dtype), then the global model subtracted from every row at once: the updates.
        G, spec = byzagg.flatten([{k: tensors.pop(k) for k in float_keys} for tensors in updates_of], dtype=dtype)
        global_row, _ = byzagg.flatten([{k: self._global[k] for k in float_keys}], dtype=dtype)
        G.sub_(global_row)
        G = G.to(self.device)
        try:
            aggregate = self._run_rule(G, None if weights is None else weights.to(self.device), server_round)
        except ValueError as error:
            return keep_model(str(error))
        del G
        # cut in the matrix dtype: each array is rounded to its own dtype once, after the addition
        aggregate_parts = byzagg.unflatten(aggregate.cpu(), replace(spec, dtypes=(dtype,) * len(spec.dtypes)))

        result = ArrayRecord()
        for key, reference in self._global.items():
            if reference.is_floating_point():
                value = (reference.to(dtype) + aggregate_parts[key]).to(reference.dtype)
            elif self.non_float == "global":
                value = reference
            else:
                stack = torch.stack([tensors[key].to(reference.dtype) for tensors in updates_of])
                as_int = stack.to(torch.uint8) if stack.dtype == torch.bool else stack
                value = as_int.sort(dim=0).values[(n - 1) // 2].to(reference.dtype)
            result[key] = _to_array(value)
        metrics = self._metrics(used_messages)
        self.history.append(
            RoundReport(server_round, len(replies), len(failed), malformed, n, None, time.perf_counter() - start)
        )
        return result, metrics

"""A DDP communication hook that replaces the mean of the gradients by a byzagg rule.

    state = byzagg.distributed.RobustHookState("krum", f=1)
    ddp.register_comm_hook(state, byzagg.distributed.robust_hook)

DDP calls the hook once per gradient bucket (buckets in index order, `bucket.is_last()`
on the last one of a backward pass). The hook must return a torch.futures.Future whose
value is a tensor of the bucket buffer's shape and dtype: DDP copies it into the
parameters' .grad. The buffer holds this rank's raw gradients: with a comm hook DDP does
not divide them by the world size (its default hook does), and a rule's result is
already on the scale of one worker's gradient (an average of rows), so nothing is
divided here either.

- Coordinate-wise rules (average, median, trimmed_mean, meamed, phocas) run per bucket:
  a coordinate's result does not depend on the other coordinates.
- Whole-model rules (every other rule: Krum and Bulyan select whole workers, the
  geometric median and centered clipping use whole-vector norms) need the whole gradient
  vector: the hook keeps each bucket's buffer and returns an unfinished future, and when
  the last bucket arrives it aggregates the concatenation of the buckets (in bucket
  order: the same layout on every rank, DDP syncs it) and completes every future.

Rule state: for centered_clipping the hook's state keeps the last aggregate as the next
step's centre (`state.center`). RobustHookState has state_dict()/load_state_dict(), so
torch.distributed.checkpoint saves it with the model:

    dcp.save({"model": ddp.state_dict(), "hook": state}, checkpoint_id=path)
    dcp.load({"model": ddp.state_dict(), "hook": state}, checkpoint_id=path)

(dcp treats any object with state_dict/load_state_dict as Stateful; the centre is the
same on every rank, a replicated tensor.) Load before the first step after a restart.
"""

# no `from __future__ import annotations`: DDP checks the hook's return annotation object
import torch
import torch.distributed as dist

from ._allreduce import COORDINATE_RULES, DEFAULT_FAULT_GRACE_S, robust_allreduce


class RobustHookState:
    """What robust_hook needs: the rule, f, its parameters, the pending buckets, the state.

    Args:
        rule, f, **params: as for robust_allreduce (checked there, on every call).
        group: the process group (default: DDP's, i.e. the world).
        path, timeout, fault_grace_s: passed to robust_allreduce.
        whole_model: aggregate the whole gradient vector at the last bucket (default: True
            for every rule except the coordinate-wise ones, for which buckets suffice).
    """

    def __init__(
        self,
        rule: str,
        f=None,
        group=None,
        path: str = "auto",
        whole_model=None,
        timeout=None,
        fault_grace_s: float = DEFAULT_FAULT_GRACE_S,
        **params,
    ):
        if "center" in params:
            raise TypeError("RobustHookState: the centre of centered_clipping is the hook's state, not a parameter")
        self.rule = rule
        self.f = f
        self.group = group
        self.path = path
        self.whole_model = rule not in COORDINATE_RULES if whole_model is None else bool(whole_model)
        self.timeout = timeout
        self.fault_grace_s = fault_grace_s
        self.params = params
        self.center = None  # centered_clipping: the last aggregate
        self.steps = 0  # backward passes aggregated
        self._pending = []  # (buffer, unfinished future) of the buckets before the last

    def aggregate(self, vector: torch.Tensor) -> torch.Tensor:
        params = dict(self.params)
        if self.rule == "centered_clipping" and self.center is not None:
            params["center"] = self.center.to(vector.dtype)
        result = robust_allreduce(
            vector,
            self.rule,
            f=self.f,
            group=self.group,
            path=self.path,
            timeout=self.timeout,
            fault_grace_s=self.fault_grace_s,
            **params,
        )
        return result

    def _fail_pending(self, error: BaseException) -> None:
        pending, self._pending = self._pending, []
        for _, future in pending:
            future.set_exception(error)

    def state_dict(self) -> dict:
        """The rule's state (for torch.distributed.checkpoint or torch.save)."""
        center = self.center if self.center is not None else torch.empty(0)
        return {"center": center, "steps": torch.tensor(self.steps, dtype=torch.int64)}

    def load_state_dict(self, state: dict) -> None:
        center = state["center"]
        self.center = None if center.numel() == 0 else center.clone()
        self.steps = int(state["steps"])


def _done(value: torch.Tensor) -> torch.futures.Future[torch.Tensor]:
    future = torch.futures.Future()
    future.set_result(value)
    return future


def robust_hook(state: RobustHookState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """DDP comm hook: the rule's result for this bucket, a future of the bucket's shape.

    Register with ddp.register_comm_hook(RobustHookState(rule, f=...), robust_hook).
    The aggregation runs synchronously inside backward (not overlapped with it).
    """
    buffer = bucket.buffer()
    if not state.whole_model:
        result = state.aggregate(buffer)
        if bucket.is_last():
            state.steps += 1
        return _done(result)

    if bucket.index() == 0 and state._pending:  # an interrupted pass left buckets behind
        state._fail_pending(RuntimeError("robust_hook: a new backward pass started before the last bucket"))
    if not bucket.is_last():
        future = torch.futures.Future()
        state._pending.append((buffer, future))
        return future
    pending, state._pending = state._pending, []
    buffers = [b for b, _ in pending] + [buffer]
    try:
        result = state.aggregate(torch.cat([b.reshape(-1) for b in buffers]))
    except BaseException as error:
        for _, future in pending:
            future.set_exception(error)
        raise
    if state.rule == "centered_clipping":
        state.center = result.detach().clone()
    state.steps += 1
    pieces = torch.split(result, [b.numel() for b in buffers])
    for (b, future), piece in zip(pending, pieces):
        future.set_result(piece.reshape(b.shape))
    return _done(pieces[-1].reshape(buffer.shape))

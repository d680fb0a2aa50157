"""Errors that name the rank at fault, from the rendezvous store.

gloo reports a dead peer as "Connection closed by peer [127.0.0.1]:port" and a hung one as
a timeout, naming an address at best. To name ranks, every call of robust_allreduce is
numbered per group (all ranks make the same calls, so the numbers agree) and each rank
writes the number it has reached to the store before communicating. When a collective
fails, the rank records the failure and waits a short grace for its peers to record
theirs; then the ranks that have not reached the call (crashed or hung before it) are
named, or if every rank reached it, those that recorded no failure (crashed or hung
inside it; a rank still blocked in the collective waiting on another looks the same,
which is why ranks behind are named first).
"""

from __future__ import annotations

import time
from datetime import timedelta

import torch.distributed as dist

_PREFIX = "byzagg/distributed"
_call_numbers: dict[int, int] = {}


class RankFailureError(RuntimeError):
    """A collective of robust_allreduce failed; the message names the ranks at fault.

    ranks: the global ranks that did not reach the call or did not report its failure
    (crashed, hung or behind); empty when they could not be told.
    """

    def __init__(self, message: str, ranks: tuple[int, ...] = ()):
        super().__init__(message)
        self.ranks = ranks


def _store():
    try:
        return dist.distributed_c10d._get_default_store()
    except Exception:  # torch's private accessor moved or the group has no store
        return None


def group_ranks(group) -> list[int]:
    """The global ranks of the group's members, in group-rank order."""
    return list(dist.get_process_group_ranks(group)) if group is not None else list(range(dist.get_world_size()))


def _group_key(ranks: list[int]) -> str:
    if len(ranks) <= 16:
        return "-".join(str(r) for r in ranks)
    return f"{ranks[0]}+{len(ranks)}x{hash(tuple(ranks)) & 0xFFFFFFFF}"


class CallTracker:
    """Numbers one collective call on one group and records this rank's progress."""

    def __init__(self, group, what: str):
        self.group = group
        self.what = what
        self.ranks = group_ranks(group)
        self.key = _group_key(self.ranks)
        self.me = dist.get_rank()
        number = _call_numbers.get(id(group), 0) + 1
        _call_numbers[id(group)] = number
        self.number = number
        self.store = _store()
        if self.store is not None:
            try:
                self.store.set(f"{_PREFIX}/{self.key}/reached/{self.me}", str(number))
            except Exception:
                self.store = None

    def failure(self, error: BaseException, grace_s: float) -> RankFailureError:
        """The error to raise after `error` from a collective: names the ranks at fault."""
        head = f"{self.what} (call #{self.number} on this group) failed on rank {self.me}"
        if self.store is None:
            return RankFailureError(f"{head}: {error} (no rendezvous store to tell which rank failed)")
        others = [r for r in self.ranks if r != self.me]
        try:
            self.store.set(f"{_PREFIX}/{self.key}/failed/{self.number}/{self.me}", "1")
            deadline = time.monotonic() + grace_s
            failed_keys = {r: f"{_PREFIX}/{self.key}/failed/{self.number}/{r}" for r in others}
            while time.monotonic() < deadline:
                if self.store.check(list(failed_keys.values())):
                    break
                time.sleep(0.05)
            behind, silent = [], []
            for r in others:
                if self.store.check([failed_keys[r]]):
                    continue
                reached_key = f"{_PREFIX}/{self.key}/reached/{r}"
                reached = int(self.store.get(reached_key)) if self.store.check([reached_key]) else 0
                if reached < self.number:
                    behind.append((r, reached))
                else:
                    silent.append(r)
        except Exception as store_error:
            return RankFailureError(
                f"{head}: {error}; the rendezvous store is unreachable too ({store_error}): its host "
                "(rank 0 under init_method='tcp://', the agent under torchrun) may be the rank that failed"
            )
        parts = []
        if behind:
            parts.append(
                "not reached by "
                + ", ".join(f"rank {r} (last call reached: #{reached})" for r, reached in behind)
                + " - crashed, hung or behind"
            )
            if silent:  # blocked in the collective by the ranks behind, most likely
                parts.append("still waiting in it: " + ", ".join(f"rank {r}" for r in silent))
            named = tuple(r for r, _ in behind)
        else:
            if silent:
                parts.append(
                    "entered but neither finished nor reported a failure within "
                    f"{grace_s:g} s by " + ", ".join(f"rank {r}" for r in silent) + " - crashed or hung inside it"
                )
            named = tuple(silent)
        detail = "; ".join(parts) if parts else "every other rank reported the failure too (cause unknown)"
        return RankFailureError(f"{head}: {detail}. Underlying error: {error}", named)


def as_timedelta(timeout) -> timedelta | None:
    if timeout is None or isinstance(timeout, timedelta):
        return timeout
    return timedelta(seconds=float(timeout))

"""byzagg on torch.distributed: a robust all-reduce and a DDP communication hook.

Optional: `import byzagg` never imports this package. It calls byzagg's rules on data
moved by torch.distributed's collectives (gloo, NCCL), with no home-made transport and
no trusted parameter server: every rank computes the rule from the same data and gets
the same bits. Threat model: ranks that compute wrong values (bugs, corrupted data,
poisoned data or models), not an adversary inside another rank's communication stack.
See docs/distributed.md.

    import torch.distributed as dist, byzagg.distributed as bd
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=60))
    out = bd.robust_allreduce(grad, "krum", f=1)           # same bits on every rank
    ddp.register_comm_hook(bd.RobustHookState("median"), bd.robust_hook)
"""

from ._allreduce import (
    COORDINATE_RULES,
    DISTANCE_RULES,
    GATHER_ONLY_RULES,
    PATHS,
    SHARDED_RULES,
    choose_path,
    robust_allreduce,
    simulate,
    traffic_bytes,
)
from ._faults import RankFailureError
from ._hook import RobustHookState, robust_hook

__all__ = [
    "COORDINATE_RULES",
    "DISTANCE_RULES",
    "GATHER_ONLY_RULES",
    "PATHS",
    "SHARDED_RULES",
    "RankFailureError",
    "RobustHookState",
    "choose_path",
    "robust_allreduce",
    "robust_hook",
    "simulate",
    "traffic_bytes",
]

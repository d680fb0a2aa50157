"""byzagg: Byzantine-robust aggregation rules for PyTorch, native on CPU and CUDA.

    >>> import torch, byzagg
    >>> G = torch.randn(11, 1000)          # one row per worker
    >>> byzagg.krum(G, f=2)                # robust replacement for G.mean(0)

See docs/api.md (the contract) and README.md (the rule table). `byzagg.reference` holds the
same functions in plain PyTorch; `byzagg.backend()` tells which one runs.
"""

from ._api import RULES, make_rules
from ._flatten import FlatSpec, flatten, unflatten
from ._ops import backend, resolve
from ._reference_impl import MDA_MAX_SUBSETS
from . import reference

__version__ = "0.1.0"

globals().update(make_rules(resolve, __name__))

__all__ = [
    "RULES",
    "MDA_MAX_SUBSETS",
    "FlatSpec",
    "flatten",
    "unflatten",
    "aggregate",
    "average",
    "backend",
    "brsgd",
    "bucketing",
    "bulyan",
    "centered_clipping",
    "geometric_median",
    "krum",
    "krum_scores",
    "mda",
    "meamed",
    "median",
    "medoid",
    "multi_krum",
    "nnm",
    "pairwise_distances",
    "phocas",
    "reference",
    "trimmed_mean",
]

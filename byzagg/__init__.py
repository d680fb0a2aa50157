"""byzagg: Byzantine-robust aggregation rules for PyTorch, native on CPU and CUDA.

    >>> import torch, byzagg
    >>> G = torch.randn(11, 1000)          # one row per worker
    >>> byzagg.krum(G, f=2)                # robust replacement for G.mean(0)

See docs/api.md (what each rule computes and promises) and README.md. `byzagg.reference`
holds the same functions run on plain PyTorch; `byzagg.backend()` tells which one runs.
"""

from ._api import (
    aggregate,
    average,
    brsgd,
    bucketing,
    bulyan,
    centered_clipping,
    geometric_median,
    krum,
    krum_scores,
    mda,
    meamed,
    median,
    medoid,
    multi_krum,
    nnm,
    pairwise_distances,
    phocas,
    trimmed_mean,
)
from ._flatten import FlatSpec, flatten, unflatten
from ._ops import backend
from ._reference_impl import MDA_MAX_SUBSETS
from ._rules import RULES
from . import reference

__version__ = "0.1.0"

__all__ = [
    "RULES",
    "MDA_MAX_SUBSETS",
    "FlatSpec",
    "flatten",
    "unflatten",
    "aggregate",
    "backend",
    "reference",
    "krum_scores",
    "pairwise_distances",
    *RULES,
]

"""Every rule of byzagg in plain PyTorch: the fallback, and the oracle of the native tests.

Same functions, arguments, checks and results as `byzagg.<rule>` (see docs/api.md); runs on any
device and dtype. Implementations live in `byzagg._reference_impl`.
"""

from . import _reference_impl as _impl
from ._api import RULES, make_rules

_IMPLEMENTATIONS = {
    "average": _impl.average,
    "median": _impl.median,
    "trimmed_mean": _impl.trimmed_mean,
    "meamed": _impl.meamed,
    "phocas": _impl.phocas,
    "pairwise_distances": _impl.pairwise_distances,
    "krum_scores": _impl.krum_scores,
    "krum": _impl.krum,
    "bulyan": _impl.bulyan,
    "medoid": _impl.medoid,
    "geometric_median": _impl.geometric_median,
    "mda": _impl.mda,
    "centered_clipping": _impl.centered_clipping,
    "nnm": _impl.nnm,
    "bucketing": _impl.bucketing,
    "brsgd": _impl.brsgd,
}


def implementation(name, G):
    """The reference implementation of op `name` (used by the dispatcher as fallback)."""
    return _IMPLEMENTATIONS[name]


_PUBLIC = make_rules(implementation, __name__)
globals().update(_PUBLIC)

__all__ = ["RULES", *sorted(_PUBLIC)]

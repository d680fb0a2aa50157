"""Every public function of byzagg run on its plain-PyTorch implementation: the fallback,
and the oracle of the native tests.

Same arguments, checks, documentation and results as `byzagg.<rule>` (docs/api.md); runs on
any device and dtype. The implementations live in `byzagg._reference_impl`; these functions
are byzagg's own, called with the native kernels set aside.
"""

import functools

from . import _api
from ._ops import reference_only
from ._rules import RULES


def _on_reference(function):
    @functools.wraps(function)
    def call(*args, **kwargs):
        with reference_only():
            return function(*args, **kwargs)

    call.__module__ = __name__
    return call


average = _on_reference(_api.average)
median = _on_reference(_api.median)
trimmed_mean = _on_reference(_api.trimmed_mean)
meamed = _on_reference(_api.meamed)
phocas = _on_reference(_api.phocas)
pairwise_distances = _on_reference(_api.pairwise_distances)
krum_scores = _on_reference(_api.krum_scores)
krum = _on_reference(_api.krum)
multi_krum = _on_reference(_api.multi_krum)
bulyan = _on_reference(_api.bulyan)
medoid = _on_reference(_api.medoid)
geometric_median = _on_reference(_api.geometric_median)
mda = _on_reference(_api.mda)
centered_clipping = _on_reference(_api.centered_clipping)
nnm = _on_reference(_api.nnm)
bucketing = _on_reference(_api.bucketing)
brsgd = _on_reference(_api.brsgd)
aggregate = _on_reference(_api.aggregate)

__all__ = ["RULES", "aggregate", "krum_scores", "pairwise_distances", *RULES]

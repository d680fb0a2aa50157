"""Thin adapters to peer libraries, measured on the same tensors as byzagg.

ByzFL (the package `byzfl`, the optional `bench` extra) is installed with
`pip install --no-deps byzfl scipy`: its aggregators need only torch, numpy and scipy, but
`import byzfl` runs the package's `__init__`, which imports its training framework and,
through it, torchvision, which does not import beside torch 2.13 here. So before importing
ByzFL this module puts a minimal stand-in for torchvision (`torchvision`, `.datasets`,
`.transforms`, `.models`: empty modules whose attributes are inert placeholders) into
`sys.modules` when the real one cannot be imported. Only ByzFL's aggregator classes are
used; nothing that the stand-in replaces is ever called. No ByzFL code is copied here:
each adapter only constructs ByzFL's class with the matching parameters and calls it.

Differences of definition (timed anyway, as the peers' own rules):
median: torch.median (lower middle value for even n; byzagg averages the two);
Krum / Multi-Krum: scores over the n - f - 1 nearest rows (byzagg: n - f - 2), Multi-Krum
averages n - f rows; geometric median: ByzFL's smoothed Weiszfeld from zero with nu = 0.1
for T iterations (timed per iteration like byzagg's); centered clipping: L iterations
from zero, like byzagg's iters.
"""

from __future__ import annotations

import importlib
import sys
import types

BYZFL = None  # the byzfl.aggregators module when importable
BYZFL_VERSION = None
BYZFL_ERROR = None
TORCHVISION_STUBBED = False


class _Placeholder:
    """Stands for any torchvision object; fails only if actually used."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, item):
        if item.startswith("__"):
            raise AttributeError(item)
        return _Placeholder(f"{self._name}.{item}")

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"{self._name}: torchvision is stubbed by benchmarks/peers.py")


def _stub_module(name):
    mod = types.ModuleType(name)

    def __getattr__(item):  # PEP 562; dunders stay absent (torch probes e.g. __file__)
        if item.startswith("__"):
            raise AttributeError(item)
        return _Placeholder(f"{name}.{item}")

    mod.__getattr__ = __getattr__
    mod.__path__ = []  # a package, so that submodule imports resolve
    return mod


def _stub_torchvision():
    global TORCHVISION_STUBBED
    try:
        importlib.import_module("torchvision")
        return
    except Exception:
        for key in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[key]
    root = _stub_module("torchvision")
    sys.modules["torchvision"] = root
    for sub in ("datasets", "transforms", "models", "utils", "io", "ops"):
        mod = _stub_module(f"torchvision.{sub}")
        sys.modules[f"torchvision.{sub}"] = mod
        setattr(root, sub, mod)
    TORCHVISION_STUBBED = True


def _load():
    global BYZFL, BYZFL_VERSION, BYZFL_ERROR
    try:
        importlib.import_module("byzfl")
    except ModuleNotFoundError as exc:
        if exc.name == "byzfl":
            BYZFL_ERROR = "byzfl is not installed (pip install --no-deps byzfl scipy)"
            return
        _stub_torchvision()
    except Exception:
        _stub_torchvision()
    try:
        for key in [k for k in sys.modules if k == "byzfl" or k.startswith("byzfl.")]:
            if sys.modules[key] is None:
                del sys.modules[key]
        BYZFL = importlib.import_module("byzfl.aggregators")
        from importlib.metadata import version

        BYZFL_VERSION = version("byzfl")
    except Exception as exc:  # pragma: no cover - depends on the environment
        BYZFL, BYZFL_ERROR = None, f"byzfl does not import: {type(exc).__name__}: {exc}"


_load()


def byzfl_rules():
    """{rule name: adapter(G, **params)} for the ByzFL aggregators; empty when unavailable."""
    if BYZFL is None:
        return {}
    A = BYZFL
    return {
        "median": lambda G, **p: A.Median()(G),
        "trimmed_mean": lambda G, f, **p: A.TrMean(f=f)(G),
        "meamed": lambda G, f, **p: A.Meamed(f=f)(G),
        "krum": lambda G, f, **p: A.Krum(f=f)(G),
        "multi_krum": lambda G, f, **p: A.MultiKrum(f=f)(G),
        "geometric_median": lambda G, max_iter, **p: A.GeometricMedian(nu=0.1, T=int(max_iter))(G),
        # a fresh object per call: CenteredClipping keeps its last center between calls
        "centered_clipping": lambda G, tau, iters, **p: A.CenteredClipping(L=int(iters), tau=float(tau))(G),
    }

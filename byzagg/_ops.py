"""Chooses, per op and device, the native kernel (torch.ops.byzagg.*) or the reference.

Loading the extension never compiles anything and never raises: a missing or broken
extension leaves everything on the reference, and `backend()` says why.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
from pathlib import Path

import torch

import contextlib
import threading

from ._reference_impl import IMPLEMENTATIONS, OUT_IMPLEMENTATIONS

_BUILD_INFO_PATH = Path(__file__).with_name("_build_info.json")


def _read_build_info() -> dict | None:
    try:
        return json.loads(_BUILD_INFO_PATH.read_text())
    except (OSError, ValueError):
        return None


def _load_extension() -> tuple[bool, str]:
    if os.environ.get("BYZAGG_BACKEND", "").strip().lower() == "reference":
        return False, "forced by BYZAGG_BACKEND=reference"
    info = _read_build_info()
    try:
        importlib.import_module("byzagg._C")
    except ImportError as error:
        if info is None:
            return False, f"extension not built ({error})"
        return False, (
            f"extension failed to load: {error}; built for torch {info.get('torch')} "
            f"(Python {info.get('python')}), running torch {torch.__version__} "
            f"(Python {platform.python_version()})"
        )
    except Exception as error:  # a broken build must not break `import byzagg`
        return False, f"extension failed to load: {type(error).__name__}: {error}"
    return True, "loaded"


def _ops_with_schema() -> list[str]:
    """The ops of the rule table that have a schema in the extension (csrc/ops.cpp)."""
    names = []
    for name in sorted(IMPLEMENTATIONS):
        try:
            torch._C._dispatch_has_kernel_for_dispatch_key(f"byzagg::{name}", "CPU")
        except RuntimeError:  # no schema
            continue
        names.append(name)
    return names


def _ops_with_out(names) -> list[str]:
    """The ops of `names` whose schema has an out= overload, "<op>.out(..., *, Tensor(a!)
    out) -> ()" (csrc/out.h)."""
    return [name for name in names if "out" in getattr(torch.ops.byzagg, name).overloads()]


NATIVE_LOADED, LOAD_STATUS = _load_extension()
SCHEMA_OPS = _ops_with_schema() if NATIVE_LOADED else []
OUT_OPS = _ops_with_out(SCHEMA_OPS) if NATIVE_LOADED else []
if NATIVE_LOADED:
    from . import _autograd, _fake

    _fake.register(SCHEMA_OPS, OUT_OPS)
    _autograd.register(SCHEMA_OPS)
BUILD_INFO = _read_build_info()

_DISPATCH_KEYS = {"cpu": "CPU", "cuda": "CUDA"}


def native_ops(device_type: str) -> list[str]:
    """Names of the ops with a native kernel for this device type ('cpu' or 'cuda')."""
    if not NATIVE_LOADED or device_type not in _DISPATCH_KEYS:
        return []
    key = _DISPATCH_KEYS[device_type]
    return [name for name in SCHEMA_OPS if torch._C._dispatch_has_kernel_for_dispatch_key(f"byzagg::{name}", key)]


# Looked up once, at import: resolve() must stay a plain dict lookup, which torch.compile
# traces without a graph break.
_NATIVE = {device_type: frozenset(native_ops(device_type)) for device_type in _DISPATCH_KEYS}
# The ops whose out= overload has a kernel for the device type.
_NATIVE_OUT = {
    device_type: frozenset(
        name
        for name in OUT_OPS
        if torch._C._dispatch_has_kernel_for_dispatch_key(f"byzagg::{name}.out", _DISPATCH_KEYS[device_type])
    )
    for device_type in _DISPATCH_KEYS
}


def _has_native(name: str, device_type: str) -> bool:
    return name in _NATIVE.get(device_type, ())


def resolve(name: str, G: torch.Tensor):
    """The implementation of op `name` for the matrix G: native when it exists for G's
    device, else the reference."""
    if _reference_calls and getattr(_THREAD, "reference_only", False):
        return IMPLEMENTATIONS[name]
    if _has_native(name, G.device.type):
        return getattr(torch.ops.byzagg, name)
    return IMPLEMENTATIONS[name]


def dispatch(name: str, G: torch.Tensor, *args):
    """Run op `name` on the validated (n, d) matrix G: every public function ends here."""
    return resolve(name, G)(G, *args)


def dispatch_out(name: str, G: torch.Tensor, *args, out: torch.Tensor) -> torch.Tensor:
    """Run op `name` on G writing its d-vector into `out` (checked by _validate.check_out;
    the result's shape, maybe the workers'), and return out. The native out= kernel writes
    straight into out's memory when out can be seen as a (d,) vector; the reference writes
    in place where it can (average), else its result is copied into out."""
    reference = _reference_calls and getattr(_THREAD, "reference_only", False)
    vector = out.view(-1) if out.dim() == 1 or out.is_contiguous() else None
    if vector is not None and not reference and name in _NATIVE_OUT.get(G.device.type, ()):
        getattr(torch.ops.byzagg, name).out(G, *args, out=vector)
        return out
    impl = resolve(name, G)
    if vector is not None and impl is IMPLEMENTATIONS[name] and name in OUT_IMPLEMENTATIONS:
        OUT_IMPLEMENTATIONS[name](G, *args, out=vector)
        return out
    out.copy_(impl(G, *args).view(out.shape))
    return out


# byzagg.reference runs byzagg's functions inside reference_only(). The flag is per thread;
# the count of reference calls in flight in any thread lets resolve() skip the thread-local
# lookup when there are none (a plain global read, which torch.compile traces without a
# graph break).
_THREAD = threading.local()
_reference_calls = 0
_reference_lock = threading.Lock()


@contextlib.contextmanager
def reference_only():
    """Within the block, this thread's calls run the reference implementations."""
    global _reference_calls
    previous = getattr(_THREAD, "reference_only", False)
    with _reference_lock:
        _reference_calls += 1
    _THREAD.reference_only = True
    try:
        yield
    finally:
        _THREAD.reference_only = previous
        with _reference_lock:
            _reference_calls -= 1


def cpu_isa() -> str | None:
    """The vector instruction set the native CPU kernels use now: "avx512", "avx2" or
    "generic" (BYZAGG_CPU_ISA caps it; every one gives the same bits); None without them."""
    if not NATIVE_LOADED:
        return None
    return torch.ops.byzagg.cpu_isa()


def backend(device: str | torch.device = "cpu") -> str:
    """What runs the rules on this device: native kernels, reference fallback, and why."""
    device_type = torch.device(device).type
    if not NATIVE_LOADED:
        return f"reference fallback on {device_type}: {LOAD_STATUS}"
    native = native_ops(device_type)
    if not native:
        return (
            f"reference fallback on {device_type}: the extension has no {device_type.upper()} kernels "
            f"(built with CUDA: {bool(BUILD_INFO and BUILD_INFO.get('cuda'))})"
        )
    rest = sorted(set(IMPLEMENTATIONS) - set(native))
    isa = f", vector ISA {cpu_isa()}" if device_type == "cpu" else ""
    text = f"native {device_type.upper()} (byzagg._C, torch {torch.__version__}{isa}): {', '.join(native)}"
    if rest:
        text += f"; reference for {', '.join(rest)}"
    return text

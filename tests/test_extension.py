"""The native extension: it loads when it was built, says which backend runs, and records
the torch it was built against."""

import json

import pytest
import torch

import byzagg
from byzagg import _ops, _rules

from utils import FORCED_REFERENCE, REQUIRE_NATIVE


def test_built_extension_loads():
    """If setup.py built the extension, it must load (an ABI mismatch must not go unseen)."""
    if FORCED_REFERENCE:
        assert not _ops.NATIVE_LOADED
        assert "BYZAGG_BACKEND=reference" in byzagg.backend()
        return
    if _ops.BUILD_INFO is None and not REQUIRE_NATIVE:
        pytest.skip("installed without the native extension (BYZAGG_NO_NATIVE)")
    assert _ops.NATIVE_LOADED, _ops.LOAD_STATUS
    assert byzagg.backend().startswith("native CPU"), byzagg.backend()
    assert set(_rules.family("coordinate")) <= set(_ops.native_ops("cpu"))


def test_backend_reports_reference_reason():
    text = byzagg.backend("cpu")
    assert text.startswith("native CPU") or ("reference fallback" in text and ":" in text)


def test_build_info_is_recorded():
    if _ops.BUILD_INFO is None:
        pytest.skip("installed without the native extension")
    assert _ops.BUILD_INFO["torch"] == torch.__version__, json.dumps(_ops.BUILD_INFO)

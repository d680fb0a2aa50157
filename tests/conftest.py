"""pytest hooks (plain helpers shared by the test modules are in utils.py).

CUDA tests carry the `cuda` marker: without a GPU they are skipped, unless
BYZAGG_REQUIRE_CUDA=1 turns every such skip into a failure (use it on GPU machines).
BYZAGG_REQUIRE_NATIVE=1 likewise fails the native tests when the extension did not load
(utils.require_native).
"""

import os

import pytest
import torch

REQUIRE_CUDA = os.environ.get("BYZAGG_REQUIRE_CUDA") == "1"
CUDA_AVAILABLE = torch.cuda.is_available()


def pytest_runtest_setup(item):
    if item.get_closest_marker("cuda") is not None and not CUDA_AVAILABLE:
        if REQUIRE_CUDA:
            pytest.fail("BYZAGG_REQUIRE_CUDA=1 but no CUDA device is available")
        pytest.skip("no CUDA device")

"""Shared fixtures: every registered backend as a parameter (SKIPPED where unavailable) and one tolerance table."""

from __future__ import annotations

import numpy as np
import pytest

from deepntk.backends.registry import backend_class, backend_names

# Relative tolerances per dtype, for comparisons against an independent oracle on identical weights.
RTOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 2e-4}


def relative_error(actual, expected) -> float:
    """max |actual − expected| / max |expected| (scale-aware, safe at zero entries)."""
    actual = np.asarray(actual, dtype=np.float64)
    expected = np.asarray(expected, dtype=np.float64)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = np.max(np.abs(expected))
    return float(np.max(np.abs(actual - expected)) / (scale if scale > 0 else 1.0))


def assert_close(actual, expected, rtol, what=""):
    err = relative_error(actual, expected)
    assert err < rtol, f"{what}: relative error {err:.3e} exceeds {rtol:.1e}"


def _backend_param(name):
    marks = [pytest.mark.gpu] if name == "cupy" else []
    return pytest.param(name, marks=marks, id=name)


@pytest.fixture(params=[_backend_param(n) for n in backend_names()])
def backend(request):
    """Each registered backend's name; SKIPPED (with the reason) where its library or device is missing."""
    ok, reason = backend_class(request.param).availability()
    if not ok:
        pytest.skip(f"backend {request.param} unavailable: {reason}")
    return request.param

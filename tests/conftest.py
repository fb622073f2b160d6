"""Shared fixtures: every registered backend as a parameter (SKIPPED where unavailable) and the one tolerance
table every comparison uses."""

from __future__ import annotations

import numpy as np
import pytest

from deepntk.backends.registry import availability, backend_names

# Relative tolerances, by what is compared. Every test takes its tolerance from here.
TOL = {
    "exact": 1e-15,               # the same arithmetic, or a closed-form special case
    "roundoff": 1e-14,            # the same sums in another order (another backend, a mirrored Gram)
    "reordering": 1e-13,          # longer sums reordered (a conv as loops vs patches, SymPy vs NumPy)
    "identity": 1e-12,            # an exact identity evaluated by another algorithm (per-network NTK, cross-backend)
    "oracle": 1e-10,              # float64 against an independent oracle (explicit Jacobian, ODE solve)
    "solve": 1e-9,                # linear solves and eigendecompositions of conditioned kernels
    "asymptotic": 1e-8,           # a limit reached to machine precision by a huge parameter; quadrature
    "long_time_flow": 1e-7,       # kernel flow at t = 1e7 against kernel regression
    "finite_difference": 1e-6,    # central differences against backpropagation
    "iterative": 1e-5,            # predictions of CG/Lanczos stopped at residual 1e-6, Grams of condition ≤ 1e11
    "float32": 2e-4,              # float32 against float64 on the same weights
    "trained_vs_limit_flow": 2e-2,  # a trained L = 1000 network against the limit kernel's flow (kernel spread ≈ 2%)
}
# The tolerance for float64 or float32 results against a float64 oracle.
RTOL = {np.dtype(np.float64): TOL["oracle"], np.dtype(np.float32): TOL["float32"]}


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


def wait_for(condition, seconds: float = 120.0) -> bool:
    """Poll `condition` every 50 ms until it holds (True) or `seconds` pass (False): for tests with processes."""
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def interrupt_once_saved(argv, parts_key: str, seconds: float = 300.0) -> tuple[dict, int]:
    """Run `argv` (a command writing its results folder out/) in its own process group, send it one SIGINT once
    it has saved out/results.json, and check that it stopped as the interrupt contract says: exit 130, no
    traceback, its last line naming the parts it kept. Returns (the saved results, the number of parts kept)."""
    import json
    import os
    import signal
    import subprocess

    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        assert wait_for(lambda: os.path.exists("out/results.json") or process.poll() is not None, seconds)
        assert process.poll() is None, "the run saved nothing before it ended"
        os.killpg(process.pid, signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr, stderr
    saved = json.load(open("out/results.json"))
    kept = len(saved[parts_key])
    assert saved["complete"] is False and kept >= 1, saved
    assert stderr.strip().splitlines()[-1] == (f"interrupted: the {kept} finished parts are kept in out; rerun the "
                                               f"same command with --resume to continue")
    return saved, kept


def resume_keeping(argv, kept: int, seconds: float = 600.0) -> dict:
    """Rerun `argv` with --resume; check that it finished and said it kept the `kept` parts. Returns the results."""
    import json
    import subprocess

    resumed = subprocess.run(argv + ["--resume"], capture_output=True, text=True, timeout=seconds)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming: the {kept} finished parts in out are kept" in resumed.stdout, resumed.stdout
    final = json.load(open("out/results.json"))
    assert final["complete"] is True, final
    return final


def _backend_param(name):
    marks = [pytest.mark.gpu] if name == "cupy" else []
    return pytest.param(name, marks=marks, id=name)


@pytest.fixture(params=[_backend_param(n) for n in backend_names()])
def backend(request):
    """Each registered backend's name; SKIPPED (with the reason) where its library or device is missing."""
    ok, reason = availability(request.param)
    if not ok:
        pytest.skip(f"backend {request.param} unavailable: {reason}")
    return request.param

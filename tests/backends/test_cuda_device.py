"""On a CUDA device (marked gpu; .ci/device-check runs them): the device's CNN limit kernel against the NumPy
reference. The dense kernels run on the device in the cross-backend suite (backend id 'cupy')."""

from __future__ import annotations

import numpy as np
import pytest

import deepntk
from deepntk.analytic import cnn_limit_kernel
from conftest import TOL, assert_close

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def device():
    from deepntk.backends.cupy_backend import cuda_unavailable_reason

    reason = cuda_unavailable_reason()
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("c,f,d,rho,beta", [(1, 3, 7, 0.8, 1.3), (2, 3, 5, 0.8, 1.3), (1, 3, 28, 0.8, 1.3),
                                            (1, 3, 7, 1 / 3, 1.0)])
def test_cnn_limit_kernel_on_the_device_equals_the_reference(c, f, d, rho, beta):
    """The last case has Table 1's scales: every correlation is near one, and the shorter polynomial runs."""
    rng = np.random.default_rng(d)
    X = rng.uniform(0.0, 1.0, size=(5 if d > 10 else 9, c, d, d))
    X[:2] *= rng.uniform(size=(2, 1, d, d)) < 0.35
    options = dict(outputs=2, rho=rho, beta=beta, filter_size=f, filter_variance="code")
    for A, B in ((X, None), (X[:2], X[1:])):
        assert_close(cnn_limit_kernel(A, B, pair_sum=deepntk.get_backend("cupy").cnn_pair_sum, **options),
                     cnn_limit_kernel(A, B, pair_sum="numpy", **options), TOL["identity"],
                     "CNN limit kernel on the device")

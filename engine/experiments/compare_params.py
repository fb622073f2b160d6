"""The user's own network against the theory (`deepntk compare params`, `deepntk.compare_with_theory`): its
scaled NTK Θ̃ against the limit Θ̃^∞ and the exact expectation E Θ̃ at its own (L, C_L), block by block, with
the statistics of `compare depth` (docs/finite-depth.md#comparing-a-network-with-the-theory)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..api import check_params, scaled_ntk
from ...base.errors import InputError
from .convergence import limit_and_expected
from .stats import error_means_and_intervals, mean_and_ci, relative_block_errors
from ..params import Ensemble
from ...base.validate import check_input_sets, warns_once_per_cause


@dataclass
class TheoryComparison:
    """Relative errors ‖Θ̃(x, x') − r(x, x')·I_k‖_F / ‖r(x, x')·I_k‖_F of every k×k block, for r = Θ̃^∞ (`limit`)
    and r = E Θ̃ at the network's (L, C_L) (`expected`): their mean over the pairs and networks and the largest.
    `offset` is mean(tr Θ̃/k − Θ̃^∞), beside its expectation mean(E Θ̃ − Θ̃^∞) and the asymptotic 1/C_L².

    The 95% intervals are over the networks of an ensemble, as in `compare depth` (each network's mean over the
    pairs is one draw; errors: `stats.error_means_and_intervals`, offsets: `stats.mean_and_ci`). One network is
    one draw: its intervals are nan, since the spread over its correlated input pairs says nothing about how
    another draw of the network would come out (docs/finite-depth.md#comparing-a-network-with-the-theory)."""

    arch: str
    depth: int
    C_L: float
    outputs: int
    networks: int
    pairs: int
    error_limit: float
    error_limit_interval: tuple
    max_error_limit: float
    error_expected: float
    error_expected_interval: tuple
    max_error_expected: float
    offset: float
    offset_ci: float
    expected_offset: float
    predicted_offset: float

    def as_dict(self) -> dict:
        return asdict(self)


@warns_once_per_cause
def compare_with_theory(params, X1, X2=None, *, backend=None) -> TheoryComparison:
    """Compare a network's scaled NTK with the infinite-depth theory at its own depth and C_L.

    Args:
        params: a `Params` (e.g. `deepntk.load_params("params.npz")`) or an `Ensemble` of networks.
        X1, X2: inputs as the architecture takes them ((N, d_in) or (N, c, d, d)); X2 None: the Gram of X1 with
            itself, each unordered pair counted once.
        backend: the backend that computes Θ̃ (None: the best installed).

    Returns:
        A `TheoryComparison` (docs/finite-depth.md#comparing-a-network-with-the-theory).
    """
    try:
        check_params(params)
    except TypeError as exc:
        raise InputError(str(exc)) from None
    spec = params.spec
    A, B = check_input_sets({"X1": X1, "X2": X2}, spec, pool=False)
    theta = np.asarray(scaled_ntk(params, A, B, backend=backend), dtype=np.float64)
    ensemble = isinstance(params, Ensemble)
    if not ensemble:
        theta = theta[None]
    limit, expected = limit_and_expected(spec, A, B, backend)
    # The pairs: all of X1 × X2, or the upper triangle (diagonal included) of a symmetric Gram.
    keep = np.triu(np.ones(limit.shape, dtype=bool)) if B is None else np.ones(limit.shape, dtype=bool)
    k = theta.shape[-1]
    err_limit = np.array([relative_block_errors(K, limit)[keep] for K in theta])
    err_expected = np.array([relative_block_errors(K, expected)[keep] for K in theta])
    offsets = np.array([(np.trace(K, axis1=-2, axis2=-1) / k - limit)[keep] for K in theta])

    def error_summary(errors):
        """(mean, (low, high)): the networks' mean errors and the 95% interval over networks (nan for one)."""
        mean, low, high = error_means_and_intervals(errors.mean(axis=1)[:, None])
        return float(mean[0]), (float(low[0]), float(high[0]))

    offset, offset_ci = mean_and_ci(offsets.mean(axis=1))
    return TheoryComparison(spec.arch, spec.depth, float(spec.C_L), k, len(theta), int(keep.sum()),
                            *error_summary(err_limit), float(err_limit.max()), *error_summary(err_expected),
                            float(err_expected.max()), offset, offset_ci, float(np.mean((expected - limit)[keep])),
                            1.0 / float(spec.C_L) ** 2)

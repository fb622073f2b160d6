"""Closed-form infinite-depth limit kernels, their finite-(L, C_L) expectations, and the wide MLP's infinite-width
kernels at any depth (docs/limit-kernels.md).

Never imports a backend or the engine: these are independent oracles for the simulated networks. The CNN's
pixel-pair sum runs by default on the fused CPU kernel where Numba is installed (imported only then), else on the
NumPy reference; `pair_sum="numpy"` asks for the reference (docs/limit-kernels.md#which-pair-sum-runs). The wide
MLP's Grams likewise map their pairs in one fused Numba pass where Numba is installed; `pair_map="numpy"` asks for
the array path (docs/limit-kernels.md#which-pair-map-runs).
"""

from .arccos import arccos_kernel
from .mlp import mlp_expected_kernel, mlp_limit_kernel
from .cnn import cnn_expected_kernel, cnn_limit_kernel
from .fig3 import fig3_inputs, fig3_limit_curve, fig3_target
from .flow import kernel_flow, kernel_regression, stack_kernel
from .wide import wide_nngp_kernel, wide_ntk_correlation_map, wide_ntk_kernel

__all__ = [
    "arccos_kernel",
    "mlp_limit_kernel",
    "mlp_expected_kernel",
    "cnn_limit_kernel",
    "cnn_expected_kernel",
    "fig3_inputs",
    "fig3_limit_curve",
    "fig3_target",
    "kernel_flow",
    "kernel_regression",
    "stack_kernel",
    "wide_nngp_kernel",
    "wide_ntk_kernel",
    "wide_ntk_correlation_map",
]

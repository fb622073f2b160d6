"""Compute backends: NumPy (the reference), Numba (fused CPU kernels), CuPy (GPU), and entry-point plugins."""

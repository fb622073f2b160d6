"""`import deepntk`, the CLI's --help and the NumPy backend must not import heavy optional libraries."""

import subprocess
import sys

HEAVY = ("numba", "cupy", "sympy", "matplotlib", "scipy.linalg", "dask", "distributed", "zarr")

PROBE = """
import sys
{body}
heavy = [m for m in {heavy!r} if m in sys.modules]
print('HEAVY=' + ','.join(heavy))
"""


def loaded_heavy_modules(body: str) -> str:
    code = PROBE.format(body=body, heavy=HEAVY)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]


def test_import_deepntk_is_light():
    assert loaded_heavy_modules("import deepntk, deepntk.analytic") == "HEAVY="


def test_the_closed_forms_reference_is_light():
    """`deepntk.analytic` imports Numba only for the fused pair sum: the NumPy reference of the CNN closed forms
    (pair_sum="numpy") and the MLP's closed forms load nothing heavy (docs/limit-kernels.md#which-pair-sum-runs)."""
    body = ("import numpy as np\n"
            "from deepntk.analytic import cnn_expected_kernel, cnn_limit_kernel, mlp_limit_kernel\n"
            "X = np.random.default_rng(0).uniform(size=(3, 1, 4, 4))\n"
            "cnn_limit_kernel(X, pair_sum='numpy'); cnn_expected_kernel(X, depth=3, C_L=2.0, pair_sum='numpy')\n"
            "mlp_limit_kernel(X.reshape(3, -1))")
    assert loaded_heavy_modules(body) == "HEAVY="


def test_cli_help_is_light():
    body = "from deepntk.cli.main import main\nfor c in ([], ['simulate'], ['bench'], ['ntk']):\n" \
           "    main(c + ['--help'])"
    assert loaded_heavy_modules(body) == "HEAVY="


def test_numpy_backend_is_light():
    body = ("import numpy as np, deepntk\n"
            "p = deepntk.init_params(deepntk.MLP(2, 1, 4, 2.0))\n"
            "deepntk.scaled_ntk(p, np.ones((2, 2)), backend='numpy')\n"
            "deepntk.forward(deepntk.init_params(deepntk.CNN(1, 3, 1, 3, 2.0)), np.ones((1, 1, 3, 3)), backend='numpy')")
    assert loaded_heavy_modules(body) == "HEAVY="


SPIN_PROBE = """
import builtins, os
at_numpy = []
real_import = builtins.__import__

def watching(name, *args, **kwargs):
    if name == 'numpy' and not at_numpy:
        at_numpy.append(os.environ.get('OPENBLAS_THREAD_TIMEOUT'))
    return real_import(name, *args, **kwargs)

builtins.__import__ = watching
import deepntk
print(at_numpy[0], os.environ['OPENBLAS_THREAD_TIMEOUT'])
"""


def test_openblas_spin_is_short_before_numpy_loads():
    """`import deepntk` sets OpenBLAS's spin timeout before NumPy (and so OpenBLAS) is first imported, and leaves a
    value the user set alone (docs/backends.md#blas-threads)."""
    import os

    def probe(**env):
        base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_THREAD_TIMEOUT"}
        done = subprocess.run([sys.executable, "-c", SPIN_PROBE], capture_output=True, text=True, check=True,
                              env={**base, **env})
        return done.stdout.split()

    assert probe() == ["16", "16"]
    assert probe(OPENBLAS_THREAD_TIMEOUT="28") == ["28", "28"]


def test_open_store_is_exported_and_light():
    """`from deepntk import open_store` (the README names it) works without loading Zarr or Dask until called."""
    assert loaded_heavy_modules("from deepntk import open_store\nassert open_store.__doc__") == "HEAVY="

"""Writing a backend plugin: your own implementation of deepntk's kernels, chosen by name like the built-ins.

A backend is a subclass of `deepntk.backends.base.Backend` (the NumPy backend is the reference to start
from); a package registers it under the entry-point group "deepntk.backends" in its pyproject.toml

    [project.entry-points."deepntk.backends"]
    jacobian = "backend_plugin:JacobianBackend"

and from then on `backend="jacobian"` (or `--backend jacobian` on the command line) runs it, and
`deepntk backends` lists it (docs/backends.md#who-chooses). Every method you do not override is the
reference's.

This example's backend overrides one method, `ntk`, the unscaled NTK of one network: where the reference
sums the layers' terms (a·a' + 1)·G Gᵀ without ever forming a gradient (docs/ntk.md), this one forms every
input's full parameter Jacobian J (N·k × P) by backpropagation and returns J Jᵀ, the NTK's definition. It
counts its calls too. Then it checks that `scaled_ntk(..., backend="jacobian")` agrees with the NumPy
backend to rounding (~1e-14) on two networks: two different computations of one kernel.

To register the plugin without building a package, the example writes the metadata that `pip install` of
such a package would write (a `.dist-info` folder with `entry_points.txt`) into its output folder and puts
that folder on `sys.path`. The entry point names this file as the module `backend_plugin`.

    python examples/backend_plugin.py              # L = 300, 40 inputs
    python examples/backend_plugin.py --small      # seconds
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import deepntk
from deepntk.backends.numpy_backend import NumpyBackend


class JacobianBackend(NumpyBackend):
    """The NumPy backend whose NTK is J Jᵀ from explicit per-input Jacobians (dense layers; others: the
    reference). Memory O(N·k·L·n²): for checking and teaching, not for large networks."""

    name = "jacobian"
    calls = 0  # a class attribute: one count for every instance the registry makes

    def ntk(self, net, X1, X2=None):
        """Unscaled NTK Θ(X1, X2), (N1, N2, k, k), of one packed network (`deepntk.engine.packed.PackedNet`:
        W (L, n, n), b (L, n), inputs X zero-padded to width n, outputs the first k units of the last layer)."""
        if net.kind != "dense":
            return super().ntk(net, X1, X2)
        type(self).calls += 1
        J1 = self.jacobian(net, X1)
        J2 = J1 if X2 is None else self.jacobian(net, X2)
        return np.einsum("ikp,jlp->ijkl", J1, J2)

    @staticmethod
    def jacobian(net, X):
        """∂f_j(x_i)/∂θ for every input i, output j and parameter θ (each layer's W then b): (N, k, P)."""
        W, b, k = net.W, net.b, net.outputs
        activations = [X]  # a^0 = x, a^l = ReLU(z^l): the input of layer l + 1
        for layer in range(net.depth - 1):
            activations.append(np.maximum(activations[-1] @ W[layer].T + b[layer], 0.0))
        # delta = ∂f/∂z^l, (N, k, n), from the last layer down; f = z^L's first k units.
        delta = np.broadcast_to(np.eye(k, net.width), (len(X), k, net.width)).copy()
        pieces = []
        for layer in range(net.depth - 1, -1, -1):
            a = activations[layer]
            # ∂f/∂W^l = delta ⊗ a^{l-1}, ∂f/∂b^l = delta
            pieces.append(np.concatenate([np.einsum("ikn,im->iknm", delta, a).reshape(len(X), k, -1), delta],
                                         axis=-1))
            if layer:
                delta = (delta @ W[layer]) * (a > 0)[:, None, :]
        return np.concatenate(pieces[::-1], axis=-1)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=300, help="layers L (default 300)")
    parser.add_argument("--points", type=int, default=40, help="inputs (default 40)")
    parser.add_argument("--small", action="store_true", help="L = 30, 10 inputs")
    parser.add_argument("--out", default=os.path.join("deepntk-examples-out", "backend_plugin"),
                        help="folder for the plugin's metadata (default ./deepntk-examples-out/backend_plugin)")
    args = parser.parse_args()
    if args.small:
        args.depth, args.points = 30, 10
    return args


def register_as_plugin(folder):
    """Write what `pip install` of a package declaring the entry point would write, and put it on sys.path.

    The entry point names this file as the module `backend_plugin`: its folder goes on sys.path too (it is
    there already when the file is run as a script)."""
    dist_info = os.path.join(folder, "deepntk_jacobian_backend-1.0.dist-info")
    os.makedirs(dist_info, exist_ok=True)
    with open(os.path.join(dist_info, "METADATA"), "w") as handle:
        handle.write("Metadata-Version: 2.1\nName: deepntk-jacobian-backend\nVersion: 1.0\n")
    with open(os.path.join(dist_info, "entry_points.txt"), "w") as handle:
        handle.write('[deepntk.backends]\njacobian = backend_plugin:JacobianBackend\n')
    for path in (os.path.dirname(os.path.abspath(__file__)), os.path.abspath(folder)):
        if path not in sys.path:
            sys.path.append(path)


def main():
    args = parse_args()
    register_as_plugin(args.out)
    rows = {row["name"]: row for row in deepntk.available_backends()}
    print(f"registered backends: {', '.join(sorted(rows))}; jacobian available: {rows['jacobian']['available']}")

    spec = deepntk.MLP(d_in=3, d_out=2, depth=args.depth, C_L=10.0)
    X = np.random.default_rng(0).uniform(0.05, 1.0, size=(args.points, 3))
    # Two networks: the paper's initialization, whose random units feed no later layer (docs/networks.md), and
    # PyTorch's default initialization, where every unit's ReLU gates the backpropagation.
    for init in ("paper", "kaiming-uniform"):
        params = deepntk.init_params(spec, init=init, seed=0)
        theta_plugin = deepntk.scaled_ntk(params, X, backend="jacobian")
        theta_numpy = deepntk.scaled_ntk(params, X, backend="numpy")
        difference = np.max(abs(theta_plugin - theta_numpy)) / np.max(abs(theta_numpy))
        print(f"check: scaled NTK, {init} init, {args.points} inputs: jacobian against numpy, largest relative "
              f"difference {difference:.1e} ({'agree' if difference < 1e-12 else 'DISAGREE'})")
    plugin = deepntk.get_backend("jacobian")
    print(f"the plugin's ntk ran {type(plugin).calls} times for {spec}; its class is "
          f"{type(plugin).__module__}.{type(plugin).__name__}")

if __name__ == "__main__":
    main()

"""Bringing PyTorch-trained weights into deepntk, and deepntk's networks out to PyTorch.

deepntk stores an MLP's layer l as `Params.weights[l - 1]` of shape (out, in) and `Params.biases[l - 1]` of
shape (out,): exactly the `weight` and `bias` of a PyTorch `nn.Linear` (docs/files.md#the-params-file-npz). The
network is z¹ = W¹x + b¹, z^l = W^l ReLU(z^{l−1}) + b^l, output f(x) = z^L (docs/networks.md): an
`nn.Sequential` of L `nn.Linear` layers with a ReLU between each two.

The example
1. draws a deep narrow MLP with the paper's initialization in deepntk and exports it to PyTorch (a model, and
   its `state_dict` saved with `torch.save`),
2. checks that PyTorch's autograd gives deepntk's loss gradients and deepntk's scaled NTK (float64, ~1e-12),
3. trains it a few hundred full-batch steps in PyTorch (MSELoss, the paper's step size 1/(4·L·C_L²)),
4. brings the trained weights back (`deepntk.Params`), checks the outputs agree, saves them as a deepntk params
   file, and compares the NTK before and after training with the limit (`deepntk.compare_with_theory`).

PyTorch is optional for deepntk: pip install torch (a CPU build is enough).

    python examples/pytorch_weights.py              # L = 200, 40 points, 300 steps
    python examples/pytorch_weights.py --small      # seconds
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

import deepntk

try:
    import torch
except ImportError:  # main() says how to install it
    torch = None


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--depth", type=int, default=200, help="layers L (default 200)")
    parser.add_argument("--C-L", dest="C_L", type=float, default=10.0, help="carrier scale C_L (default 10)")
    parser.add_argument("--points", type=int, default=40, help="training inputs (default 40)")
    parser.add_argument("--steps", type=int, default=300, help="full-batch gradient steps in PyTorch (default 300)")
    parser.add_argument("--small", action="store_true", help="L = 20, 12 points, 50 steps")
    parser.add_argument("--out", default=os.path.join("deepntk-examples-out", "pytorch_weights"),
                        help="folder for the params files (default ./deepntk-examples-out/pytorch_weights)")
    args = parser.parse_args()
    if args.small:
        args.depth, args.points, args.steps = 20, 12, 50
    return args


# ---- the mapping, both ways ------------------------------------------------------------------------------

def torch_mlp(spec):
    """An `nn.Sequential` with deepntk's MLP architecture (float64, weights to be filled in)."""
    from torch import nn

    layers = []
    for layer in range(1, spec.depth + 1):
        fan_out, fan_in = spec.weight_shape(layer)  # (out, in), nn.Linear's layout
        layers.append(nn.Linear(fan_in, fan_out, dtype=torch.float64))
        if layer < spec.depth:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def linear_layers(model):
    from torch import nn

    return [module for module in model if isinstance(module, nn.Linear)]


def to_torch(params):
    """deepntk → PyTorch: a model holding copies of the params' weights and biases."""
    model = torch_mlp(params.spec)
    with torch.no_grad():
        for linear, weight, bias in zip(linear_layers(model), params.weights, params.biases):
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
            linear.bias.copy_(torch.from_numpy(np.ascontiguousarray(bias)))
    return model


def from_torch(model, spec):
    """PyTorch → deepntk: `Params` holding copies of the model's weights (checked against the spec's shapes)."""
    weights = [linear.weight.detach().numpy().copy() for linear in linear_layers(model)]
    biases = [linear.bias.detach().numpy().copy() for linear in linear_layers(model)]
    return deepntk.Params(spec, weights, biases, init="custom")


# ---- PyTorch's own NTK, for the check ---------------------------------------------------------------------

def torch_scaled_ntk(model, X, spec):
    """Θ̃ = J Jᵀ / (L·C_L²) from PyTorch's autograd Jacobian of the outputs w.r.t. every parameter: (N, N, k, k)."""
    from torch.func import functional_call, jacrev

    parameters = {name: p.detach() for name, p in model.named_parameters()}
    jacobians = jacrev(lambda p: functional_call(model, p, (X,)))(parameters)  # each (N, k, *shape)
    J = torch.cat([j.reshape(j.shape[0], j.shape[1], -1) for j in jacobians.values()], dim=-1)  # (N, k, P)
    theta = torch.einsum("ikp,jlp->ijkl", J, J) / (spec.depth * spec.C_L**2)
    return theta.numpy()


def main():
    args = parse_args()
    if torch is None:
        sys.exit("pytorch_weights.py needs PyTorch: pip install torch (a CPU build is enough)")
    torch.manual_seed(0)

    spec = deepntk.MLP(d_in=3, d_out=2, depth=args.depth, C_L=args.C_L)
    rng = np.random.default_rng(0)
    X = rng.uniform(0.05, 1.0, size=(args.points, 3))  # the theory assumes inputs x > 0
    Y = np.stack([X[:, 0] * X[:, 1], np.sin(3 * X[:, 2])], axis=1)
    X_t, Y_t = torch.from_numpy(X), torch.from_numpy(Y)

    # 1. deepntk → PyTorch. At the paper's initialization the output is exactly 0 (docs/networks.md), so the
    # outputs alone would prove little: the gradients and the NTK are what training and the theory use.
    params = deepntk.init_params(spec, init="paper", seed=0)
    model = to_torch(params)
    os.makedirs(args.out, exist_ok=True)
    exported = os.path.join(args.out, "init_state_dict.pt")
    torch.save(model.state_dict(), exported)  # for `torch_mlp(spec).load_state_dict(torch.load(exported))`
    print(f"{spec}: {sum(p.numel() for p in model.parameters())} parameters, exported to PyTorch: {exported}")

    # 2. The loss gradients: deepntk's backpropagation against PyTorch's autograd. loss="mse" is MSELoss.
    loss, _, gradients = deepntk.loss_and_gradients(params, X, Y, loss="mse")
    torch_loss = torch.nn.functional.mse_loss(model(X_t), Y_t)
    torch_loss.backward()
    difference = max(np.max(abs(g - linear.weight.grad.numpy())) / max(np.max(abs(g)), 1e-300)
                     for g, linear in zip(gradients.weights, linear_layers(model)) if np.any(g))
    print(f"check: MSE loss {loss:.6f} (PyTorch {torch_loss.item():.6f}); weight gradients against autograd: "
          f"largest relative difference {difference:.1e}")
    model.zero_grad()

    # The NTK at initialization, from PyTorch's Jacobian and from deepntk.
    theta_0 = deepntk.scaled_ntk(params, X)
    theta_torch = torch_scaled_ntk(model, X_t, spec)
    print(f"check: scaled NTK against PyTorch's J Jᵀ/(L·C_L²): largest relative difference "
          f"{np.max(abs(theta_0 - theta_torch)) / np.max(abs(theta_torch)):.1e}")

    # 3. Train in PyTorch: full-batch gradient descent, MSELoss, raw lr 1/(4·L·C_L²) (flow time ½ per step,
    # docs/experiments.md#fig-3).
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0 / (4 * spec.depth * spec.C_L**2))
    for step in range(args.steps):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(X_t), Y_t)
        loss.backward()
        optimizer.step()
        if step == 0 or step == args.steps - 1:
            print(f"PyTorch step {step + 1:>4}: MSE loss {loss.item():.5f}")

    # 4. PyTorch → deepntk: the trained weights as Params, a params file, and the theory.
    trained = from_torch(model, spec)
    with torch.no_grad():
        outputs_torch = model(X_t).numpy()
    outputs = deepntk.forward(trained, X)
    print(f"check: trained outputs, deepntk against PyTorch: largest difference "
          f"{np.max(abs(outputs - outputs_torch)):.1e} (outputs up to {np.max(abs(outputs_torch)):.3f})")
    path = os.path.join(args.out, "trained.npz")
    trained.save(path)  # loadable by deepntk.load_params and every `deepntk` command that takes --params
    print(f"wrote {path}")

    theta_T = deepntk.scaled_ntk(deepntk.load_params(path), X)
    drift = np.linalg.norm(theta_T - theta_0) / np.linalg.norm(theta_0)
    print(f"kernel drift over training ‖Θ̃_T − Θ̃_0‖/‖Θ̃_0‖ = {drift:.2e}")
    print(f"{'relative error against Θ̃^∞':<28} {'mean':>8} {'largest':>8}")
    for name, network in (("at initialization", params), ("after training", trained)):
        comparison = deepntk.compare_with_theory(network, X)
        print(f"{name:<28} {comparison.error_limit:>8.4f} {comparison.max_error_limit:>8.4f}")


if __name__ == "__main__":
    main()

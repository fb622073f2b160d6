"""Peer implementations for the benchmark: PyTorch (autograd, `torch.func` per-sample Jacobians, a Python
loop over layers) and JAX (`lax.scan` over layers, `jit`). Imported only when the benchmark asks for them;
never a runtime dependency. Each factory returns a zero-argument callable, or None where the library (or
device) is missing."""

from __future__ import annotations

import numpy as np

from ..packed import network_inputs, pack


def _packed_inputs(workload):
    net = pack(workload.params)
    X1 = network_inputs(net, workload.params.spec, workload.X1)
    X2 = None if workload.X2 is None else network_inputs(net, workload.params.spec, workload.X2)
    return net, X1, X2


def _torch_factory(device: str):
    def make(workload):
        try:
            import torch
            from torch.func import jacrev, vmap
        except ImportError:
            return None
        if device == "cuda" and not torch.cuda.is_available():
            return None
        dev = torch.device(device)
        net, X1, X2 = _packed_inputs(workload)
        if net.kind not in ("dense", "conv"):  # the peers' layers have no NTK-parameterization scales
            return None
        W = torch.tensor(net.W, device=dev)
        b = torch.tensor(net.b, device=dev)
        L, k, conv = net.depth, net.outputs, net.kind == "conv"
        pad = net.filter_size // 2
        scale = workload.params.ntk_scale

        def layer(w, bias, a):
            if conv:
                return torch.nn.functional.conv2d(a, w, bias, padding=pad)
            return a @ w.T + bias

        def batched(Wt, bt, x):
            a = x
            for l in range(L - 1):
                a = torch.relu(layer(Wt[l], bt[l], a))
            z = layer(Wt[L - 1], bt[L - 1], a)
            return z[:, :k].mean(dim=(2, 3)) if conv else z[:, :k]

        def single(Wt, bt, x):
            return batched(Wt, bt, x[None])[0]

        def sync():
            if device == "cuda":
                torch.cuda.synchronize()

        x1 = torch.tensor(X1, device=dev)
        if workload.kind == "ntk":
            x2 = x1 if X2 is None else torch.tensor(X2, device=dev)
            jac = vmap(jacrev(single, argnums=(0, 1)), in_dims=(None, None, 0))

            def run():
                J1 = torch.cat([j.reshape(len(x1), k, -1) for j in jac(W, b, x1)], dim=-1)
                J2 = J1 if X2 is None else torch.cat([j.reshape(len(x2), k, -1) for j in jac(W, b, x2)], dim=-1)
                out = torch.einsum("iap,jbp->ijab", J1, J2) * scale
                sync()
                return out.cpu().numpy()
            return run
        y = torch.tensor(workload.Y, device=dev)

        def run():
            Wt = W.clone().requires_grad_(True)
            bt = b.clone().requires_grad_(True)
            loss = 0.5 * ((batched(Wt, bt, x1) - y) ** 2).sum() / len(x1)
            loss.backward()
            sync()
            return _unpad_gradients(workload, Wt.grad.cpu().numpy(), bt.grad.cpu().numpy())
        return run
    return make


def _unpad_gradients(workload, dW, db):
    """The gradients as one vector in the packed layout (their padded entries are exactly zero)."""
    return np.concatenate([dW.ravel(), db.ravel()])


def _jax_make(workload):
    try:
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp
        from jax import lax
    except ImportError:
        return None
    net, X1, X2 = _packed_inputs(workload)
    if net.kind not in ("dense", "conv"):
        return None
    W, b = jnp.asarray(net.W), jnp.asarray(net.b)
    k, conv = net.outputs, net.kind == "conv"
    pad = net.filter_size // 2
    scale = workload.params.ntk_scale

    def layer(w, bias, a):
        if conv:
            z = lax.conv_general_dilated(a, w, (1, 1), [(pad, pad), (pad, pad)],
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"))
            return z + bias[None, :, None, None]
        return a @ w.T + bias

    def batched(Wt, bt, x):
        def body(a, wb):
            return jnp.maximum(layer(wb[0], wb[1], a), 0.0), None

        a, _ = lax.scan(body, x, (Wt[:-1], bt[:-1]))
        z = layer(Wt[-1], bt[-1], a)
        return z[:, :k].mean(axis=(2, 3)) if conv else z[:, :k]

    def single(Wt, bt, x):
        return batched(Wt, bt, x[None])[0]

    x1 = jnp.asarray(X1)
    if workload.kind == "ntk":
        x2 = x1 if X2 is None else jnp.asarray(X2)
        jac = jax.vmap(jax.jacrev(single, argnums=(0, 1)), in_axes=(None, None, 0))

        @jax.jit
        def gram(Wt, bt, xa, xb):
            J1 = jnp.concatenate([j.reshape(xa.shape[0], k, -1) for j in jac(Wt, bt, xa)], axis=-1)
            J2 = jnp.concatenate([j.reshape(xb.shape[0], k, -1) for j in jac(Wt, bt, xb)], axis=-1)
            return jnp.einsum("iap,jbp->ijab", J1, J2) * scale

        return lambda: np.asarray(gram(W, b, x1, x2).block_until_ready())
    y = jnp.asarray(workload.Y)

    @jax.jit
    def grads(Wt, bt):
        return jax.grad(lambda Wv, bv: 0.5 * jnp.sum((batched(Wv, bv, x1) - y) ** 2) / x1.shape[0],
                        argnums=(0, 1))(Wt, bt)

    def run():
        dW, db = grads(W, b)
        return _unpad_gradients(workload, np.asarray(dW.block_until_ready()), np.asarray(db))
    return run


PEERS = {
    "torch": _torch_factory("cpu"),
    "torch-cuda": _torch_factory("cuda"),
    "jax": _jax_make,
}
# Each peer's importable module and the pip package that installs it.
PEER_PACKAGES = {"torch": ("torch", "torch"), "torch-cuda": ("torch", "torch"), "jax": ("jax", "jax")}


def why_not_run(name: str) -> str | None:
    """Why the peer `name` cannot run on this machine ("not installed: pip install torch", "no CUDA device"), or
    None where it can. Only what is known without timing it: a peer that cannot run one workload says so in its
    row."""
    import importlib.util

    module, package = PEER_PACKAGES[name]
    if importlib.util.find_spec(module) is None:
        return f"not installed: pip install {package}"
    if name == "torch-cuda":
        import torch

        if not torch.cuda.is_available():
            return "no CUDA device that torch can use"
    return None

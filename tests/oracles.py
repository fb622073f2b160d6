"""Independent oracles for the engine: plain per-layer forward passes, forward-mode (tangent) Jacobians and
central finite differences. None of them shares code with deepntk's backends."""

from __future__ import annotations

import numpy as np


def conv_direct(w, b, h):
    """Cross-correlation with zero padding (f-1)/2 by shifted sums over taps: w (o, m, f, f), h (N, m, d, d)."""
    o, m, f, _ = w.shape
    r = f // 2
    N, _, d, _ = h.shape
    padded = np.zeros((N, m, d + 2 * r, d + 2 * r))
    padded[:, :, r:r + d, r:r + d] = h
    z = np.zeros((N, o, d, d)) + b[None, :, None, None]
    for u in range(f):
        for v in range(f):
            z += np.einsum("om,imxy->ioxy", w[:, :, u, v], padded[:, :, u:u + d, v:v + d])
    return z


def conv_loops(w, b, h):
    """The same convolution as six nested Python loops (for tiny cases only)."""
    o_n, m_n, f, _ = w.shape
    r = f // 2
    N, _, d, _ = h.shape
    z = np.zeros((N, o_n, d, d))
    for i in range(N):
        for o in range(o_n):
            for y in range(d):
                for x in range(d):
                    total = b[o]
                    for m in range(m_n):
                        for u in range(f):
                            for v in range(f):
                                yy, xx = y + u - r, x + v - r
                                if 0 <= yy < d and 0 <= xx < d:
                                    total += w[o, m, u, v] * h[i, m, yy, xx]
                    z[i, o, y, x] = total
    return z


def _layer(arch, w, b, a):
    return a @ w.T + b if arch == "mlp" else conv_direct(w, b, a)


def reference_forward(params, X):
    """Outputs (N, k) layer by layer from the unpacked params (X already pooled for the CNN)."""
    arch = params.spec.arch
    a = np.asarray(X, dtype=np.float64)
    L = params.spec.depth
    for layer in range(L):
        z = _layer(arch, params.weights[layer].astype(np.float64), params.biases[layer].astype(np.float64), a)
        a = np.maximum(z, 0.0)
    return z if arch == "mlp" else z.mean(axis=(2, 3))


def tangent_jacobian(params, X):
    """∂f/∂θ (N, k, P) by forward-mode differentiation, one parameter direction at a time.

    θ is ordered layer by layer, weights (flattened) then biases, as `flat_parameters` orders them.
    """
    arch = params.spec.arch
    X = np.asarray(X, dtype=np.float64)
    L = params.spec.depth
    Ws = [w.astype(np.float64) for w in params.weights]
    bs = [b.astype(np.float64) for b in params.biases]
    # primal activations
    acts, zs = [X], []
    a = X
    for layer in range(L):
        z = _layer(arch, Ws[layer], bs[layer], a)
        zs.append(z)
        a = np.maximum(z, 0.0)
        acts.append(a)
    columns = []
    for layer in range(L):
        for which, array in (("w", Ws[layer]), ("b", bs[layer])):
            for idx in np.ndindex(array.shape):
                dW = np.zeros_like(Ws[layer])
                db = np.zeros_like(bs[layer])
                (dW if which == "w" else db)[idx] = 1.0
                # tangent of z^layer, then propagate through the later layers (linear in the tangent)
                zdot = _layer(arch, dW, db, acts[layer])
                for later in range(layer + 1, L):
                    adot = zdot * (zs[later - 1] > 0)
                    zdot = _layer(arch, Ws[later], np.zeros_like(bs[later]), adot)
                columns.append(zdot if arch == "mlp" else zdot.mean(axis=(2, 3)))
    return np.stack(columns, axis=-1)


def flat_parameters(params):
    return np.concatenate([np.concatenate([w.ravel(), b.ravel()]) for w, b in zip(params.weights, params.biases)])


def loss_value(params, X, Y, loss):
    f = reference_forward(params, X)
    if loss == "paper":
        return 0.5 * np.sum((f - Y) ** 2) / len(X)
    return np.mean((f - Y) ** 2)


def finite_difference_gradient(params, X, Y, loss, step=1e-6):
    """Central differences of the loss w.r.t. every parameter, flattened like `flat_parameters`."""
    grads = []
    for layer in range(params.spec.depth):
        for array in (params.weights[layer], params.biases[layer]):
            g = np.zeros(array.size)
            # Entries are set in place through the index: the per-layer arrays may be views into packed storage.
            for i, index in enumerate(np.ndindex(array.shape)):
                keep = array[index]
                h = step * max(1.0, abs(keep))
                array[index] = keep + h
                up = loss_value(params, X, Y, loss)
                array[index] = keep - h
                down = loss_value(params, X, Y, loss)
                array[index] = keep
                g[i] = (up - down) / (2 * h)
            grads.append(g)
    return np.concatenate(grads)


def perturbed(params, scale=0.3, seed=123):
    """A copy with every weight and bias moved by N(0, scale²)·(1 + |value|): generic, not the init."""
    rng = np.random.default_rng(seed)
    move = lambda a: a + scale * rng.standard_normal(a.shape) * (1.0 + np.abs(a))
    return params.with_arrays([move(w) for w in params.weights], [move(b) for b in params.biases])


def random_unit_activations(params, X):
    """σ(z_r^l) of the random unit (channel) for l = 1 … L−1, by plain layer loops: (L−1, N) or (L−1, N, d²)."""
    arch = params.spec.arch
    c = params.spec.in_features
    a, out = np.asarray(X, dtype=np.float64), []
    for layer in range(params.spec.depth - 1):
        a = np.maximum(_layer(arch, params.weights[layer].astype(np.float64),
                              params.biases[layer].astype(np.float64), a), 0.0)
        out.append(a[:, c] if arch == "mlp" else a[:, c].reshape(len(X), -1))
    return np.array(out)


def window_count_weights(d, f):
    """M[p, q] = #{(a, b): p and q both in the shifted window W_ab}, by brute force over offsets."""
    r = f // 2
    M = np.zeros((d * d, d * d))
    for a in range(-r, r + 1):
        for b in range(-r, r + 1):
            inside = np.array([[1.0 if 0 <= i - a < d and 0 <= j - b < d else 0.0 for j in range(d)]
                               for i in range(d)]).ravel()
            M += np.outer(inside, inside)
    return M


def per_network_kernel(params, X1, X2):
    """The exact per-network identity of the paper's initialization (docs/finite-depth.md), as (N1, N2, k, k).

    MLP: Θ̃ = [(x·x'+1) + (L−1)(C²(x·x'+k)+1) + Σ_l σ(z_r^l(x))σ(z_r^l(x'))]/(LC²);
    CNN: Θ̃·LC² = 1 + TX + (L−1)(1 + C²(TX + k·T1)) + Σ_l Σ_ab T_ab(σ(z_r^l))T_ab(σ(z_r^l')).
    """
    spec = params.spec
    L, C, k = spec.depth, spec.C_L, spec.outputs
    r1, r2 = random_unit_activations(params, X1), random_unit_activations(params, X2)
    if spec.arch == "mlp":
        dot = X1 @ X2.T
        total = (dot + 1) + (L - 1) * (C**2 * (dot + k) + 1) + r1.T @ r2
    else:
        c, d = spec.in_channels, spec.inner_size
        M = window_count_weights(d, spec.filter_size) / d**4
        F1, F2 = X1.reshape(len(X1), c, -1), X2.reshape(len(X2), c, -1)
        TX = np.einsum("imp,pq,jmq->ij", F1, M, F2)
        total = 1 + TX + (L - 1) * (1 + C**2 * (TX + k * M.sum())) + np.einsum("lip,pq,ljq->ij", r1, M, r2)
    return np.einsum("ij,ab->ijab", total / (L * C**2), np.eye(k))


def correlation_h_grid(near_one: bool):
    """Correlations ρ on which to check h(ρ) = √(1 − ρ²) + (π − arccos ρ)·ρ = 2π·κ(1, 1, ρ) (the correlation form of
    the CNN limit kernels): a grid of [−1, 1] (of [7/8, 1] for the shorter polynomial of correlations near one),
    within 10⁻¹⁶…10⁻¹ of the ends, the ends, and just outside (round-off in ρ, where h must clamp); and h there
    from mpmath at 30 digits. None where mpmath is missing."""
    try:
        import mpmath
    except ImportError:
        return None
    mpmath.mp.dps = 30
    low = 7 / 8 if near_one else -1.0
    near = 1.0 - np.logspace(-16, -1, 61)
    rho = np.concatenate([np.linspace(low, 1.0, 2001), near[near >= low], [1.0, low]])
    if not near_one:
        rho = np.concatenate([rho, -near, [0.0]])

    def exact(r):
        r = mpmath.mpf(min(max(r, -1.0), 1.0))
        return float(mpmath.sqrt(1 - r * r) + (mpmath.pi - mpmath.acos(r)) * r)

    outside = [1.0 + 4e-16] + ([] if near_one else [-1.0 - 4e-16])
    return np.concatenate([rho, outside]), np.array([exact(r) for r in rho] + [np.pi, 0.0][:len(outside)])

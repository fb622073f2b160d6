"""`deepntk predict`: kernel-regression and kernel-flow predictions on a dataset (Theorems 3 and 6)."""

from __future__ import annotations

import click
import numpy as np

from deepntk.cli.common import CommandError, backend_option, comma_list, load_npy, save_npy, user_errors


@click.command("predict")
@click.option("--x-train", required=True, help="Training inputs (.npy), (N, d_in) or (N, c, d, d).")
@click.option("--y-train", required=True, help="Training targets (.npy), (N, k) or (N,).")
@click.option("--x-test", required=True, help="Test inputs (.npy).")
@click.option("--y-test", default=None, help="Test targets (.npy), to report the error.")
@click.option("--kernel", "kernel_kind", type=click.Choice(["limit", "empirical"]), default="limit", show_default=True,
              help="The infinite-depth limit kernel, or the empirical Θ̃₀ of --params.")
@click.option("--params", "params_path", default=None, help="Params (.npz) for --kernel empirical.")
@click.option("--times", default="1,10,100,inf", show_default=True, help="Flow times t (inf: kernel regression).")
@click.option("--rho", type=float, default=1.0, show_default=True)
@click.option("--beta", type=float, default=1.0, show_default=True)
@click.option("--filter-size", type=int, default=3, show_default=True, help="CNN limit kernel: filter side.")
@backend_option
@click.option("-o", "--output", default=None, help="Write predictions (.npy, shape (times, M, k)).")
def command(x_train, y_train, x_test, y_test, kernel_kind, params_path, times, rho, beta, filter_size, backend, output):
    """Fit with kernel gradient flow from f₀ = 0 and report test predictions (and error) at each time t."""
    from deepntk.analytic import cnn_limit_kernel, kernel_flow, mlp_limit_kernel

    X, Xt = load_npy(x_train, "--x-train"), load_npy(x_test, "--x-test")
    Y = load_npy(y_train, "--y-train").astype(float)
    Y = Y[:, None] if Y.ndim == 1 else Y
    k = Y.shape[1]
    if len(Y) != len(X):
        raise CommandError(f"--y-train has {len(Y)} rows but --x-train has {len(X)}")
    Yt = None
    if y_test is not None:
        Yt = load_npy(y_test, "--y-test").astype(float)
        Yt = Yt[:, None] if Yt.ndim == 1 else Yt
        if Yt.shape != (len(Xt), k):
            raise CommandError(f"--y-test has shape {Yt.shape}, expected ({len(Xt)}, {k})")
    with user_errors():
        if kernel_kind == "empirical":
            if params_path is None:
                raise CommandError("--kernel empirical needs --params")
            from deepntk.engine.api import scaled_ntk
            from deepntk.engine.params import load_params

            params = load_params(params_path)
            K, Kx = scaled_ntk(params, X, backend=backend), scaled_ntk(params, Xt, X, backend=backend)
            if K.shape[-1] != k:
                raise CommandError(f"the network has {K.shape[-1]} outputs but the targets have {k}")
        elif X.ndim == 2:
            K, Kx = mlp_limit_kernel(X, d_out=k, rho=rho, beta=beta), mlp_limit_kernel(Xt, X, d_out=k, rho=rho, beta=beta)
            K, Kx = np.kron(K, np.eye(k)), np.kron(Kx, np.eye(k))
        elif X.ndim == 4:
            kw = dict(outputs=k, rho=rho, beta=beta, filter_size=filter_size)
            K, Kx = np.kron(cnn_limit_kernel(X, **kw), np.eye(k)), np.kron(cnn_limit_kernel(Xt, X, **kw), np.eye(k))
        else:
            raise CommandError(f"--x-train must be (N, d_in) or (N, c, d, d), got {X.shape}")
        predictions = []
        click.echo(f"{'t':>10} {'train MSE':>12}" + (f" {'test MSE':>12}" if Yt is not None else ""))
        for t in comma_list(times, "--times", float, 0):
            train = kernel_flow(K, Y, t)
            test = kernel_flow(K, Y, t, K_test_train=Kx)
            predictions.append(test)
            line = f"{t:>10g} {np.mean((train - Y) ** 2):>12.4e}"
            if Yt is not None:
                line += f" {np.mean((test - Yt) ** 2):>12.4e}"
            click.echo(line)
    if output:
        save_npy(output, np.array(predictions))
        click.echo(f"wrote {output}")

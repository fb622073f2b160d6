"""The wide MLP's closed forms as the engine names them (`deepntk.engine.gram.closed_form`, GramKernel's kinds
wide-ntk and wide-nngp): the kernels of `deepntk.analytic` on the inputs as the user gives them, whatever the spec's
width, and refused for another architecture."""

from __future__ import annotations

import numpy as np
import pytest

from deepntk import MLP, WideMLP
from deepntk.analytic import wide_nngp_kernel, wide_ntk_kernel
from deepntk.base.errors import InputError
from deepntk.engine.gram import GramKernel, closed_form
from deepntk.engine.predict import predict
from conftest import TOL, assert_close


def test_wide_gram_kinds_are_the_analytic_kernels_on_the_users_inputs():
    """The spec scales its inputs by √(n/d_in) (`prepare_inputs`) and its closed forms undo it: with n ≠ d_in a
    missed or doubled factor would scale Θ and Σ by (n/d_in)^{±1}."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(6, 3)), rng.normal(size=(4, 3))
    spec = WideMLP(d_in=3, d_out=1, width=50, depth=9, sigma_w2=1.8, sigma_b2=0.2)
    kw = dict(depth=9, sigma_w2=1.8, sigma_b2=0.2, pair_map="numpy")
    for kind, kernel in (("wide-ntk", wide_ntk_kernel), ("wide-nngp", wide_nngp_kernel), ("limit", wide_ntk_kernel)):
        block = GramKernel.for_spec(kind, spec).block(X, Y)
        assert_close(block, kernel(X, Y, **kw), TOL["identity"], kind)


def test_the_wide_kinds_do_not_depend_on_the_width_and_refuse_other_architectures():
    narrow, wide = WideMLP(d_in=3, d_out=1, width=8, depth=4), WideMLP(d_in=3, d_out=1, width=4096, depth=4)
    assert GramKernel.for_spec("wide-ntk", narrow).config() == GramKernel.for_spec("wide-ntk", wide).config()
    assert GramKernel.for_spec("wide-ntk", narrow).config() != GramKernel.for_spec("wide-nngp", narrow).config()
    mlp = MLP(3, 1, 4, 1.0)
    with pytest.raises(InputError, match="the wide-nngp kernel is the wide MLP's"):
        closed_form("wide-nngp", mlp)
    with pytest.raises(InputError, match="the wide-ntk kernel is the wide MLP's"):
        GramKernel.for_spec("wide-ntk", mlp)
    with pytest.raises(InputError, match="unknown closed-form kernel 'nngp'"):
        closed_form("nngp", narrow)


def test_predict_takes_the_nngp_and_refuses_it_with_params():
    rng = np.random.default_rng(1)
    X, Xt, Y = rng.normal(size=(8, 3)), rng.normal(size=(3, 3)), rng.normal(size=(8, 1))
    spec = WideMLP(d_in=3, d_out=1, width=16, depth=5)
    result = predict(X, Y, Xt, [np.inf], spec=spec, kernel="wide-nngp")
    K, Kx = wide_nngp_kernel(X, depth=5), wide_nngp_kernel(Xt, X, depth=5)
    assert_close(result.test[0], Kx @ np.linalg.solve(K, Y), TOL["solve"], "NNGP regression")
    from deepntk.engine.params import init_params

    with pytest.raises(InputError, match="kernel 'wide-nngp' is a closed form"):
        predict(X, Y, Xt, [1.0], params=init_params(spec, "paper", 0), kernel="wide-nngp")

"""deepntk's warnings point at the user's line, not at deepntk's own (which tells the user nothing), and a public
call warns once per cause however often it meets it: scaled_ntk's X1 and X2, predict's two kernels."""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest

import deepntk
from deepntk.base.validate import PrecisionWarning, TheoryAssumptionWarning
from deepntk.engine.predict import predict
from deepntk.engine.trainer import TrainSettings, train
from deepntk.engine.training import LossGrowthWarning

X = np.array([[-0.5, 1.0], [0.3, 0.4]])  # one entry <= 0 in each use below
Y = np.ones((2, 1))


def caught_warnings(call):
    """The warnings `call()` issues, each (category, filename, line), and the line in this file where `call` (a
    lambda) calls deepntk: the first frame outside deepntk, where each warning should point."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        call()
    return [(w.category, w.filename, w.lineno) for w in caught], call.__code__.co_firstlineno


@pytest.fixture(scope="module")
def params():
    return deepntk.init_params(deepntk.MLP(2, 1, 10, 5.0), seed=0)


def test_scaled_ntk_of_x_with_itself_warns_once_at_the_callers_line(params):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        deepntk.scaled_ntk(params, X, X, backend="numpy"); line = inspect.currentframe().f_lineno  # noqa: E702
    assert [(w.category, w.filename, w.lineno) for w in caught] == [(TheoryAssumptionWarning, __file__, line)]
    assert str(caught[0].message).startswith("X1 has 1 entries <= 0 and X2 has 1 entries <= 0;")


PUBLIC_CALLS = {
    "forward": lambda p: deepntk.forward(p, X, backend="numpy"),
    "activations": lambda p: deepntk.activations(p, X, backend="numpy"),
    "loss_and_gradients": lambda p: deepntk.loss_and_gradients(p, X, Y, backend="numpy"),
    "gradient_descent": lambda p: deepntk.gradient_descent(p, X, Y, 1, eta=0.1, backend="numpy"),
    "train with X_test": lambda p: train(p, X, Y, TrainSettings(steps=1, eta=0.1), X_test=X, Y_test=Y,
                                         backend="numpy"),
    "compare_with_theory": lambda p: deepntk.compare_with_theory(p, X, X, backend="numpy"),
    "predict with params": lambda p: predict(X, Y, X, [1.0], params=p, backend="numpy"),
    "predict with spec": lambda p: predict(X, Y, X, [1.0], spec=p.spec, backend="numpy"),
}


@pytest.mark.parametrize("name", PUBLIC_CALLS)
def test_every_public_call_warns_once_per_cause_at_the_callers_line(params, name):
    shown, _ = caught_warnings(lambda: PUBLIC_CALLS[name](params))
    line = PUBLIC_CALLS[name].__code__.co_firstlineno  # the lambda in PUBLIC_CALLS calls deepntk
    assert shown == [(TheoryAssumptionWarning, __file__, line)], shown


def test_precision_and_loss_growth_warnings_point_at_the_caller_too(params):
    shown, line = caught_warnings(lambda: deepntk.init_params(deepntk.MLP(2, 1, 4, 5e4), dtype="float32"))
    assert shown == [(PrecisionWarning, __file__, line)], shown
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        low = deepntk.init_params(deepntk.MLP(2, 1, 4, 5e4), dtype="float32")
    shown, line = caught_warnings(lambda: deepntk.scaled_ntk(low, X, X, backend="numpy"))
    assert sorted(shown, key=lambda w: w[0].__name__) == [(PrecisionWarning, __file__, line),
                                                          (TheoryAssumptionWarning, __file__, line)], shown
    positive = np.abs(X) + 0.1
    shown, line = caught_warnings(lambda: deepntk.gradient_descent(params, positive, Y, 3, eta=1e6, backend="numpy"))
    assert shown == [(LossGrowthWarning, __file__, line)], shown

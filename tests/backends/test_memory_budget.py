"""DEEPNTK_MEMORY_BUDGET bounds a call's working memory on every backend: a Gram larger than the budget is
computed in blocks of inputs (upper blocks only for a symmetric Gram) and equals the one-piece Gram."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

import deepntk
from deepntk.base.errors import InputError
from deepntk.base.memory import memory_budget
from oracles import perturbed
from conftest import TOL, assert_close


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_blocked_gram_equals_the_one_piece_gram(backend, arch, monkeypatch):
    if arch == "mlp":
        params = perturbed(deepntk.init_params(deepntk.MLP(2, 2, 30, 4.0), seed=1), scale=0.05)
        X1, X2 = [np.random.default_rng(s).uniform(0.1, 1, size=(n, 2)) for s, n in ((2, 45), (3, 17))]
        budget = 20000
    else:
        params = perturbed(deepntk.init_params(deepntk.CNN(1, 4, 2, 6, 3.0), seed=1), scale=0.05)
        X1, X2 = [np.random.default_rng(s).uniform(0.1, 1, size=(n, 1, 4, 4)) for s, n in ((2, 13), (3, 5))]
        budget = 100000
    whole = deepntk.scaled_ntk(params, X1, backend=backend), deepntk.scaled_ntk(params, X1, X2, backend=backend)
    monkeypatch.setenv("DEEPNTK_MEMORY_BUDGET", str(budget))  # a few inputs per block
    blocked = deepntk.scaled_ntk(params, X1, backend=backend), deepntk.scaled_ntk(params, X1, X2, backend=backend)
    for a, b in zip(blocked, whole):
        assert_close(a, b, TOL["identity"], "blocked Gram")
    assert np.array_equal(blocked[0], blocked[0].transpose(1, 0, 3, 2))


def test_the_budget_bounds_the_reference_backends_working_memory(monkeypatch):
    """N = 600 at L = 400: the activations alone are ≈ 7.7 MiB; under a 2 MiB budget the peak beside the Gram
    (2.7 MiB) stays within twice the budget."""
    params = deepntk.init_params(deepntk.MLP(2, 1, 400, 20.0), seed=0)
    X = np.random.default_rng(0).uniform(0.1, 1, size=(600, 2))
    gram_bytes = 600 * 600 * 8
    budget = 2 << 20

    def peak(call):
        tracemalloc.start()
        call()
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    unbounded = peak(lambda: deepntk.scaled_ntk(params, X, backend="numpy"))
    monkeypatch.setenv("DEEPNTK_MEMORY_BUDGET", str(budget))
    bounded = peak(lambda: deepntk.scaled_ntk(params, X, backend="numpy"))
    assert unbounded - gram_bytes > 3 * budget, unbounded
    assert bounded - 2 * gram_bytes < 2 * budget, bounded


# Peak RSS of scaled_ntk in a fresh process, beside its result: the growth of ru_maxrss over the call (after a
# warm-up that compiles Numba's kernels and starts its threads), and the blocked result against the one-piece one.
PEAK_RSS_SCRIPT = """
import json, os, resource, sys
import numpy as np
import deepntk

backend, N, budget = sys.argv[1], int(sys.argv[2]), sys.argv[3]
params = deepntk.init_params(deepntk.MLP(2, 1, 10, 4.0), seed=0)
X = np.random.default_rng(0).uniform(0.1, 1, size=(N, 2))
os.environ["DEEPNTK_MEMORY_BUDGET"] = budget
deepntk.scaled_ntk(params, X[:600], backend=backend)
deepntk.scaled_ntk(params, X[:300], X[300:600], backend=backend)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
theta = deepntk.scaled_ntk(params, X, backend=backend)
growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024 - theta.nbytes
os.environ["DEEPNTK_MEMORY_BUDGET"] = str(1 << 40)
whole = deepntk.scaled_ntk(params, X, backend=backend)
error = float(np.max(np.abs(theta - whole)) / np.max(np.abs(whole)))
print(json.dumps({"growth": growth, "output": theta.nbytes, "error": error}))
"""
# What the allocator and a backend's threads may take beside the budgeted working memory (docs/ntk.md#memory).
RSS_CONSTANT = 16 << 20


@pytest.mark.parametrize("name", ["numpy", "numba"])
def test_peak_rss_of_a_blocked_gram_stays_within_twice_the_budget(name):
    """N = 2500: the result is 48 MiB, 12 × a 4 MiB budget. Before the Gram block's entries were counted, the
    NumPy backend's temporaries grew the peak RSS by 3 results beyond the result, Numba's by one."""
    if name == "numba":
        pytest.importorskip("numba", reason="the numba backend needs numba")
    budget = 4 << 20
    result = subprocess.run([sys.executable, "-c", PEAK_RSS_SCRIPT, name, "2500", str(budget)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "NUMBA_NUM_THREADS": "2"})
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["output"] > 10 * budget
    assert measured["growth"] <= 2 * budget + RSS_CONSTANT, measured
    assert measured["error"] <= TOL["roundoff"], measured


@pytest.mark.parametrize("value", ["lots", "-5", "0"])
def test_a_bad_budget_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv("DEEPNTK_MEMORY_BUDGET", value)
    with pytest.raises(InputError, match="DEEPNTK_MEMORY_BUDGET"):
        memory_budget()

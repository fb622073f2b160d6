"""A script that starts a local cluster outside `if __name__ == "__main__":` is refused in one sentence before
any worker starts (each worker would run the script again: 108 lines of tracebacks before), and a worker that
re-runs a script into a cluster's start exits with the sentence alone. Real subprocesses, real LocalCluster."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
pytest.importorskip("zarr", reason="the distributed extra (Zarr) is not installed")

from deepntk.engine.clusters import _guarded  # noqa: E402

GUARD = 'if __name__ == "__main__":'
GRAM = """
import numpy as np
import deepntk
from deepntk.engine.gram import GramKernel


def run():
    X = np.random.default_rng(0).uniform(0.1, 1, (40, 2))
    report = deepntk.gram(GramKernel.for_spec("limit", deepntk.MLP(2, 1, 10, 100.0)), X, store="K.zarr",
                          cluster="local", workers=2, tile=10)
    print("tiles", report.tiles)

"""


def run_script(tmp_path, body: str):
    script = tmp_path / "script.py"
    script.write_text(GRAM + textwrap.dedent(body), encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_an_unguarded_script_is_refused_in_one_sentence_before_any_worker_starts(tmp_path):
    run = run_script(tmp_path, "run()\n")
    last = run.stderr.strip().splitlines()[-1]
    assert run.returncode == 1 and run.stdout == ""
    assert last.startswith("deepntk.base.errors.ClusterError: a local cluster started from the top level of ")
    line = (GRAM + "run()\n").splitlines().index("run()") + 1
    assert f"script.py (line {line})" in last and last.endswith(f"put the call under `{GUARD}`"), last
    # One error, the parent's: no worker ran (no "Nanny", no second traceback), and no store was left behind.
    assert run.stderr.count("Traceback") == 1 and "Nanny" not in run.stderr, run.stderr
    assert not os.path.exists(tmp_path / "K.zarr")


def test_the_same_script_with_the_guard_computes_the_gram(tmp_path):
    run = run_script(tmp_path, f"{GUARD}\n    run()\n")
    assert run.returncode == 0 and run.stdout.strip() == "tiles 10", run.stderr[-2000:]


def test_a_worker_re_running_the_script_into_a_cluster_exits_with_the_sentence(tmp_path):
    """The parent's call is guarded, but the script starts a cluster where the workers run it as __mp_main__:
    each worker prints the sentence (no traceback) and the parent says its workers failed to start."""
    run = run_script(tmp_path, f'if __name__ == "__mp_main__":\n    run()\n{GUARD}\n    run()\n')
    lines = run.stderr.strip().splitlines()
    sentence = f"deepntk: a worker process re-running the main script was asked to start a local cluster: put the " \
               f"script's work under `{GUARD}`"
    assert run.returncode == 1 and sentence in lines, run.stderr
    assert run.stderr.count("Traceback") == 1, run.stderr  # the parent's, ending in:
    assert lines[-1].startswith("deepntk.base.errors.ClusterError: the local cluster's worker processes failed")


@pytest.mark.parametrize("source,line,guarded", [
    (f"x = 1\n{GUARD}\n    y = 2\n", 3, True),
    (f"x = 1\n{GUARD}\n    y = 2\n", 1, False),
    ("if '__main__' == __name__:\n    y = 2\n", 2, True),
    (f"{GUARD}\n    y = 2\nelse:\n    z = 3\n", 4, False),  # the else branch runs in the workers
    ("if __name__ == '__mp_main__':\n    y = 2\n", 2, False),
])
def test_which_lines_the_guard_covers(tmp_path, source, line, guarded):
    path = tmp_path / "s.py"
    path.write_text(source)
    assert _guarded(str(path), line) is guarded

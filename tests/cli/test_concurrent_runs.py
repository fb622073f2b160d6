"""Two real processes and one results folder: the second run is refused while the first holds the folder, and a
run killed with SIGKILL leaves no stale lock behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from deepntk.engine.results import LOCK_FILE
from conftest import wait_for


def deepntk(*argv, **kwargs):
    return [sys.executable, "-m", "deepntk.cli.main", *argv]


def test_a_second_run_into_a_folder_in_use_is_refused_and_a_killed_run_leaves_no_lock(tmp_path):
    out = str(tmp_path / "runs")
    first = subprocess.Popen(deepntk("simulate", "--depths", "3000,4000,5000,6000", "--seeds", "40", "--points", "60",
                                     "--backend", "numpy", "-o", out, "--quiet"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert wait_for(lambda: os.path.exists(os.path.join(out, LOCK_FILE)) or first.poll() is not None)
        assert first.poll() is None, "the first run ended before the second could start"
        second = subprocess.run(deepntk("simulate", "--depths", "10,20", "--seeds", "1", "--points", "4", "-o", out,
                                        "--quiet"), capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and second.stdout == "", second
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "in use by another deepntk run" in lines[0], second.stderr
        assert not os.path.exists(os.path.join(out, "depth-10.npz"))
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # --overwrite: the killed run may have recorded a first depth of its own settings there.
    third = subprocess.run(deepntk("simulate", "--depths", "10,20", "--seeds", "1", "--points", "4", "-o", out,
                                   "--quiet", "--overwrite"), capture_output=True, text=True, timeout=120)
    assert third.returncode == 0, third.stderr
    assert os.path.exists(os.path.join(out, "depth-20.npz"))

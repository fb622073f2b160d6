"""Two real processes and one results folder: the second run is refused while the first holds the folder, a run
killed with SIGKILL leaves no stale lock behind, and the lock is the folder's own (flock on the folder), so no
lock file is ever left in a user's results folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

from deepntk.cli.main import main
from deepntk.engine.results import LOCK_FILE, RUN_RECORD
from conftest import wait_for


def deepntk(*argv, **kwargs):
    return [sys.executable, "-m", "deepntk.cli.main", *argv]


def test_a_second_run_into_a_folder_in_use_is_refused_and_a_killed_run_leaves_no_lock(tmp_path):
    out = str(tmp_path / "runs")
    first = subprocess.Popen(deepntk("simulate", "--depths", "3000,4000,5000,6000", "--seeds", "40", "--points", "60",
                                     "--backend", "numpy", "-o", out, "--quiet"),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        # The header comes after the folder is held (click.echo flushes it through the pipe).
        assert first.stdout.readline().startswith("deepntk simulate:"), first.stderr.read()
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


# A process that holds a folder through the engine's run_folder until its stdin closes.
HOLDER = textwrap.dedent("""
    import sys
    from deepntk.engine.results import run_folder

    with run_folder(sys.argv[1], "holder", {}):
        print("held", flush=True)
        sys.stdin.read()
""")


def test_a_folder_held_by_another_process_is_refused_in_one_line_and_holds_no_lock_file(tmp_path):
    """One real process holds the folder, another real `deepntk` run into it is refused with one line (exit 2,
    nothing on stdout); the held folder holds no file at all, and once the holder ends the folder is free."""
    out = str(tmp_path / "held")
    os.makedirs(out)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, out], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n", holder.stderr.read()
        assert os.listdir(out) == []  # the lock is the folder's own: no lock file beside the user's results
        refused = subprocess.run(deepntk("simulate", "--depths", "10", "--seeds", "1", "--points", "4",
                                         "--backend", "numpy", "-o", out), capture_output=True, text=True,
                                 timeout=120)
        assert refused.returncode == 2 and refused.stdout == "", refused
        assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("Error: "), refused.stderr
        assert f"results folder {out!r} is in use by another deepntk run" in refused.stderr
        assert os.listdir(out) == []
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    assert holder.returncode == 0, holder.stderr.read()
    freed = subprocess.run(deepntk("simulate", "--depths", "10", "--seeds", "1", "--points", "4", "--backend",
                                   "numpy", "-o", out, "--quiet"), capture_output=True, text=True, timeout=120)
    assert freed.returncode == 0, freed.stderr


def test_a_finished_run_leaves_only_the_files_it_recorded(tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["simulate", "--depths", "10,20", "--seeds", "1", "--points", "4", "--backend", "numpy", "-o", out,
                 "--quiet"]) == 0
    recorded = json.load(open(os.path.join(out, RUN_RECORD)))["files"]
    left = sorted(os.listdir(out))
    assert LOCK_FILE not in left
    assert left == sorted(recorded + [RUN_RECORD]), (left, recorded)


def test_the_folder_lock_and_its_lock_file_fallback_each_admit_one_holder(tmp_path):
    """The two locks of `exclusive_folder` (flock on the folder; a lock file where that is impossible): while one
    holder has the folder, a second is turned away (each lock is per open descriptor, so this holds within one
    process too), and after the release the next one gets it."""
    from deepntk.engine.results import _lock_file, _lock_folder

    for lock, leaves in ((_lock_folder, []), (_lock_file, [LOCK_FILE])):
        folder = tmp_path / lock.__name__
        folder.mkdir()
        release = lock(str(folder))
        assert release is not None
        assert lock(str(folder)) is None
        release()
        again = lock(str(folder))
        assert again is not None
        again()
        assert os.listdir(folder) == leaves

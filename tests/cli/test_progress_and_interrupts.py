"""Progress off a terminal and interrupts, with real signals to real `deepntk` processes (docs/files.md#progress-and-
interrupts): a plain progress line at the configured interval; SIGINT (Ctrl-C, sent to the process group as a
terminal does) and SIGTERM end a command with exit status 130 and 143, one line saying what is kept, no traceback,
a Dask LocalCluster shut down without a word, and a --resume rerun that completes with what was kept."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import wait_for

INTERVAL = 0.3  # $DEEPNTK_PROGRESS_INTERVAL in these tests


class Running:
    """A `deepntk` process in its own session (its own process group, as a terminal's foreground job), its
    stderr lines collected with their arrival times."""

    def __init__(self, *argv, cwd, interval: float = INTERVAL):
        env = {**os.environ, "DEEPNTK_PROGRESS_INTERVAL": str(interval)}
        self.process = subprocess.Popen([sys.executable, "-m", "deepntk.cli.main", *argv], cwd=cwd, env=env,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                        start_new_session=True)
        self.lines, self.out = [], []
        self._readers = [threading.Thread(target=self._read, args=(self.process.stderr, self.lines), daemon=True),
                         threading.Thread(target=self._read, args=(self.process.stdout, self.out), daemon=True)]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _read(stream, into):
        for line in stream:
            into.append((time.monotonic(), line.rstrip("\n")))

    def saw(self, pattern: str, where: str = "stderr") -> bool:
        return any(re.search(pattern, line) for _, line in (self.lines if where == "stderr" else self.out))

    def signal_group(self, signum) -> None:
        os.killpg(self.process.pid, signum)

    def finish(self, timeout: float = 120.0) -> tuple[int, str, str]:
        try:
            status = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        for reader in self._readers:
            reader.join(timeout=10)
        return status, "\n".join(line for _, line in self.out), "\n".join(line for _, line in self.lines)


def assert_one_interrupt_line(stderr: str, pattern: str) -> re.Match:
    """Exactly one 'interrupted: …' line, matching `pattern`, and nothing of a traceback or of Dask."""
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1, stderr
    for noise in ("Traceback", "Aborted", "distributed.", "WARNING", "ERROR", "KeyboardInterrupt", "leaked"):
        assert noise not in stderr, stderr
    match = re.fullmatch(pattern, lines[0])
    assert match, lines[0]
    return match


def test_progress_off_a_terminal_is_a_plain_line_at_the_configured_interval(tmp_path):
    run = Running("train", "--dataset", "toy", "--depth", "100", "--C-L", "50", "--eta", "0.5", "--steps", "1000",
                  "--backend", "numpy", "-o", "t.npz", cwd=tmp_path, interval=0.1)
    status, _, stderr = run.finish()
    assert status == 0, stderr
    progress = [(t, line) for t, line in run.lines if line.startswith("SGD steps: ")]
    last = re.fullmatch(r"SGD steps: 1000/1000 \(100%\), [0-9.]+/s, ([0-9.]+) s in all, batch loss .*", progress[-1][1])
    assert last, stderr
    during = progress[:-1]
    # About one line per interval while the steps ran, however fast this machine runs them: never more than one
    # an interval (the bounded rate), and at least half as many (a loaded machine delays some lines; a silent
    # log prints none).
    expected = int(float(last[1]) / 0.1)
    assert max(1, expected // 2) <= len(during) <= expected + 1, stderr
    for _, line in during:
        assert re.fullmatch(r"SGD steps: \d+/1000 \(\d+%\), [0-9.]+/s, ETA [0-9.]+ (s|min), batch loss [0-9.e+-]+", line), line
    assert "\r" not in stderr  # no bar redrawn in place in a log


def test_quiet_silences_progress_and_a_silent_loop_still_reports(tmp_path, capsys):
    quiet = Running("train", "--dataset", "toy", "--depth", "50", "--C-L", "25", "--eta", "0.5", "--steps", "50",
                    "--backend", "numpy", "-o", "t.npz", "--quiet", cwd=tmp_path)
    status, _, stderr = quiet.finish()
    assert status == 0 and "SGD steps" not in stderr, stderr
    # A loop that completes nothing for a while (one long depth) still prints a line every interval.
    from deepntk.cli.progress import Progress

    os.environ["DEEPNTK_PROGRESS_INTERVAL"] = "0.1"
    try:
        with Progress("networks", 4):
            time.sleep(0.55)
    finally:
        del os.environ["DEEPNTK_PROGRESS_INTERVAL"]
    lines = capsys.readouterr().err.splitlines()
    assert 3 <= len(lines) <= 7 and all(line.startswith("networks: 0/4 (0%), ") for line in lines), lines
    assert lines[-1].endswith("in all"), lines


def test_a_finished_loop_left_open_prints_no_more_lines_and_keeps_its_rate(capsys, monkeypatch):
    """A stage stays open after its last item while the next, unreported work runs (a Gram's collapse pass):
    before, its heartbeat printed "150/150 (100%), ETA 0 s" every interval with a rate falling towards zero."""
    from deepntk.cli.progress import Progress

    monkeypatch.setenv("DEEPNTK_PROGRESS_INTERVAL", "0.05")
    with Progress("tiles", 3) as bar:
        bar.set(0)
        started = time.monotonic()
        for _ in range(3):
            time.sleep(0.05)
            bar.update()
        finished = time.monotonic()
        capsys.readouterr()
        time.sleep(0.5)  # ten intervals with nothing to report
        assert capsys.readouterr().err == ""
        # Kept: 3 items over the 0.15+ s they took (a rate still falling over the 0.5 s since would be < 3 / 0.65).
        assert 3 / (finished - started + 0.05) <= bar.rate() <= 3 / 0.15
    final = capsys.readouterr().err.splitlines()
    assert len(final) == 1 and final[0].startswith("tiles: 3/3 (100%), ") and final[0].endswith("in all"), final


def test_ctrl_c_in_simulate_keeps_the_finished_depths_and_resume_reuses_them(tmp_path):
    depths = "20,1000,1001,1002"
    argv = ["simulate", "--depths", depths, "--seeds", "8", "--points", "40", "--backend", "numpy", "-o", "out"]
    run = Running(*argv, cwd=tmp_path)
    assert wait_for(lambda: run.saw(r"^\s+20\s", "stdout") or run.process.poll() is not None, 120)
    run.signal_group(signal.SIGINT)
    status, _, stderr = run.finish()
    assert status == 130, stderr
    kept = int(assert_one_interrupt_line(
        stderr, r"interrupted: (\d) of 4 depths kept in out; rerun with -o out --resume").group(1))
    assert 1 <= kept < 4
    stored = os.path.join(tmp_path, "out", "depth-20.npz")
    written = os.stat(stored).st_mtime_ns
    resumed = subprocess.run([sys.executable, "-m", "deepntk.cli.main", *argv, "--resume", "--quiet"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert all(re.search(rf"^\s+{depth}\s", resumed.stdout, re.M) for depth in depths.split(",")), resumed.stdout
    assert os.stat(stored).st_mtime_ns == written  # reused, not recomputed


def test_sigterm_in_train_names_the_last_checkpoint_and_resume_continues_from_it(tmp_path):
    import json

    argv = ["train", "--dataset", "toy", "--depth", "100", "--C-L", "50", "--eta", "0.5", "--steps", "400",
            "--backend", "numpy", "-o", "t.npz", "--checkpoint-dir", "ck", "--checkpoint-every", "20"]
    run = Running(*argv, cwd=tmp_path, interval=0.1)
    assert wait_for(lambda: run.saw(r"SGD steps: (4[0-9]|[5-9][0-9]|[0-9]{3,})/") or run.process.poll() is not None)
    run.process.send_signal(signal.SIGTERM)  # `kill PID`, a batch system's notice
    status, _, stderr = run.finish()
    assert status == 143, stderr
    from deepntk.engine.trainer import checkpoint_step

    step = int(assert_one_interrupt_line(
        stderr, r"interrupted: the checkpoint of step (\d+) is kept in ck; rerun with --resume to continue from "
                r"there").group(1))
    assert 40 <= step < 400 and step % 20 == 0 and step == checkpoint_step(os.path.join(tmp_path, "ck"))
    resumed = subprocess.run([sys.executable, "-m", "deepntk.cli.main", *argv, "--resume", "--quiet"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    with open(tmp_path / "t.metrics.json") as handle:
        metrics = json.load(handle)
    assert metrics["resumed_from"] == step and metrics["steps"] == 400


@pytest.mark.slow
@pytest.mark.parametrize("signum, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_gram_on_a_local_cluster_keeps_its_tiles_and_resumes(tmp_path, signum, status):
    pytest.importorskip("distributed", reason="the distributed extra (Dask) is not installed")
    import deepntk
    from deepntk.engine.gram import open_store

    deepntk.init_params(deepntk.MLP(2, 1, 2000, 50.0), seed=3).save(tmp_path / "deep.npz")
    np.save(tmp_path / "x.npy", np.random.default_rng(7).uniform(0.1, 1, size=(100, 2)))
    argv = ["gram", "--kernel", "ntk", "--params", "deep.npz", "--backend", "numpy", "--x1", "x.npy", "--store",
            "K.zarr", "--tile", "10", "--cluster", "local", "--workers", "1"]
    run = Running(*argv, cwd=tmp_path)
    assert wait_for(lambda: run.saw(r"^tiles: [1-9]") or run.process.poll() is not None, 300)
    run.signal_group(signum)
    code, _, stderr = run.finish()
    assert code == status, stderr
    kept = int(assert_one_interrupt_line(
        stderr, r"interrupted: (\d+) of 55 tiles kept in K.zarr; rerun with --resume").group(1))
    store = open_store(tmp_path / "K.zarr")
    assert kept == int(sum(store.recorded()[i, j] >= 0 for i, j in store.tiles())) and 1 <= kept < 55
    resumed = subprocess.run([sys.executable, "-m", "deepntk.cli.main", *argv, "--resume", "--quiet"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({55 - kept} computed, {kept} already complete)" in resumed.stdout


BENCH_ONE_CALL = ["bench", "--quick", "--backends", "numpy", "--peers", "none", "--workloads", "mlp-gram-N16",
                  "--repeats", "1"]


def test_bench_reports_its_timed_calls_as_the_other_commands_do(capsys, monkeypatch):
    """Before: `deepntk bench` printed nothing on stderr until its rows, and a sub-benchmark (cnn-limit, solvers,
    …) nothing at all until its end. Now each (workload, implementation) timed is a step of the same progress: off
    a terminal (stderr here is not one) a plain line per interval and a final line."""
    from deepntk.cli.main import main

    monkeypatch.setenv("DEEPNTK_PROGRESS_INTERVAL", "0.1")
    assert main(BENCH_ONE_CALL) == 0
    stdout, stderr = capsys.readouterr()
    assert "mlp-gram-N16" in stdout, stdout
    lines = [line for line in stderr.splitlines() if line.startswith("timed calls: ")]
    assert lines and re.fullmatch(r"timed calls: 1/1 \(100%\), .*in all", lines[-1]), stderr
    for line in lines[:-1]:  # the heartbeat's while the call runs, or the step's own
        assert re.fullmatch(r"timed calls: (0, .*so far|1/1 \(100%\), .*(ETA|so far).*)", line), line
    assert "\r" not in stderr


@pytest.mark.slow  # a second benchmark run: its float64 matmul peak alone takes 2–3 s on two busy cores
def test_bench_quiet_shows_no_progress(capsys, monkeypatch):
    from deepntk.cli.main import main

    monkeypatch.setenv("DEEPNTK_PROGRESS_INTERVAL", "0.1")
    assert main(BENCH_ONE_CALL + ["--quiet"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "mlp-gram-N16" in stdout and "timed calls" not in stderr, stderr


def test_the_benchmark_counts_every_timed_call_to_the_end():
    """run_benchmark's steps: one per (workload, implementation), the hidden reference and a peer that cannot run
    (torch, when not installed) included, so the bar of `deepntk bench` ends at total / total."""
    from deepntk.engine.experiments.benchmark import run_benchmark, standard_workloads

    steps = []
    workloads = [w for w in standard_workloads(quick=True) if w.name == "mlp-gram-N16"]
    timings = run_benchmark(workloads, ["torch"], repeats=1, reference="numpy",
                            on_step=lambda done, total: steps.append((done, total)))
    assert steps == [(1, 2), (2, 2)], steps
    assert all(t.implementation == "torch" for t in timings)  # the reference is timed, not shown


def test_a_counting_loop_shows_reused_items_from_the_start_and_rates_only_new_work(monkeypatch):
    """A resumed counting loop (simulate's networks): the first count shown is the reused items, and the rate and
    the ETA come from the items this run computes, over the time since."""
    from deepntk.cli.progress import Progress

    monkeypatch.setenv("DEEPNTK_PROGRESS_INTERVAL", "1000")  # no line of its own while the test reads it
    with Progress("networks", 12) as bar:
        before = time.monotonic()
        bar.reuse(6)
        assert bar.status().startswith("networks: 6/12 (50%), ")
        for _ in range(2):
            time.sleep(0.2)
            bar.update()
        rate = bar.rate()
        after = time.monotonic()
        eta = float(re.search(r", ETA ([0-9.]+) s", bar.status()).group(1))
    # 2 networks in [0.4 s, after - before]; counting the 6 reused ones would give at least 8 / (after - before).
    assert 2 / (after - before) <= rate <= 2 / 0.4
    assert eta >= 4 / (2 / 0.4) * (1 - 1e-3)  # 4 networks to go at this run's rate (3 significant digits)


class Terminal(io.StringIO):
    """stderr as a terminal: Progress draws its tqdm bar into it."""

    def isatty(self):
        return True


def test_a_resumed_bar_starts_at_the_reused_count_and_rates_only_new_work(monkeypatch):
    """In a terminal (the tqdm bar): a loop that states its count (a Gram store's tiles) starts from its first
    statement, the tiles an earlier run completed; the bar's rate and ETA count only the tiles this run adds."""
    from tqdm import tqdm

    from deepntk.cli.progress import Progress

    monkeypatch.setattr(sys, "stderr", Terminal())
    with Progress("tiles", 100) as bar:
        bar.set(40, 100)  # 40 tiles reused
        started = time.monotonic()
        assert " 40/100 " in tqdm.format_meter(**bar._bar.format_dict)
        time.sleep(0.3)
        bar.set(42)
        meter = tqdm.format_meter(**bar._bar.format_dict)
        elapsed = time.monotonic() - started
    shown = re.search(r" 42/100 \[[0-9:]+<([0-9:]+), +([0-9.]+)it/s\]", meter)
    assert shown, meter
    # 2 tiles in [0.3 s, elapsed]: counting the 40 reused would show 42 / elapsed, far above.
    rate = float(shown.group(2))
    assert 2 / elapsed * 0.9 <= rate <= 2 / 0.3 * 1.1, meter
    minutes, seconds = map(int, shown.group(1).split(":"))
    assert 58 / (2 / 0.3 * 1.1) - 1 <= 60 * minutes + seconds  # 58 tiles to go at this run's rate


def test_a_resumed_simulate_rates_only_the_networks_it_computes(tmp_path, capsys, monkeypatch):
    from deepntk.cli.main import main

    monkeypatch.chdir(tmp_path)
    argv = ["simulate", "--depths", "3000,3001,3002", "--seeds", "2", "--points", "30", "--backend", "numpy",
            "-o", "out"]
    assert main(argv + ["--quiet"]) == 0
    os.remove(os.path.join("out", "depth-3002.npz"))
    capsys.readouterr()
    assert main(argv + ["--resume"]) == 0
    stderr = capsys.readouterr().err
    final = re.search(r"^networks: 6/6 \(100%\), (?:([0-9.]+)/s|([0-9.]+) s each), ([0-9.]+) s in all$", stderr,
                      re.M)
    assert final, stderr
    rate = float(final.group(1)) if final.group(1) else 1 / float(final.group(2))
    # Rate × the loop's whole time is the networks the rate counts (a little more: the start-up before the first
    # report, when the reused depths came in): the 2 computed ones, where counting the 4 reused gives about 5.
    assert 2 * (1 - 1e-2) <= rate * float(final.group(3)) <= 3, stderr

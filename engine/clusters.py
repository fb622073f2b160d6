"""Where Dask work runs: one option, `cluster`, names a local cluster, a running scheduler, a batch system or
the GPUs of this machine. Every failure is a `ClusterError` within a timeout, never a hang.

    local          distributed.LocalCluster: one single-threaded worker process per core (the default)
    tcp://host:port   a running `dask scheduler` (workers started by hand, see the README)
    slurm, pbs     a dask-jobqueue cluster from a small config file (cores, memory, walltime, queue, jobs)
    local-cuda     dask-cuda's LocalCUDACluster: one worker per GPU
"""

from __future__ import annotations

import contextlib
import os
import re
import warnings

from ..base.errors import ClusterError

KINDS = ("local", "tcp://host:port", "slurm", "pbs", "local-cuda")
ADDRESS = re.compile(r"^(tcp|tls)://[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")
# Each worker process runs one thread of every threaded library, so workers × threads ≤ cores.
SINGLE_THREADED = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   "MKL_NUM_THREADS": "1"}
CONNECT_TIMEOUT = 10.0
JOBQUEUE_KEYS = ("cores", "memory", "walltime", "queue", "jobs", "processes", "account", "job_extra_directives",
                 "job_script_prologue", "local_directory", "interface", "scheduler_options")


def threads_per_worker() -> None:
    """Called at the start of a task: Numba at one thread in a worker process, so workers × threads ≤ cores
    (its parallel kernels with several threads per worker have hung under Dask)."""
    import sys

    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(1)


def run_in_order(function, argument_lists, client=None, on_done=None) -> list:
    """function(*arguments) for each tuple of `argument_lists`, the results in that order: one after another
    here, or one Dask task each on `client`'s workers (at one thread per worker). `on_done()` is called as
    each one completes."""
    if client is None:
        results = []
        for arguments in argument_lists:
            results.append(function(*arguments))
            if on_done:
                on_done()
        return results
    from distributed import as_completed

    futures = [client.submit(_on_worker, function, *arguments, pure=False) for arguments in argument_lists]
    for _ in as_completed(futures):
        if on_done:
            on_done()
    return client.gather(futures)


def seed_groups(seeds, client) -> list[list]:
    """How a seed sweep is cut into ensembles: all seeds in one here (one kernel call steps them together), one
    seed per task on a cluster (the tasks spread over its workers)."""
    seeds = list(seeds)
    return [seeds] if client is None else [[seed] for seed in seeds]


def run_seed_groups(function, leading: tuple, seeds, trailing: tuple, client=None, on_seed=None) -> list:
    """function(*leading, group, *trailing) for each group of `seed_groups`, results flattened in seed order;
    `on_seed()` once per seed as its group completes."""
    groups = seed_groups(seeds, client)
    done = None
    if on_seed:
        def done():
            for _ in range(len(groups[0])):
                on_seed()
    results = run_in_order(function, [leading + (group,) + trailing for group in groups], client, done)
    return [item for group in results for item in group]


def _on_worker(function, *arguments):
    threads_per_worker()
    return function(*arguments)


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError("Dask is not installed: pip install 'deepntk[distributed]'") from None
    return distributed


def check_cluster(cluster: str) -> str:
    """A valid cluster description, or a ClusterError saying what is expected."""
    if not isinstance(cluster, str) or not cluster:
        raise ClusterError(f"cluster must be one of {', '.join(KINDS)}, got {cluster!r}")
    if cluster in ("local", "slurm", "pbs", "local-cuda"):
        return cluster
    if "://" in cluster:
        if not ADDRESS.match(cluster):
            raise ClusterError(f"malformed scheduler address {cluster!r}; expected tcp://host:port")
        return cluster
    raise ClusterError(f"unknown cluster {cluster!r}; choose one of {', '.join(KINDS)}")


def read_jobqueue_config(path: str | None) -> dict:
    """The batch-system settings (JSON or YAML): cores, memory, walltime, queue, jobs, … ."""
    if path is None:
        raise ClusterError("a slurm or pbs cluster needs --cluster-config FILE (cores, memory, walltime, queue, jobs)")
    try:
        import yaml

        with open(path) as handle:
            config = yaml.safe_load(handle)
    except OSError as exc:
        raise ClusterError(f"cannot read cluster config {path!r}: {exc.strerror or exc}") from None
    except Exception as exc:  # yaml's parse errors
        raise ClusterError(f"cluster config {path!r} is not valid YAML or JSON: {str(exc).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise ClusterError(f"cluster config {path!r} must be a mapping of settings")
    unknown = sorted(set(config) - set(JOBQUEUE_KEYS))
    if unknown:
        raise ClusterError(f"cluster config {path!r}: unknown settings {', '.join(unknown)} (known: "
                           f"{', '.join(JOBQUEUE_KEYS)})")
    for key in ("cores", "memory"):
        if key not in config:
            raise ClusterError(f"cluster config {path!r} needs {key!r}")
    return config


def jobqueue_cluster(kind: str, config: dict):
    """A dask-jobqueue cluster object (nothing is submitted until it is scaled)."""
    try:
        import dask_jobqueue
    except ImportError:
        raise ClusterError("dask-jobqueue is not installed: pip install 'deepntk[slurm]'") from None
    settings = {k: v for k, v in config.items() if k != "jobs"}
    settings.setdefault("processes", 1)
    settings.setdefault("job_script_prologue", [f"export {k}={v}" for k, v in SINGLE_THREADED.items()])
    cls = dask_jobqueue.SLURMCluster if kind == "slurm" else dask_jobqueue.PBSCluster
    try:
        return cls(**settings)
    except (TypeError, ValueError) as exc:
        raise ClusterError(f"invalid {kind} settings: {exc}") from None


def job_script(kind: str, config_path: str) -> str:
    """The job script a slurm/pbs cluster would submit (for --dry-run; submits nothing, serves no dashboard)."""
    config = read_jobqueue_config(config_path)
    cluster = jobqueue_cluster(kind, {**config, "scheduler_options": {"dashboard_address": ":0"}})
    try:
        return cluster.job_script()
    finally:
        cluster.close()


@contextlib.contextmanager
def dask_client(client=None, cluster: str = "local", workers: int | None = None, config_path: str | None = None,
                timeout: float = CONNECT_TIMEOUT):
    """A `distributed.Client` for the duration of the block: `client` itself if given, else one connected to
    the cluster that `cluster` names (started here and closed afterwards)."""
    if client is not None:
        yield client
        return
    cluster = check_cluster(cluster)
    distributed = _distributed()
    if "://" in cluster:
        try:
            active = distributed.Client(cluster, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {cluster} within {timeout:g} s "
                               f"({type(exc).__name__})") from None
        with _closing(active):
            yield active
        return
    started = _start(cluster, workers, config_path, distributed)
    try:
        active = distributed.Client(started, timeout=timeout)
    except BaseException:
        started.close()
        raise
    with _closing(active, started, workers_here=cluster in ("local", "local-cuda")):
        if cluster in ("slurm", "pbs"):
            active.wait_for_workers(1, timeout=None)
        yield active


@contextlib.contextmanager
def _closing(client, *resources, workers_here: bool = False):
    """Close the client (and the cluster) after the block. After an interrupt (Ctrl-C, or SIGTERM raised as one
    by deepntk.cli.interrupts) quietly: closing a cluster under tasks in flight makes distributed log warnings
    and tracebacks about each, here and in the workers (told first when they are this machine's, sharing its
    terminal), which the user, who stopped the run, does not need; and a failure to close must not replace the
    interrupt."""
    resources = (client,) + resources
    try:
        yield
    except KeyboardInterrupt:
        with _distributed_silenced():
            if workers_here:
                with contextlib.suppress(Exception):
                    client.run(_silence_distributed)
            for resource in resources:
                with contextlib.suppress(Exception):
                    resource.close()
        raise
    except BaseException:
        _close_all(resources)
        raise
    _close_all(resources)


def _close_all(resources):
    """Close each in turn (the client before its cluster), every one even when one fails."""
    with contextlib.ExitStack() as stack:
        for resource in reversed(resources):
            stack.callback(resource.close)


NOISY_LOGGERS = ("distributed", "asyncio", "tornado")


def _silence_distributed() -> list[int]:
    """Set distributed's, asyncio's and tornado's loggers to CRITICAL; returns their previous levels."""
    import logging

    loggers = [logging.getLogger(name) for name in NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    return levels


@contextlib.contextmanager
def _distributed_silenced():
    """`_silence_distributed` in this process for the duration of the block."""
    import logging

    levels = _silence_distributed()
    try:
        yield
    finally:
        for name, level in zip(NOISY_LOGGERS, levels):
            logging.getLogger(name).setLevel(level)


@contextlib.contextmanager
def _workers_ignore_interrupts():
    """Start worker processes with SIGINT ignored (a disposition they inherit): a Ctrl-C in a terminal reaches
    the whole process group, and each worker would print a KeyboardInterrupt traceback; the client stops the
    work and closes the cluster instead. SIGINT is also blocked here meanwhile, so a Ctrl-C during the start is
    held, not lost, and raised as soon as the cluster has started."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _start(kind: str, workers, config_path, distributed):
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ClusterError(f"workers must be a positive integer, got {workers!r}")
    if kind in ("local", "local-cuda"):
        check_main_guard()
    if kind == "local":
        with warnings.catch_warnings(), _workers_ignore_interrupts():
            # With the dashboard off the scheduler still serves /health on 8787, or on a free port when another
            # local cluster holds it, and says so: nothing the user of a private local cluster needs to hear.
            warnings.filterwarnings("ignore", message="Port 8787 is already in use", category=UserWarning)
            try:
                return distributed.LocalCluster(n_workers=workers or os.cpu_count() or 1, threads_per_worker=1,
                                                processes=True, dashboard_address=None, env=dict(SINGLE_THREADED))
            except RuntimeError as exc:  # "Nanny failed to start": the workers said why on stderr
                raise ClusterError(f"the local cluster's worker processes failed to start ({exc}); their "
                                   f"message is above") from None
    if kind == "local-cuda":
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            raise ClusterError("dask-cuda is not installed: pip install 'deepntk[gpu-cluster]'") from None
        try:
            with _workers_ignore_interrupts():
                return LocalCUDACluster(dashboard_address=None, threads_per_worker=1)
        except Exception as exc:  # no GPU, no driver: say so in one line
            raise ClusterError(f"cannot start a LocalCUDACluster: {type(exc).__name__}: {exc}") from None
    config = read_jobqueue_config(config_path)
    cluster = jobqueue_cluster(kind, config)
    cluster.scale(jobs=int(config.get("jobs", 1)))
    return cluster


GUARD = 'if __name__ == "__main__":'


def _say_whole_line(line: str) -> None:
    """`line` on standard error in one write: every worker of a cluster says the same sentence at once, and
    SystemExit's own printing writes the text and its newline separately, so two workers' lines ran together."""
    import sys

    try:
        sys.stderr.flush()
        os.write(sys.stderr.fileno(), line.encode())
    except (AttributeError, OSError, ValueError):  # no file descriptor behind stderr (an embedding host)
        sys.stderr.write(line)
        sys.stderr.flush()


def check_main_guard() -> None:
    """Refuse to start local worker processes from the unguarded top level of a script, before any starts.

    Dask starts local workers with multiprocessing's "spawn" (or "forkserver"): each new process runs the main
    script again from the top, so a script that starts a cluster outside the `if __name__ == "__main__":` guard
    makes every worker redo its work and start clusters of its own (108 lines of tracebacks from the README's
    snippet). Here the main script's source tells whether the call comes from its top level outside the guard;
    a worker process that gets here while it re-runs the script is refused too.

    Raises:
        ClusterError: one sentence naming the script, the line and the guard.
    """
    import multiprocessing
    import sys

    # multiprocessing's own flag for "this process is still re-running the parent's main module": a worker of
    # a cluster the parent started. It exits with the sentence alone (a traceback from each worker is what the
    # sentence replaces), and the parent reports that its workers failed to start.
    if getattr(multiprocessing.current_process(), "_inheriting", False):
        _say_whole_line(f"deepntk: a worker process re-running the main script was asked to start a local "
                        f"cluster: put the script's work under `{GUARD}`\n")
        raise SystemExit(1)
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if path is None or _start_method() == "fork":
        return  # interactive sessions, `python -c`, notebooks: the workers have no script to re-run
    line = _top_level_line(main)
    if line is None or _guarded(path, line):
        return
    raise ClusterError(f"a local cluster started from the top level of {path} (line {line}) makes each worker "
                       f"process run that script again: put the call under `{GUARD}`")


def _start_method() -> str:
    try:
        import dask

        return str(dask.config.get("distributed.worker.multiprocessing-method", "spawn"))
    except ImportError:
        return "spawn"


def _top_level_line(main) -> int | None:
    """The line of the main script's module-level code that led to this call, None if it did not (a thread, an
    import hook)."""
    import sys

    frame, line = sys._getframe(1), None
    while frame is not None:
        if frame.f_globals is vars(main) and frame.f_code.co_name == "<module>":
            line = frame.f_lineno
        frame = frame.f_back
    return line


def _guarded(path: str, line: int) -> bool:
    """Whether `line` of the script lies in a top-level `if __name__ == "__main__":` block (True when the source
    cannot be read: nothing to refuse on)."""
    import ast

    try:
        with open(path, encoding="utf-8") as handle:
            tree = ast.parse(handle.read(), path)
    except (OSError, SyntaxError, ValueError):
        return True
    for node in tree.body:
        # The guard's body only: an `else:` branch runs in the workers too.
        if isinstance(node, ast.If) and _is_main_test(node.test) and node.lineno <= line <= node.body[-1].end_lineno:
            return True
    return False


def _is_main_test(test) -> bool:
    """`__name__ == "__main__"` in either order, possibly inside an `and`."""
    import ast

    if isinstance(test, ast.BoolOp) and isinstance(test.op, ast.And):
        return any(_is_main_test(value) for value in test.values)
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    names = [side.id for side in sides if isinstance(side, ast.Name)]
    constants = [side.value for side in sides if isinstance(side, ast.Constant)]
    return names == ["__name__"] and constants == ["__main__"]

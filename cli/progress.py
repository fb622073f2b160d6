"""Progress of the long loops of every command, on stderr (docs/files.md#progress-and-interrupts).

In a terminal, a tqdm bar with rate and ETA. Off a terminal (nohup, Slurm, CI logs) a bar would be one
unreadable line of carriage returns, so a plain line "what: done/total, rate, ETA" is printed instead, at most
once every DEEPNTK_PROGRESS_INTERVAL seconds (default 30) and also when nothing completes in that time (a
96-second depth still says it is running), plus a final line when the loop ends. The engine only calls back
(on_tile, on_seed, on_step, on_iteration); what is shown is decided here.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from ..base.durations import format_duration

INTERVAL_VARIABLE = "DEEPNTK_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 30.0


def progress_interval() -> float:
    """Seconds between two plain progress lines: $DEEPNTK_PROGRESS_INTERVAL, or 30.

    Raises:
        ValueError: the variable is set to something other than a number of seconds > 0.
    """
    text = os.environ.get(INTERVAL_VARIABLE, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):
        raise ValueError(f"${INTERVAL_VARIABLE} must be a number of seconds > 0, got {text!r}")
    return value


class Progress:
    """How far one loop of `total` items (tiles, networks, steps, …) has come, named `what`.

    `update(n)` adds n items done by this run, `set(done, total)` states them; `reuse(n)` adds n items an earlier
    run did (`--resume`); `note(text)` adds a remark (the loss); `clear()` before printing a table row on stdout;
    `close()` at the end (a `with` block closes it, and an exception, an interrupt above all, closes it without a
    final line). `quiet` shows nothing.

    The count shown includes reused items from the start, while the rate and the ETA count only this run's work
    (docs/files.md#progress-and-interrupts): a loop that states its count (`set`) starts from its first statement
    (the items an earlier run finished: a resumed Gram store's tiles, the finished rows of a study; 0 in a fresh
    run), and a loop that counts (`update`) is told of reused items by `reuse`.
    """

    def __init__(self, what: str, total: int | None, quiet: bool = False):
        self.what = what
        self.total = total
        self.done = 0
        self.reused = 0  # items shown as done that this run did not do: left out of the rate and the ETA
        self.remark = ""
        self._bar = self._thread = self._first = None
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._started = self._last_report = time.monotonic()
        if quiet:
            return
        if sys.stderr.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=what, file=sys.stderr, leave=False, dynamic_ncols=True)
            return
        self.interval = progress_interval()
        self._last_line = self._started
        self._thread = threading.Thread(target=self._heartbeat, name="deepntk-progress", daemon=True)
        self._thread.start()

    @property
    def computed(self) -> int:
        """Items this run did."""
        return self.done - self.reused

    def update(self, n: int = 1) -> None:
        self._report(self.done + n, None, 0)

    def set(self, done: int, total: int | None = None) -> None:
        # The first statement of a count is where this run starts (what an earlier run did, or 0).
        self._report(done, total, done if self._first is None else 0)

    def reuse(self, n: int) -> None:
        """`n` more items are done, by an earlier run (their stored results are reused)."""
        self._report(self.done + n, None, n)

    @property
    def finished(self) -> bool:
        """Every item of a known total is done (what follows, until the next stage, is not this loop's work)."""
        return bool(self.total) and self.done >= self.total

    def _report(self, done: int, total: int | None, reused: int) -> None:
        if total is not None:
            self.total = total
        self.done = done
        self._last_report = time.monotonic()
        self.reused += reused
        first = self._first is None
        if first:
            # (items computed, time) at the first report, from which the rate leaves out start-up and reused work
            self._first = (self.computed, time.monotonic())
        if self._bar is not None:
            self._show_on_bar(reused, first)
        elif self._thread is not None and time.monotonic() - self._last_line >= self.interval:
            self._line(due=True)

    def _show_on_bar(self, reused: int, first: bool) -> None:
        """Move the tqdm bar to `done`. What the first report gives, and reused items, go into the bar's `initial`
        count (tqdm's own notion of a restarted bar): shown, never part of its rate or ETA."""
        bar = self._bar
        if first:  # the bar's clock starts here too, as the plain line's rate does
            bar.reset(self.total)
            bar.initial = bar.n = bar.last_print_n = self.done
            bar.refresh()
            return
        if self.total is not None:
            bar.total = self.total
        if reused:
            bar.initial += reused
            bar.n += reused
            bar.last_print_n += reused  # tqdm's rate counts from the last printed count
            bar.refresh()
        bar.update(self.done - bar.n)

    def note(self, text: str) -> None:
        self.remark = text
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    def clear(self) -> None:
        if self._bar is not None:
            self._bar.clear()

    def close(self, final: bool = True) -> None:
        """End the display: on a terminal the bar goes; off it, with `final`, one last line."""
        if self._closed.is_set():
            return
        self._closed.set()
        if self._bar is not None:
            self._bar.close()
        if self._thread is not None:
            self._thread.join()
            if final:
                self._line(final=True)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.close(final=exc_type is None)

    def rate(self) -> float | None:
        """Items this run computed per second since the first report (or since the start, before a second
        one); reused items count for nothing."""
        # A finished loop's rate is the one it finished at, however long the stage stays open after it.
        now = self._last_report if self.finished else time.monotonic()
        first_computed, first_time = self._first if self._first is not None else (0, self._started)
        if self.computed > first_computed and now > first_time:
            return (self.computed - first_computed) / (now - first_time)
        elapsed = now - self._started
        return self.computed / elapsed if self.computed > 0 and elapsed > 0 else None

    def status(self, final: bool = False) -> str:
        """The plain line: "tiles: 12/55 (22%), 3.1/s, ETA 14 s, loss 1.2e-3"."""
        elapsed = time.monotonic() - self._started
        parts = [f"{self.done}/{self.total} ({100 * self.done / self.total:.0f}%)" if self.total else f"{self.done}"]
        rate = self.rate()
        if rate:
            parts.append(f"{rate:.3g}/s" if rate >= 1 else f"{format_duration(1 / rate)} each")
        if final:
            parts.append(f"{format_duration(elapsed)} in all")
        elif rate and self.total:
            parts.append(f"ETA {format_duration(max(self.total - self.done, 0) / rate)}")
        else:
            parts.append(f"{format_duration(elapsed)} so far")
        if self.remark:
            parts.append(self.remark)
        return f"{self.what}: {', '.join(parts)}"

    def _line(self, final: bool = False, due: bool = False) -> None:
        """Print the status line; with `due`, only if an interval has passed since the last one (checked under
        the lock: the loop and the heartbeat may both find a line due at the same moment)."""
        with self._lock:
            now = time.monotonic()
            if due and now - self._last_line < self.interval:
                return
            self._last_line = now
            print(self.status(final), file=sys.stderr, flush=True)

    def _heartbeat(self) -> None:
        """A line every `interval` even while no item completes (one depth can take minutes)."""
        while not self._closed.wait(max(0.0, self._last_line + self.interval - time.monotonic())):
            if self.finished:  # "150/150 (100%), ETA 0 s" again and again would be news of nothing
                with self._lock:
                    self._last_line = time.monotonic()
                continue
            self._line(due=True)


class Stages:
    """Loops one after another, each its own `Progress`, the previous one closed when the next starts: the
    trainings of an experiment (`on_step`), the Grams and solves of each Table 1 row (`show`). A `with` block
    closes the last one."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.current = self.label = None
        self.runs = 0

    def show(self, label: str, done: int, total: int | None, remark: str = "") -> None:
        """`done` of `total` in the stage `label`; a new label, or a count that starts over, is a new stage."""
        if self.current is None or label != self.label or done < self.current.done:
            self.close()
            self.current, self.label = Progress(label, total, self.quiet), label
        if remark:
            self.current.note(remark)
        self.current.set(done, total)

    def on_step(self, step: int, total: int, value) -> None:
        """The trainer's callback: step `step` of `total` ended with batch loss `value`; step 1 starts a run."""
        if self.current is None or step <= self.current.done:
            self.runs += 1
        try:
            remark = f"batch loss {float(value):.3e}"
        except (TypeError, ValueError):  # an ensemble's losses
            remark = ""
        self.show(f"run {self.runs}: SGD steps", step, total, remark)

    def close(self, final: bool = True) -> None:
        if self.current is not None:
            self.current.close(final)
            self.current = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, traceback):
        self.close(final=exc_type is None)

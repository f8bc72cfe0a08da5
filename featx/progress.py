"""Progress bars: shown on a terminal, silent in logs, pipes and with --quiet; and the clock that
rates are measured by.

A rate counts the time the process ran, not time it spent stopped: a run suspended with Ctrl-Z
or SIGSTOP for a minute, then continued, read 10 rows/s where it had made 1,000. `running_time`
is the wall clock less the seconds the process was stopped. A ticker thread notes every gap in
its own 0.1 s ticks; a gap counts as stopped once SIGCONT, which ends every stop, is seen (a
Python signal handler, so only in the main thread; elsewhere nothing is subtracted). A gap with
no SIGCONT (a thread kept from running by the GIL or a loaded machine) is not subtracted.
"""
from __future__ import annotations

import signal
import sys
import threading
import time
from typing import Any

from tqdm.auto import tqdm

_TICK_S = 0.1
_GAP_S = 0.5  # a silence this long between ticks is a gap worth checking
_CONFIRM_S = 30.0  # a SIGCONT confirms only a gap that ended this recently


class _StopWatch:
    """Seconds this process has spent stopped (see the module docstring); one per process."""

    def __init__(self) -> None:
        self.stopped_s = 0.0
        self._last = time.monotonic()
        self._gap = self._gap_at = 0.0  # the latest gap not yet confirmed by a SIGCONT, and when it ended
        self._continued = self._confirmed = 0
        self._lock = threading.Lock()
        self._previous: Any = None

    def start(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGCONT, self._on_continue)
        threading.Thread(target=self._tick, name="featx-stopwatch", daemon=True).start()

    def _on_continue(self, signum: int, frame: Any) -> None:
        self._continued += 1
        if callable(self._previous):
            self._previous(signum, frame)

    def _tick(self) -> None:
        while True:
            time.sleep(_TICK_S)
            with self._lock:
                self._observe(time.monotonic())

    def _observe(self, now: float) -> None:
        """Note a gap since the last observation, and count the latest one once a SIGCONT confirms it
        (the lock held)."""
        if now - self._last > _GAP_S:
            self._gap, self._gap_at = now - self._last - _TICK_S, now
        self._last = now
        if self._continued > self._confirmed:
            if now - self._gap_at < _CONFIRM_S:  # a gap long before the SIGCONT was not its stop
                self.stopped_s += self._gap
            self._gap, self._confirmed = 0.0, self._continued

    def stopped(self) -> float:
        """Seconds stopped, as of now: a stop whose SIGCONT has been handled counts at once, not at the
        ticker's next tick (a time stamp taken in between read the clock as if the stop had not
        happened, and an interval ending after the tick came out short by the stop, even negative)."""
        with self._lock:
            self._observe(time.monotonic())
            return self.stopped_s


_WATCH: _StopWatch | None = None
_WATCH_LOCK = threading.Lock()


def _watch() -> _StopWatch:
    """The process's stop watch, started on first use."""
    global _WATCH
    if _WATCH is None:
        with _WATCH_LOCK:
            if _WATCH is None:
                _WATCH = _StopWatch()
                _WATCH.start()
    return _WATCH


def stopped_seconds() -> float:
    """Seconds this process has spent stopped since its stop watch started."""
    return _watch().stopped()


def running_time() -> float:
    """Seconds on a clock that stands still while this process is stopped (time.time()'s epoch)."""
    return time.time() - stopped_seconds()


_TQDM: Any = tqdm  # typed in some tqdm releases, not in others


class _Bar(_TQDM):
    """tqdm measuring its rate and ETA by `running_time`."""

    _time = staticmethod(running_time)


def progress_bar(total: int, desc: str, unit: str = "rows", initial: int = 0, show: bool | None = None) -> tqdm:
    """A tqdm bar with rate and ETA (by running time); `show=None` means: only when stderr is a terminal."""
    enabled = sys.stderr.isatty() if show is None else show
    return _Bar(total=total, initial=initial, unit=unit, desc=desc, dynamic_ncols=True, smoothing=0.1,
                disable=not enabled)


def status(message: str, show: bool | None = None) -> None:
    """One line on stderr saying what a long step without a bar is doing (unpacking, converting a
    model); `show=None` means: only when stderr is a terminal."""
    if sys.stderr.isatty() if show is None else show:
        print(f"featx: {message}", file=sys.stderr, flush=True)

"""Two small threads that let reading, computing and writing overlap."""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

_DONE = object()


def prefetch(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate `items` in a background thread, keeping up to `depth` ready.

    Exceptions raised while producing reach the consumer at the same position.
    Closing the returned generator early stops the producer.
    """
    ready: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put((_DONE, None))
        except BaseException as e:  # handed to the consumer, re-raised there
            ready.put((_DONE, e))

    thread = threading.Thread(target=produce, name="featx-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()


class BackgroundWorker:
    """Runs `work(item)` on its own thread, in submission order, at most `depth` behind.

    `close()` waits for every submitted item; an error in `work` is raised by the
    next `submit` or by `close`, so nothing fails silently.
    """

    def __init__(self, work: Callable[[Any], None], depth: int = 2, name: str = "featx-worker") -> None:
        self._work = work
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _DONE:
                return
            if self._error is None:
                try:
                    self._work(item)
                except BaseException as e:
                    self._error = e

    def submit(self, item: Any) -> None:
        self._raise_if_failed()
        self._queue.put(item)

    def close(self) -> None:
        """Wait until every submitted item is done; raise the worker's error, if any."""
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

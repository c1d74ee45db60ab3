"""Threads of the scoring passes: the next batch computed, or read, while this one is
handled. Each batch is computed alone, so results never depend on the threads."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from queue import Empty, Full, Queue
from typing import Any, TypeVar

from threadpoolctl import ThreadpoolController

T = TypeVar("T")
R = TypeVar("R")


def ahead(
    items: Iterable[T], fn: Callable[[T], R], depth: int = 1,
    initializer: Callable[[], object] | None = None,
) -> Iterator[tuple[T, R]]:
    """(item, fn(item)) in order, with up to `depth` later items computed meanwhile in
    `depth + 1` threads (each started with `initializer`). Each batch is computed alone,
    so the results do not depend on it; the kNN, BLAS and torch kernels release the GIL."""
    with ThreadPoolExecutor(max_workers=depth + 1, initializer=initializer) as pool:
        pending: deque[tuple[T, Future[R]]] = deque()
        for item in items:
            pending.append((item, pool.submit(fn, item)))
            if len(pending) > depth:
                first, future = pending.popleft()
                yield first, future.result()
        while pending:
            first, future = pending.popleft()
            yield first, future.result()


def single_threaded_openmp() -> None:
    """OpenMP regions started by this thread (pykdtree's kNN) use one thread."""
    ThreadpoolController().limit(limits=1, user_api="openmp")


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """The items of `items`, produced by a background thread up to `depth` ahead (pass 2
    reads the next chunk while this one is written)."""
    queue: Queue[tuple[bool, Any]] = Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        queue.put((True, item), timeout=0.1)
                        break
                    except Full:
                        continue
                if stop.is_set():
                    return
            queue.put((False, None))
        except BaseException as err:  # handed to the consumer, raised there
            queue.put((False, err))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            ok, value = queue.get()
            if not ok:
                if value is not None:
                    raise value
                return
            yield value
    finally:
        stop.set()
        while thread.is_alive():
            try:
                queue.get(timeout=0.1)
            except Empty:
                pass


"""Ordered read-ahead: decode the next scene files while the model works on the current batch.

One background thread is enough on a CPU, where the model dominates. A GPU encodes far faster than one core
decompresses HDF5 (and h5py serialises threads behind a global lock), so `workers > 1` uses processes.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from typing import TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


def _executor(workers: int) -> Executor:
    if workers <= 1:
        return ThreadPoolExecutor(max_workers=1, thread_name_prefix="scene-reader")
    # spawn: forking a process that already runs torch's thread pools can deadlock the child
    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))


def prefetch_map(
    fn: Callable[[In], Out], items: Iterable[In], workers: int = 1, ahead: int = 4
) -> Iterator[Out]:
    """`map(fn, items)` computed in the background, in order, at most `ahead` results beyond the consumer.

    `fn` must be a module-level function when `workers > 1` (it is sent to other processes).
    """
    ahead = max(ahead, 2 * workers)  # every process busy, one result waiting each
    with _executor(workers) as pool:
        pending: deque = deque()
        source = iter(items)
        try:
            for item in source:
                pending.append(pool.submit(fn, item))
                if len(pending) >= ahead:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()

"""Batches of views that cross scene boundaries, with scenes coming out whole and in their input order.

A scene has 20 views and a GPU wants batches of 64 or more: cutting batches at scene boundaries would waste
most of every batch. Here every batch is full except the last one of the run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from preprocessing.variant import SceneRead


class PendingResult(Protocol):
    def result(self) -> tuple[np.ndarray, np.ndarray]: ...


class BatchEncoder(Protocol):
    """What `encode_scenes` needs of an encoder (ViewEncoder; a stand-in in the tests)."""

    def submit(self, views: list[np.ndarray]) -> PendingResult: ...


@dataclass
class EncodedScene:
    """A read scene with its float16 tokens (V, h, w, C) and CLS (V, C), or a skipped one (`read.error`)."""

    read: SceneRead
    tokens: np.ndarray | None = None
    cls: np.ndarray | None = None
    _token_parts: list[np.ndarray] = field(default_factory=list)
    _cls_parts: list[np.ndarray] = field(default_factory=list)
    _views_queued: int = 0
    _views_done: int = 0

    @property
    def complete(self) -> bool:
        return self.read.scene is None or self._views_done == self.read.scene.n_views


def encode_scenes(
    reads: Iterable[SceneRead],
    encoder: BatchEncoder,
    batch_size: int,
    on_views_encoded: Callable[[int], None] = lambda n: None,
) -> Iterator[EncodedScene]:
    """Encode the views of `reads` in batches of `batch_size`; yield each scene once all its views are done.

    One batch is kept in flight: the next batch is submitted before the previous one's results are collected,
    so an asynchronous device keeps computing while this thread hands finished scenes on.
    """
    waiting: deque[EncodedScene] = deque()  # in input order; the head is the next to yield
    queued: deque[EncodedScene] = deque()  # scenes with views not yet submitted
    queued_views = 0
    in_flight = None

    def submit_batch(size: int):
        nonlocal queued_views
        chunks, owners = [], []
        while size:
            scene = queued[0]
            start = scene._views_queued
            take = min(size, scene.read.scene.n_views - start)
            chunks.append(scene.read.scene.rgb[start : start + take])
            owners.append((scene, take))
            scene._views_queued += take
            size -= take
            queued_views -= take
            if scene._views_queued == scene.read.scene.n_views:
                queued.popleft()
        return encoder.submit(chunks), owners

    def collect(batch) -> None:
        pending, owners = batch
        tokens, cls = pending.result()
        offset = 0
        for scene, take in owners:
            scene._token_parts.append(tokens[offset : offset + take])
            scene._cls_parts.append(cls[offset : offset + take])
            scene._views_done += take
            offset += take
        on_views_encoded(offset)

    def finished() -> Iterator[EncodedScene]:
        while waiting and waiting[0].complete:
            scene = waiting.popleft()
            if scene.read.scene is not None:
                scene.tokens = np.concatenate(scene._token_parts)
                scene.cls = np.concatenate(scene._cls_parts)
                scene._token_parts, scene._cls_parts = [], []
            yield scene

    def step(size: int) -> Iterator[EncodedScene]:
        nonlocal in_flight
        batch = submit_batch(size) if size else None
        if in_flight is not None:
            collect(in_flight)
        in_flight = batch
        yield from finished()

    for read in reads:
        item = EncodedScene(read)
        waiting.append(item)
        if read.scene is not None:
            queued.append(item)
            queued_views += read.scene.n_views
        while queued_views >= batch_size:
            yield from step(batch_size)
        yield from finished()
    if queued_views:
        yield from step(queued_views)
    yield from step(0)

"""The event bus: one publisher side, any number of independent subscribers.

Each subscriber has its own queue so a slow consumer never slows a job or another consumer.
Coalescable events (progress, mutation status) replace their older, unread copy; everything else
(logs, failures, state changes) is kept until read. `publish` never blocks or awaits.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio

from engine.events import Event


class Subscription:
    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._items: OrderedDict[Any, Event] = OrderedDict()
        self._seq = itertools.count()
        self._lock = threading.Lock()
        self._wakeup = anyio.Event()
        self._closed = False
        self._gathering = False  # in `receive_batch_by`: routine events do not wake the reader

    def _put(self, event: Event) -> None:
        key = event.coalesce_key()
        with self._lock:
            if key is None:
                key = ("seq", next(self._seq))
            elif key in self._items:
                # Keep the newest copy, placed in order of arrival.
                del self._items[key]
            self._items[key] = event
        if not (self._gathering and event.routine()):
            self._wakeup.set()

    def drain(self) -> list[Event]:
        """Everything queued now, oldest first, without waiting."""
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
            self._wakeup = anyio.Event()
        return items

    async def receive_batch(self) -> list[Event]:
        """Wait until something is queued (or the bus closes), then take all of it."""
        while True:
            items = self.drain()
            if items or self._closed:
                return items
            await self._wakeup.wait()

    async def receive_batch_by(self, deadline: float) -> list[Event]:
        """Wait until an event that is not routine is queued, the bus closes, or `deadline`
        (anyio's clock) passes; then take everything queued. Routine events arriving meanwhile
        are queued without waking the reader: a reader that gathers them pays one wakeup per
        deadline, not one per event."""
        self._gathering = True
        try:
            with anyio.move_on_after(deadline - anyio.current_time()):
                if not self._closed:
                    await self._wakeup.wait()
        finally:
            self._gathering = False
        return self.drain()

    async def __aiter__(self) -> AsyncIterator[Event]:
        while True:
            batch = await self.receive_batch()
            if not batch and self._closed:
                return
            for event in batch:
                yield event

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()
        self._bus._remove(self)


class EventBus:
    """Publish from the event loop thread; subscribers read at their own pace."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._callbacks: list[Callable[[Event], None]] = []

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        self._subs.append(sub)
        return sub

    def add_listener(self, callback: Callable[[Event], None]) -> None:
        """Synchronous listener (e.g. the log file writer); must be quick and must not raise."""
        self._callbacks.append(callback)

    def _remove(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def publish(self, event: Event) -> None:
        for callback in list(self._callbacks):
            try:
                callback(event)
            except Exception:  # a broken listener must not break the job
                pass
        for sub in list(self._subs):
            sub._put(event)

    def close(self) -> None:
        for sub in list(self._subs):
            sub.close()

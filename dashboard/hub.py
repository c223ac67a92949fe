"""Live alert events to websocket clients, with gapless sequence numbers and resume.

Every event is encoded once, as text and as a complete websocket frame, and that one object
is shared by every client. Events reach the event loop in batches (one wake-up per batch of
the pipeline, not per event).

A client that has caught up is written to by the hub itself: the batch's frames are joined
once per owner filter and written straight to each such client's connection from the one
callback that fans the batch out, so a batch costs the loop one callback plus one write per
client, not a task wake-up and a queue entry per event for each client. A client that is
not caught up (still receiving its opening, or paused by flow control because it reads
slowly) gets the events in a bounded queue instead, which its own sender task drains in
order before handing it back to the hub. A client whose queue fills (a slow or dead browser)
is disconnected with a close reason that tells it to resume with `?since=`, so it can never
slow ingestion or make the hub hold more than a queue's worth of events for it.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from alerting.lifecycle import AlertBook, Event, event_body
from alerting.store import AlertStore

log = logging.getLogger("lifeline.hub")

CLIENT_QUEUE = 10_000
LAGGING_CLOSE_CODE = 4008  # application close code: fell behind, reconnect with ?since=


@dataclass(frozen=True, slots=True)
class LiveEvent:
    """One alert event as every client receives it, encoded once."""

    seq: int
    owner: str
    text: str  # the JSON message (CONTRACT §6)
    frame: bytes  # the same message as a complete, unmasked websocket text frame (RFC 6455 §5.2)


def text_frame(payload: bytes) -> bytes:
    """A final, uncompressed text frame as a server sends it (no mask); valid on a connection
    with permessage-deflate too, whose uncompressed messages simply leave RSV1 unset (RFC 7692 §6)."""
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", 0x81, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, size)
    else:
        header = struct.pack("!BBQ", 0x81, 127, size)
    return header + payload


class DirectWriter(Protocol):
    """A client connection the hub may write frames to itself (dashboard.websocket.DirectFrames)."""

    def writable_now(self) -> bool:
        """True when a write now goes out: open, and not paused by flow control."""

    def write_now(self, frames: bytes) -> None:
        """Write complete frames without waiting."""


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue
    lagging: asyncio.Event = field(default_factory=asyncio.Event)
    owner: str | None = None  # integrators only see their owner's alerts
    # The last seq this client was sent or had in its opening; events up to it are skipped,
    # as an opening read from the store can cover events whose fan-out is still on its way.
    covered: int = -1
    # Set (by the client's sender, when its queue is empty) while the hub writes to the
    # connection itself; None while events go through the queue.
    direct: DirectWriter | None = None

    def go_direct(self, writer: DirectWriter) -> None:
        """Called by the client's sender on the event loop once it sent everything queued."""
        assert self.queue.empty()
        self.direct = writer


class AlertHub:
    """Fans alert events out to websocket subscribers on the event loop."""

    def __init__(self, book: AlertBook, store: AlertStore, loop: asyncio.AbstractEventLoop,
                 queue_size: int = CLIENT_QUEUE):
        self.book = book
        self.queue_size = queue_size
        self.store = store
        self.loop = loop
        self.subscribers: set[Subscriber] = set()
        self.dropped = 0
        self._pending: collections.deque[tuple[int, str, bytes]] = collections.deque()
        self._flush_scheduled = False

    def on_event(self, event: Event) -> None:
        """AlertBook listener; called from the pipeline or request thread, in seq order."""
        self._pending.append((event.seq, event.alert.owner, event.body))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon_threadsafe(self._fan_out)

    def _fan_out(self) -> None:
        # Clear the flag before draining: an event appended after this line either is drained
        # below or schedules the next flush itself.
        self._flush_scheduled = False
        events = []
        while self._pending:
            seq, owner, body = self._pending.popleft()
            events.append(LiveEvent(seq, owner, body.decode(), text_frame(body)))
        if not events:
            return
        joined: dict[str | None, tuple[list[LiveEvent], bytes]] = {}  # per owner filter, built once
        for subscriber in list(self.subscribers):
            if subscriber.lagging.is_set():
                continue
            direct = subscriber.direct
            if direct is not None:
                if direct.writable_now():
                    self._write(subscriber, direct, events, joined)
                    continue
                # Paused (the client reads slowly) or closing: back to the queue, whose sender
                # waits for the connection and hands the client back once it caught up. Every
                # later event follows in the queue, so the order holds.
                subscriber.direct = None
            self._enqueue(subscriber, events)

    def _write(self, subscriber: Subscriber, direct: DirectWriter, events: list[LiveEvent],
               joined: dict[str | None, tuple[list[LiveEvent], bytes]]) -> None:
        shared = joined.get(subscriber.owner)
        if shared is None:
            mine = events if subscriber.owner is None else [e for e in events if e.owner == subscriber.owner]
            shared = joined[subscriber.owner] = (mine, b"".join(e.frame for e in mine))
        mine, frames = shared
        if mine and mine[0].seq <= subscriber.covered:
            mine = [e for e in mine if e.seq > subscriber.covered]  # rare: only just after the opening
            frames = b"".join(e.frame for e in mine)
        if mine:
            direct.write_now(frames)
            subscriber.covered = mine[-1].seq

    def _enqueue(self, subscriber: Subscriber, events: list[LiveEvent]) -> None:
        put = subscriber.queue.put_nowait
        for event in events:
            if subscriber.owner is not None and subscriber.owner != event.owner:
                continue
            try:
                put(event)
            except asyncio.QueueFull:
                subscriber.lagging.set()
                self.dropped += 1
                return

    def subscribe(self, owner: str | None = None) -> Subscriber:
        subscriber = Subscriber(asyncio.Queue(self.queue_size), owner=owner)
        self.subscribers.add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)

    def opening(self, since: int | None, owner: str | None) -> tuple[int, list[bytes]]:
        """What a new client receives before live events: (last seq covered, messages).

        Without `since`: a snapshot of open alerts. With `since`: every event after it, or a
        snapshot marked reset when those events are no longer retained (or never existed).
        """
        if since is not None:
            first, last = self.store.seq_range()
            if since <= last and (since >= first - 1 or first == 0) and since >= 0:
                messages = []
                covered = since
                while True:
                    rows = self.store.events_after(covered, limit=5000)
                    for seq, event, alert_json in rows:
                        if owner is None or _owner_of(alert_json) == owner:
                            messages.append(event_body(seq, event, alert_json.encode()))
                        covered = seq
                    if len(rows) < 5000:
                        break
                return covered, messages
        seq, alerts = self.book.snapshot()
        if owner is not None:
            alerts = [a for a in alerts if a.get("owner") == owner]
        snapshot = {"type": "snapshot", "seq": seq, "alerts": alerts}
        if since is not None:
            snapshot["reset"] = True
        return seq, [msgspec.json.encode(snapshot)]


def _owner_of(alert_json: str) -> str:
    return msgspec.json.decode(alert_json).get("owner", "")

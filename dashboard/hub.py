"""Live alert events to websocket clients, with gapless sequence numbers and resume.

Each client has a bounded queue. Every event is encoded once, as text and as a complete
websocket frame, and that one object is shared by every client; a client whose queue fills
(a slow or dead browser) is disconnected with a close reason that tells it to resume with
`?since=`, so it can never slow ingestion. Events reach the event loop in batches (one
wake-up per batch of the pipeline, not per event), so a storm of alerts costs the loop one
callback per batch plus one queue entry per event and client.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
from dataclasses import dataclass, field

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


@dataclass(eq=False)
class Subscriber:
    queue: asyncio.Queue
    lagging: asyncio.Event = field(default_factory=asyncio.Event)
    owner: str | None = None  # integrators only see their owner's alerts


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
        for subscriber in list(self.subscribers):
            put = subscriber.queue.put_nowait
            for event in events:
                if subscriber.lagging.is_set():
                    break
                if subscriber.owner is not None and subscriber.owner != event.owner:
                    continue
                try:
                    put(event)
                except asyncio.QueueFull:
                    subscriber.lagging.set()
                    self.dropped += 1

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

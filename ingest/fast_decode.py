"""The fast path of telemetry decoding: many clean messages at once into one columnar batch.

Almost all traffic is well-formed: known sensors of the publishing gateway, declared metrics,
plain numbers, timestamps within the accepted window. For that traffic the precise,
reading-object-at-a-time checks of `ingest.decode` are wasted work, so this path

- parses a whole group of payloads in one C call (`ingest/payload_parser.c`) straight into
  (channel, ts, value) columns, looking each sensor and metric up in a per-gateway table (sensor
  id -> {metric: channel}) so that ownership and metric declarations are checked by the parse;
- checks timestamps and values for the whole group of messages with numpy, and builds the
  arrays once per group rather than once per message (one-reading messages are mostly
  per-message overhead).

The parser knows only a strict subset of the shape (one object of sensor -> reading object or
list of them; reading objects of exactly `values` and an optional unsigned integer `ts`; plain
numbers; keys without escapes, each at most once). It never refuses anything itself: a message
that takes any unusual turn (invalid JSON, a waveform block, an unknown sensor or metric, a
boolean, an escaped key, a repeated key, a timestamp out of range, ...) is handed back whole, and
the caller decodes it with `TelemetryDecoder`, which finds the precise reason for each refused
reading object and keeps the valid rest. The two paths therefore accept exactly the same
readings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ingest._payload_parser import parse, table
from ingest.batch import Batch
from ingest.decode import FUTURE_TOLERANCE_MS
from ingest.rejection import MAX_PAYLOAD_BYTES
from lifeline.catalogue import Catalogue

_NO_TS = -1  # `ts` left out (the parser writes -1): the arrival time is used. Sent ones are >= 0.


class FastDecoder:
    """Decodes groups of (gateway, payload, received_ms) into one Batch plus the messages
    that need the precise decoder."""

    def __init__(self, catalogue: Catalogue, retention_ms: int):
        self.retention_ms = retention_ms  # the same as TelemetryDecoder's
        channels: dict[str, dict[str, dict[str, int]]] = {}  # gateway -> sensor id -> metric -> channel
        for sensor in catalogue.sensors:
            channels.setdefault(sensor.gateway, {})[sensor.id] = catalogue.channels_of[sensor.id]
        #: gateway -> the parser's table of its sensors: one lookup checks ownership, the next the metric.
        self._tables = {gateway: table(sensors) for gateway, sensors in channels.items()}

    def decode_many(self, messages: Sequence[tuple[str, bytes, int]]) -> tuple[Batch, list[int]]:
        """Returns the accepted readings of the clean messages and the indexes (into
        `messages`) of those to decode precisely; their readings are not in the batch."""
        payloads = [payload for _, payload, _ in messages]
        tables = [self._tables.get(gateway) for gateway, _, _ in messages]
        # Every row takes at least 5 payload bytes (`"":0` and a `,` or `}`), so the parser never
        # runs out of room; the untouched part of the arrays is never paged in.
        cap = sum(map(len, payloads)) // 5 + 1
        channel = np.empty(cap, np.int32)
        ts = np.empty(cap, np.int64)
        value = np.empty(cap, np.float64)
        counts = np.empty(len(messages), np.int64)  # rows per message, -1 when handed back
        n = parse(payloads, tables, MAX_PAYLOAD_BYTES, channel, ts, value, counts)
        handed_back = counts < 0
        fallback = np.flatnonzero(handed_back).tolist()
        if not n:
            return Batch.empty(), fallback
        counts[handed_back] = 0
        # Copies, not views: a view would keep the arrays sized for the worst case (a row per five
        # payload bytes, about twelve times the usual) alive with the batch, in the archive's queue.
        channel, ts, value = channel[:n].copy(), ts[:n].copy(), value[:n].copy()

        received = np.array([m[2] for m in messages], np.int64)
        # The same window as TelemetryDecoder: not older than the retention, not over 5 min
        # ahead of the message's arrival. Usually every row has its ts and all are within the
        # window of every message of the group, which four reductions tell; only otherwise is
        # each row set against its own message (a small batch's numpy calls cost more than its
        # rows: this is per-message overhead for one-reading messages).
        earliest, latest = int(ts.min()), int(ts.max())
        if (earliest != _NO_TS and earliest >= int(received.max()) - self.retention_ms
                and latest <= int(received.min()) + FUTURE_TOLERANCE_MS and np.isfinite(value).all()):
            bad = None
        else:
            row_received = np.repeat(received, counts)
            ts = np.where(ts == _NO_TS, row_received, ts)
            bad = (ts < row_received - self.retention_ms) | (ts > row_received + FUTURE_TOLERANCE_MS)
            bad |= ~np.isfinite(value)  # the parser hands back non-finite numbers already: a safety net
        if bad is not None and bad.any():
            message_of_row = np.repeat(np.arange(len(messages)), counts)
            refused = np.unique(message_of_row[bad])
            keep = ~np.isin(message_of_row, refused)
            channel, ts, value = channel[keep], ts[keep], value[keep]
            fallback = sorted(fallback + refused.tolist())
        used = np.flatnonzero(counts > 0)
        oldest = float(received[used].min()) if used.size else 0.0
        return Batch(channel, ts, value, oldest), fallback

"""The fast path of telemetry decoding: many clean messages at once into one columnar batch.

Almost all traffic is well-formed: known sensors of the publishing gateway, declared metrics,
plain numbers, timestamps within the accepted window. For that traffic the precise,
reading-object-at-a-time checks of `ingest.decode` are wasted work, so this path

- lets msgspec validate shapes and types in C (a `Struct` per reading object, strict types);
- flattens each message with one comprehension into (channel, ts, value) rows, the channel
  looked up in a per-gateway dict (sensor -> {metric: channel}) so that ownership and metric
  declarations are checked by the same lookup;
- checks timestamps and values for the whole group of messages with numpy, and builds the
  arrays once per group rather than once per message (one-reading messages are mostly
  per-message overhead).

It never refuses anything itself: a message that takes any unusual turn (invalid JSON, a
waveform block, an unknown sensor or metric, a boolean, a timestamp out of range, ...) is
handed back whole, and the caller decodes it with `TelemetryDecoder`, which finds the precise
reason for each refused reading object and keeps the valid rest. The two paths therefore
accept exactly the same readings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec
import numpy as np

from ingest.batch import Batch
from ingest.decode import FUTURE_TOLERANCE_MS
from ingest.rejection import MAX_PAYLOAD_BYTES
from lifeline.catalogue import Catalogue

_NO_TS = -1  # `ts` left out: the arrival time is used. Real timestamps are >= 0 (see _Reading).


class _Reading(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """A plain reading object; `dt` (a waveform block) is an unknown field here on purpose."""

    values: Annotated[dict[str, float], msgspec.Meta(min_length=1)]
    # Bounded so that the default cannot be mistaken for a sent value and every ts fits int64;
    # out-of-bound timestamps go to the precise path, which refuses them as stale or future.
    ts: Annotated[int, msgspec.Meta(ge=0, le=2**62)] = _NO_TS


_PLAIN = msgspec.json.Decoder(dict[str, list[_Reading] | _Reading])


class FastDecoder:
    """Decodes groups of (gateway, payload, received_ms) into one Batch plus the messages
    that need the precise decoder."""

    def __init__(self, catalogue: Catalogue, retention_ms: int):
        self.retention_ms = retention_ms  # the same as TelemetryDecoder's
        #: gateway -> sensor id -> metric -> channel: one lookup checks ownership, the next the metric.
        self._channels: dict[str, dict[str, dict[str, int]]] = {}
        for sensor in catalogue.sensors:
            self._channels.setdefault(sensor.gateway, {})[sensor.id] = catalogue.channels_of[sensor.id]

    def decode_many(self, messages: Sequence[tuple[str, bytes, int]]) -> tuple[Batch, list[int]]:
        """Returns the accepted readings of the clean messages and the indexes (into
        `messages`) of those to decode precisely; their readings are not in the batch."""
        channels: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        counts: list[int] = []  # rows per message, 0 for a message sent to the precise path
        fallback: list[int] = []
        no_sensors: dict[str, dict[str, int]] = {}
        for i, (gateway, payload, _) in enumerate(messages):
            own = self._channels.get(gateway, no_sensors)
            try:
                if len(payload) > MAX_PAYLOAD_BYTES:
                    raise ValueError
                document = _PLAIN.decode(payload)
                # One row per reading; `for metric_channels in [...]` binds the sensor's lookup
                # once per sensor, and a KeyError (foreign sensor, undeclared metric) sends the
                # whole message to the precise path.
                rows = [(metric_channels[metric], reading.ts, value)
                        for sensor, body in document.items()
                        for metric_channels in [own[sensor]]
                        for reading in (body if type(body) is list else (body,))
                        for metric, value in reading.values.items()]
            except (ValueError, KeyError):  # msgspec.DecodeError is a ValueError
                fallback.append(i)
                counts.append(0)
                continue
            if rows:
                message_channels, message_stamps, message_values = zip(*rows, strict=True)
                channels += message_channels
                stamps += message_stamps
                values += message_values
            counts.append(len(rows))
        if not channels:
            return Batch.empty(), fallback

        channel = np.array(channels, np.int32)
        ts = np.array(stamps, np.int64)
        value = np.array(values, np.float64)
        received = np.array([m[2] for m in messages], np.int64)
        row_received = np.repeat(received, counts)
        ts = np.where(ts == _NO_TS, row_received, ts)
        # The same window as TelemetryDecoder: not older than the retention, not over 5 min ahead.
        bad = (ts < row_received - self.retention_ms) | (ts > row_received + FUTURE_TOLERANCE_MS)
        bad |= ~np.isfinite(value)  # numbers beyond float64 decode as inf
        if bad.any():
            message_of_row = np.repeat(np.arange(len(messages)), counts)
            refused = np.unique(message_of_row[bad])
            keep = ~np.isin(message_of_row, refused)
            channel, ts, value = channel[keep], ts[keep], value[keep]
            fallback = sorted(fallback + refused.tolist())
        used = np.flatnonzero(np.asarray(counts) > 0)
        oldest = float(received[used].min()) if used.size else 0.0
        return Batch(channel, ts, value, oldest), fallback

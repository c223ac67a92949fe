"""Decoding and validating one gateway telemetry message (CONTRACT §4).

A message is a JSON object keyed by sensor id; each value is one reading object or a list of
them; a reading object is `{"ts": epoch_ms?, "dt": ms?, "values": {metric: number | [numbers]}}`.
The unit of rejection is the reading object: everything valid in a message is kept, every
invalid reading object becomes one `Rejection` with a precise reason.

JSON is parsed by msgspec (fast, strict). Only when msgspec refuses a payload is it parsed
again by the standard library, which accepts NaN, Infinity and out-of-range numbers, so that
those become `invalid_value` of one reading object instead of losing the whole message.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass

import msgspec
import numpy as np

from ingest.batch import Batch
from ingest.rejection import MAX_PAYLOAD_BYTES, Rejection
from lifeline.catalogue import Catalogue

FUTURE_TOLERANCE_MS = 5 * 60 * 1000
_READING_KEYS = frozenset(("ts", "dt", "values"))
_DAY_MS = 86_400_000
_FAR_MS = 10**15  # ~30,000 years: any timestamp or span beyond it is absurd


class _Refused(Exception):
    """A reading object is rejected; carries the reason and a detail for the gateway."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail


@dataclass
class Decoded:
    """What one message yields: accepted readings as a batch and the rejections."""

    batch: Batch
    rejections: list[Rejection]
    readings: int  # accepted readings


class _Reading(msgspec.Struct, forbid_unknown_fields=True):
    """A reading object as well-behaved gateways send it; anything else takes the slow path."""

    values: dict[str, float | list[float]]
    ts: int | None = None
    dt: float | None = None


_WELL_FORMED = msgspec.json.Decoder(dict[str, _Reading | list[_Reading]])


def _parse(payload: bytes) -> object:
    try:
        return msgspec.json.decode(payload)
    except msgspec.DecodeError:
        pass
    # The standard library keeps NaN/Infinity/1e999 as floats so they can be refused per
    # reading object; it is slower, but only malformed traffic takes this path.
    return json.loads(payload)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float)  # bool is an int: booleans count as 0/1


_MAX_FLOAT_INT = int(sys.float_info.max)


def _finite(value: int | float) -> bool:
    """A number that is a finite float64: JSON integers are unbounded, floats may be NaN/inf."""
    if isinstance(value, float):
        return math.isfinite(value)
    return -_MAX_FLOAT_INT <= value <= _MAX_FLOAT_INT


class TelemetryDecoder:
    """Turns raw telemetry payloads into accepted readings and rejections.

    Checks against the catalogue: unknown sensor, gateway that does not own the sensor,
    undeclared metric, non-finite value, timestamps too far in the future or older than the
    retention, payloads over 1 MiB.
    """

    def __init__(self, catalogue: Catalogue, retention_days: float = 30.0):
        self.catalogue = catalogue
        self.retention_ms = int(retention_days * _DAY_MS)

    def decode(self, gateway: str, payload: bytes, received_ms: int) -> Decoded:
        if len(payload) > MAX_PAYLOAD_BYTES:
            return self._whole("too_large", gateway, received_ms,
                               f"payload is {len(payload)} bytes, the limit is {MAX_PAYLOAD_BYTES}")
        try:
            # Typed decoding validates the common case in C; only a payload that fails it is
            # parsed generically and checked field by field for precise reasons.
            document = _WELL_FORMED.decode(payload)
        except msgspec.MsgspecError:
            document = None
        if document is not None:
            return self._well_formed(document, gateway, received_ms)
        try:
            document = _parse(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            return self._whole("invalid_json", gateway, received_ms, f"not JSON: {exc}"[:300])
        except RecursionError:
            return self._whole("invalid_json", gateway, received_ms, "JSON nested too deeply")
        if not isinstance(document, dict):
            return self._whole("invalid_shape", gateway, received_ms,
                               f"expected an object keyed by sensor id, got {type(document).__name__}")

        channels: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        rejections: list[Rejection] = []
        earliest_ms = received_ms - self.retention_ms
        latest_ms = received_ms + FUTURE_TOLERANCE_MS
        channels_of = self.catalogue.channels_of
        sensor_index = self.catalogue.sensor_index
        sensors = self.catalogue.sensors

        for sensor_id, body in document.items():
            readings = body if isinstance(body, list) else [body]
            index = sensor_index.get(sensor_id)
            if index is None or sensors[index].gateway != gateway:
                rejections.append(self._sensor_refused(sensor_id, index, gateway, received_ms))
                continue
            metric_channels = channels_of[sensor_id]
            for reading in readings:
                try:
                    self._reading(reading, metric_channels, received_ms, earliest_ms, latest_ms,
                                  channels, stamps, values, blocks)
                except _Refused as refused:
                    rejections.append(Rejection(gateway, refused.reason, sensor_id, refused.detail, received_ms))
        return self._collect(channels, stamps, values, blocks, rejections, received_ms)

    def _well_formed(self, document: dict[str, _Reading | list[_Reading]], gateway: str,
                     received_ms: int) -> Decoded:
        """The fast path: shapes and types are already valid, so only catalogue and time
        checks remain; a reading object that fails one goes through `_reading` for its reason."""
        channels: list[int] = []
        stamps: list[int] = []
        values: list[float] = []
        blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        rejections: list[Rejection] = []
        earliest_ms = received_ms - self.retention_ms
        latest_ms = received_ms + FUTURE_TOLERANCE_MS
        sensor_index = self.catalogue.sensor_index
        sensors = self.catalogue.sensors
        for sensor_id, body in document.items():
            index = sensor_index.get(sensor_id)
            if index is None or sensors[index].gateway != gateway:
                rejections.append(self._sensor_refused(sensor_id, index, gateway, received_ms))
                continue
            metric_channels = self.catalogue.channels_of[sensor_id]
            for reading in body if type(body) is list else (body,):
                ts = reading.ts
                if ts is None:
                    ts = received_ms
                metric_values = reading.values
                if reading.dt is None and earliest_ms <= ts <= latest_ms:
                    # Per reading object this is the whole cost of a clean message: keep it lean.
                    accepted = 0
                    for metric, value in metric_values.items():
                        channel = metric_channels.get(metric)
                        if channel is None or type(value) is not float:
                            break
                        channels.append(channel)
                        values.append(value)
                        accepted += 1
                    else:
                        if accepted:
                            stamps.extend([ts] * accepted)
                            continue
                    if accepted:  # undo a partly appended reading object: it is refused whole
                        del channels[-accepted:], values[-accepted:]
                as_object = {"values": metric_values, "ts": ts}
                if reading.dt is not None:
                    as_object["dt"] = reading.dt
                try:
                    self._reading(as_object, metric_channels, received_ms, earliest_ms, latest_ms,
                                  channels, stamps, values, blocks)
                except _Refused as refused:
                    rejections.append(Rejection(gateway, refused.reason, sensor_id, refused.detail, received_ms))
        return self._collect(channels, stamps, values, blocks, rejections, received_ms)

    def _sensor_refused(self, sensor_id: str, index: int | None, gateway: str, received_ms: int) -> Rejection:
        if index is None:
            # The id goes to the errors topic and the dead-letter store: make it valid UTF-8.
            shown = str(sensor_id)[:200].encode("utf-8", "replace").decode("utf-8")
            return Rejection(gateway, "unknown_sensor", shown,
                             f"sensor {str(sensor_id)[:64]!r} is not in the catalogue", received_ms)
        return Rejection(gateway, "not_owner", sensor_id, f"sensor {sensor_id} belongs to another gateway",
                         received_ms)

    @staticmethod
    def _collect(channels: list[int], stamps: list[int], values: list[float],
                 blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]], rejections: list[Rejection],
                 received_ms: int) -> Decoded:
        parts = [(np.array(channels, np.int32), np.array(stamps, np.int64), np.array(values, np.float64))]
        parts += blocks
        if len(parts) == 1:
            channel, ts, value = parts[0]
        else:
            channel = np.concatenate([p[0] for p in parts])
            ts = np.concatenate([p[1] for p in parts])
            value = np.concatenate([p[2] for p in parts])
        batch = Batch(channel, ts, value, float(received_ms))
        return Decoded(batch, rejections, len(batch))

    def _reading(self, reading: object, metric_channels: dict[str, int], received_ms: int, earliest_ms: int,
                 latest_ms: int, channels: list[int], stamps: list[int], values: list[float],
                 blocks: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """Validate one reading object and append its readings; raises _Refused."""
        if not isinstance(reading, dict):
            raise _Refused("invalid_shape", f"a reading must be an object, got {type(reading).__name__}")
        extra = reading.keys() - _READING_KEYS
        if extra:
            raise _Refused("invalid_shape", f"unexpected key(s) {sorted(map(str, extra))[:5]}; allowed: ts, dt, values")
        metric_values = reading.get("values")
        if not isinstance(metric_values, dict) or not metric_values:
            raise _Refused("invalid_shape", "'values' must be a non-empty object of metric -> number")
        ts = reading.get("ts", received_ms)
        if isinstance(ts, bool) or not isinstance(ts, int):
            raise _Refused("invalid_shape", f"'ts' must be integer epoch milliseconds, got {ts!r}"[:200])
        dt = reading.get("dt")
        if dt is not None and (isinstance(dt, bool) or not _is_number(dt) or not _finite(dt) or dt <= 0):
            raise _Refused("invalid_shape", f"'dt' must be a positive number of milliseconds, got {dt!r}"[:200])

        length = None
        for metric, value in metric_values.items():
            if metric not in metric_channels:
                raise _Refused("unknown_metric", f"metric {str(metric)[:64]!r} is not declared for this sensor")
            if isinstance(value, list):
                if dt is None:
                    raise _Refused("invalid_shape", f"metric {metric!r} is an array but the reading has no 'dt'")
                if not value:
                    raise _Refused("invalid_shape", f"metric {metric!r} is an empty array")
                if length is not None and len(value) != length:
                    raise _Refused("invalid_shape", "arrays of a waveform block must have equal length")
                length = len(value)
                for sample in value:
                    if not _is_number(sample):
                        raise _Refused("invalid_value", f"metric {metric!r} has a non-number sample {sample!r}"[:200])
            elif not _is_number(value):
                raise _Refused("invalid_value", f"metric {metric!r} is not a number: {value!r}"[:200])
            elif not _finite(value):
                raise _Refused("invalid_value", f"metric {metric!r} is not finite: {value!r}"[:200])

        # Python ints are unbounded: cap what is turned into floats for the details.
        span = 0 if length is None else (length - 1) * dt
        last_ts = ts + (math.floor(span) if span < _FAR_MS else _FAR_MS)
        if last_ts > latest_ms:
            ahead_s = min(last_ts - received_ms, _FAR_MS) / 1000
            raise _Refused("future_timestamp", f"ts {last_ts} is {ahead_s:.0f} s ahead of arrival"[:300])
        if ts < earliest_ms:
            days = min(received_ms - ts, _FAR_MS) / _DAY_MS
            raise _Refused("stale_timestamp", f"ts {ts} is older than the retention "
                                              f"({days:.1f} days before arrival)"[:300])

        if length is None:
            for metric, value in metric_values.items():
                channels.append(metric_channels[metric])
                stamps.append(ts)
                values.append(float(value))
            return
        # A waveform block is validated whole before any of it is kept.
        offsets = np.floor(np.arange(length) * float(dt)).astype(np.int64) + ts
        pending = []
        for metric, value in metric_values.items():
            if isinstance(value, list):
                try:
                    samples = np.asarray(value, dtype=np.float64)
                except OverflowError:  # an integer beyond float64
                    raise _Refused("invalid_value", f"metric {metric!r} has a non-finite sample") from None
                if not np.isfinite(samples).all():
                    raise _Refused("invalid_value", f"metric {metric!r} has a non-finite sample")
                pending.append((np.full(length, metric_channels[metric], np.int32), offsets, samples))
            else:
                pending.append((np.array([metric_channels[metric]], np.int32), np.array([ts], np.int64),
                                np.array([float(value)])))
        blocks.extend(pending)

    @staticmethod
    def _whole(reason: str, gateway: str, received_ms: int, detail: str) -> Decoded:
        return Decoded(Batch.empty(), [Rejection(gateway, reason, "", detail, received_ms)], 0)

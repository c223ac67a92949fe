"""Why a gateway's reading was refused (CONTRACT §4), and the record kept of it."""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

#: Every reason a message or reading object can be rejected, as published and counted.
REASONS = (
    "invalid_json",      # not JSON
    "invalid_shape",     # JSON, but not the CONTRACT §4 shape
    "unknown_sensor",    # sensor id not in the catalogue
    "not_owner",         # the topic's gateway does not own the sensor
    "unknown_metric",    # metric not declared for the sensor
    "invalid_value",     # not a finite number
    "future_timestamp",  # more than 5 minutes ahead of arrival
    "stale_timestamp",   # older than storage.retention_days
    "too_large",         # payload over 1 MiB
)

MAX_PAYLOAD_BYTES = 1024 * 1024
DEAD_LETTER_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Rejection:
    """One refused message or reading object (one sensor at one ts)."""

    gateway: str
    reason: str
    sensor: str
    detail: str
    received_ms: int

    def error_message(self) -> bytes:
        """Body published to `{prefix}/{gateway}/errors`."""
        return msgspec.json.encode({"reason": self.reason, "sensor": self.sensor, "detail": self.detail})

"""The columnar batch: many readings from many messages, as parallel numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Batch:
    """Accepted readings, one row per reading.

    channel : (n,) int32, catalogue channel index
    ts : (n,) int64, reading time, epoch milliseconds
    value : (n,) float64, in the channel's unit, always finite
    received_ms : wall-clock epoch ms at which the oldest message of the batch arrived
    """

    channel: np.ndarray
    ts: np.ndarray
    value: np.ndarray
    received_ms: float = 0.0

    def __len__(self) -> int:
        return int(self.channel.shape[0])

    @classmethod
    def empty(cls) -> Batch:
        return cls(np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.float64))

    @classmethod
    def concat(cls, batches: list[Batch]) -> Batch:
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        return cls(
            np.concatenate([b.channel for b in batches]),
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.value for b in batches]),
            min(b.received_ms for b in batches),
        )

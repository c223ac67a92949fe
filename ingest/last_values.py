"""The newest reading of every channel, for the sensor list and status."""

from __future__ import annotations

import contextlib
from multiprocessing import shared_memory

import numpy as np

from ingest.batch import Batch

NEVER = np.iinfo(np.int64).min


class LastValues:
    """last_ts : (channels,) int64 epoch ms (NEVER when no reading yet); last_value : (channels,) float64.

    The arrays may live in shared memory (`SharedLastValues`), so that worker processes write
    their channels and the main process serves them to the API.
    """

    def __init__(self, channels: int, last_ts: np.ndarray | None = None, last_value: np.ndarray | None = None):
        if last_ts is None or last_value is None:
            last_ts = np.full(channels, NEVER, np.int64)
            last_value = np.full(channels, np.nan, np.float64)
        self.last_ts = last_ts
        self.last_value = last_value

    def update(self, batch: Batch) -> None:
        if not len(batch):
            return
        # Fancy assignment keeps the last write per index, so order by time first; older
        # readings than the stored one (late backfill) must not replace it.
        order = np.argsort(batch.ts, kind="stable")
        channel, ts, value = batch.channel[order], batch.ts[order], batch.value[order]
        newer = ts >= self.last_ts[channel]
        self.last_ts[channel[newer]] = ts[newer]
        self.last_value[channel[newer]] = value[newer]


class SharedLastValues:
    """Last values in two shared-memory blocks: created by the main process, attached by the
    workers by name. Each channel is written by exactly one worker (its gateway's).

    Workers are spawned by the main process and share its resource tracker, which removes the
    blocks only if the main process ends without `close`."""

    def __init__(self, channels: int, names: tuple[str, str] | None = None):
        self.channels = channels
        size = max(channels, 1) * 8  # int64 and float64 alike; a block cannot be empty
        created = names is None
        self._ts = shared_memory.SharedMemory(name=None if created else names[0], create=created, size=size)
        self._value = shared_memory.SharedMemory(name=None if created else names[1], create=created, size=size)
        ts = np.ndarray(channels, np.int64, self._ts.buf)
        value = np.ndarray(channels, np.float64, self._value.buf)
        if created:
            ts[:] = NEVER
            value[:] = np.nan
        self.view = LastValues(channels, ts, value)
        self._created = created

    @property
    def names(self) -> tuple[str, str]:
        return self._ts.name, self._value.name

    def close(self) -> None:
        """Detach; the creator also removes the blocks (the memory goes with the last process)."""
        for block in (self._ts, self._value):
            with contextlib.suppress(BufferError):  # numpy views of it may still be referenced
                block.close()
            if self._created:
                block.unlink()

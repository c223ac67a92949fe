"""The newest reading of every channel, for the sensor list and status."""

from __future__ import annotations

import numpy as np

from ingest.batch import Batch

NEVER = np.iinfo(np.int64).min


class LastValues:
    """last_ts : (channels,) int64 epoch ms (NEVER when no reading yet); last_value : (channels,) float64."""

    def __init__(self, channels: int):
        self.last_ts = np.full(channels, NEVER, np.int64)
        self.last_value = np.full(channels, np.nan, np.float64)

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

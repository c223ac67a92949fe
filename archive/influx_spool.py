"""The InfluxDB sink's disk spool: what could not be written yet, in order, bounded in size.

A segment is one file holding at most one write request's worth of data, named by the order
key of what it holds, so a directory listing alone rebuilds the spool after a restart:

    {seq:012d}-{part:05d}-{count}-{appended_ms}.npy   readings: (count,) structured array
                                                      of channel int32, ts int64, value float64
    {seq:012d}-{part:05d}-{count}-{appended_ms}.lp    alert events: line protocol text

`seq` numbers what was appended to the sink, `part` the slices of one large batch; the
oldest key is always written first. Files appear atomically (written beside, then renamed).
When the spool would grow past its bound, its oldest segments are dropped and counted.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ingest.batch import Batch

log = logging.getLogger("lifeline.influx")

READING_DTYPE = np.dtype([("channel", "<i4"), ("ts", "<i8"), ("value", "<f8")])
_NAME = re.compile(r"^(\d{12})-(\d{5})-(\d+)-(\d+)\.(npy|lp)$")


@dataclass(frozen=True, order=True)
class Segment:
    """One spooled file; sorts in write order."""

    seq: int
    part: int
    count: int  # readings or event lines
    appended_ms: int  # wall clock when the data reached the sink (for the lag)
    kind: str  # "npy" readings, "lp" event lines
    size: int = 0

    @property
    def name(self) -> str:
        return f"{self.seq:012d}-{self.part:05d}-{self.count}-{self.appended_ms}.{self.kind}"


class Spool:
    """Ordered, size-bounded segments in one folder; safe to use from several threads."""

    def __init__(self, folder: Path, max_bytes: int):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._segments: list[Segment] = []
        self._pinned: Segment | None = None  # being written to InfluxDB: never dropped
        self.bytes = 0
        self.count = 0  # readings and event lines held
        self.dropped = 0  # readings and event lines dropped to keep within max_bytes
        for path in self.folder.iterdir():
            match = _NAME.match(path.name)
            if match is None:
                if path.name.endswith(".tmp"):
                    path.unlink(missing_ok=True)  # a write cut short by a crash
                continue
            seq, part, count, appended, kind = match.groups()
            segment = Segment(int(seq), int(part), int(count), int(appended), kind, path.stat().st_size)
            self._segments.append(segment)
            self.bytes += segment.size
            self.count += segment.count
        self._segments.sort()

    # -- adding ---------------------------------------------------------------------------------
    def put_readings(self, seq: int, part: int, batch: Batch, appended_ms: int) -> Segment:
        rows = np.empty(len(batch), READING_DTYPE)
        rows["channel"], rows["ts"], rows["value"] = batch.channel, batch.ts, batch.value
        return self._put(Segment(seq, part, len(batch), appended_ms, "npy"), rows.tobytes())

    def put_lines(self, seq: int, part: int, lines: list[str], appended_ms: int) -> Segment:
        return self._put(Segment(seq, part, len(lines), appended_ms, "lp"), "\n".join(lines).encode())

    def _put(self, segment: Segment, data: bytes) -> Segment:
        segment = Segment(segment.seq, segment.part, segment.count, segment.appended_ms, segment.kind, len(data))
        path = self.folder / segment.name
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        with self._lock:
            bisect.insort(self._segments, segment)
            self.bytes += segment.size
            self.count += segment.count
            self._enforce_bound()
        return segment

    def _enforce_bound(self) -> None:
        """Drop the oldest segments (not the one being written) until within max_bytes."""
        dropped = 0
        index = 0
        while self.bytes > self.max_bytes and index < len(self._segments) - 1:
            segment = self._segments[index]
            if segment == self._pinned:
                index += 1
                continue
            del self._segments[index]
            (self.folder / segment.name).unlink(missing_ok=True)
            self.bytes -= segment.size
            self.count -= segment.count
            dropped += segment.count
        if dropped:
            self.dropped += dropped
            log.error("InfluxDB spool is full (%d MB): dropped its %d oldest readings/events; the embedded "
                      "archive still holds the readings", self.max_bytes // 1_000_000, dropped)

    # -- taking ---------------------------------------------------------------------------------
    def head(self) -> Segment | None:
        with self._lock:
            return self._segments[0] if self._segments else None

    def pin(self, segment: Segment) -> None:
        with self._lock:
            self._pinned = segment

    def read(self, segment: Segment) -> Batch | list[str] | None:
        """The segment's readings or event lines; None if it was dropped meanwhile."""
        try:
            data = (self.folder / segment.name).read_bytes()
        except FileNotFoundError:
            return None
        if segment.kind == "lp":
            return data.decode().split("\n") if data else []
        rows = np.frombuffer(data, READING_DTYPE)
        return Batch(rows["channel"].copy(), rows["ts"].copy(), rows["value"].copy())

    def remove(self, segment: Segment) -> None:
        """The segment was written to InfluxDB."""
        with self._lock:
            if self._pinned == segment:
                self._pinned = None
            index = bisect.bisect_left(self._segments, segment)
            if index < len(self._segments) and self._segments[index] == segment:
                del self._segments[index]
                self.bytes -= segment.size
                self.count -= segment.count
        (self.folder / segment.name).unlink(missing_ok=True)

    def unpin(self) -> None:
        with self._lock:
            self._pinned = None

    def last_seq(self) -> int:
        with self._lock:
            return max((s.seq for s in self._segments), default=0)

    def __len__(self) -> int:
        return len(self._segments)

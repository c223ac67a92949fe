"""The embedded readings archive: columnar blocks in SQLite, written off the hot path.

Row-at-a-time inserts cannot keep up with hundreds of thousands of readings per second, so
accepted batches are queued to a writer thread that commits them as one *flush* once it
holds `flush_readings` readings or its first batch has waited `flush_interval_s`: a row in
`flushes` (its time range) and one row in `flush_blocks` per *channel group* in it, holding
the readings of up to GROUP_SIZE consecutive channels in arrival order as packed arrays
(channel offset within the group uint8, ts, value float64).
ts is stored as uint32 milliseconds after the block's ts_first, or as int64 epoch ms for a
block spanning 49 days or more; a reader tells them apart by the blob's length.

Why groups and not one block per channel: a city's catalogue has 10^5 channels and most send
a reading every few seconds, so a flush holds about one reading per channel and per-channel
blocks degenerate into one SQLite row per reading (measured: 120,000 readings per CPU-second
for the writer thread, which also holds the GIL the pipeline needs). Grouping bounds the rows
of a flush by channels / GROUP_SIZE whatever the traffic. The rows cost the writer the most
(about 8 us each), so at a city's usual traffic a flush waits a second to fill its blocks
(at 20,000 readings/s over 100,000 channels a flush of a quarter second had 1.6 readings a
block). Under heavy traffic the size bound keeps the writer's bursts, and the memory of a
flush, small: a writer that fell behind used to take its whole backlog in one flush.

Why blocks are found through their flush and not through a (channel group, time) index: such
an index gets one entry per group and flush, and every flush adds to every group's end of it,
so each commit rewrote about one index page per group (1,563 pages, 6 MB, for 100,000
channels): 33 of the 77 bytes written to disk per reading. Flush numbers only grow, so the
(flush, group) index and the flushes' time index are appended to at their ends.

A query for one channel finds the flushes overlapping the requested range, looks up its
group's block in each and slices its own readings out by their channel offset (a block holds
a flush's readings of 64 channels: a short scan). Two earlier layouts are still read, and
pruned, until retention has emptied them: `group_blocks` (the same blocks, ts always int64,
found through a (group, ts_last) index) and `blocks` (one row per channel and flush).
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

from alerting.store import open_database
from detectors.batching import stable_argsort
from ingest.batch import Batch

log = logging.getLogger("lifeline.archive")

SCHEMA = """
CREATE TABLE IF NOT EXISTS flushes (
    id INTEGER PRIMARY KEY,
    ts_first INTEGER NOT NULL,
    ts_last INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS flushes_time ON flushes (ts_last);
CREATE TABLE IF NOT EXISTS flush_blocks (
    flush INTEGER NOT NULL,
    channel_group INTEGER NOT NULL,
    ts_first INTEGER NOT NULL,
    ts_last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    channel BLOB NOT NULL,
    ts BLOB NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS flush_blocks_group ON flush_blocks (flush, channel_group);
"""
#: Earlier layouts, read until retention has emptied them: blocks per channel group found
#: through a (group, time) index, and before that one row per channel and flush.
LEGACY_SCHEMA = """
CREATE TABLE IF NOT EXISTS group_blocks (
    channel_group INTEGER NOT NULL,
    ts_first INTEGER NOT NULL,
    ts_last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    channel BLOB NOT NULL,
    ts BLOB NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS group_blocks_time ON group_blocks (channel_group, ts_last);
CREATE TABLE IF NOT EXISTS blocks (
    channel INTEGER NOT NULL,
    ts_first INTEGER NOT NULL,
    ts_last INTEGER NOT NULL,
    count INTEGER NOT NULL,
    ts BLOB NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS blocks_channel_time ON blocks (channel, ts_last);
"""

#: A channel group's blocks overlapping a time range, oldest flush first. The planner, left
#: alone, scans every block; this finds the flushes by time, then each one's block.
BLOCKS_OF_GROUP = (
    "SELECT b.ts_first, b.count, b.channel, b.ts, b.value FROM flushes AS f INDEXED BY flushes_time"
    " CROSS JOIN flush_blocks AS b ON b.flush = f.id AND b.channel_group = ?"
    " WHERE f.ts_last >= ? AND f.ts_first <= ? AND b.ts_last >= ? AND b.ts_first <= ?"
    " ORDER BY f.id")

_DAY_MS = 86_400_000
#: Channels per group block: offsets fit one byte, and a query's read amplification stays
#: small (a block holds one flush of at most 64 channels).
GROUP_SIZE = 64
#: A block's ts are stored as uint32 ms after its first one while they fit (49.7 days).
_OFFSET_SPAN_MS = 2**32
#: Pages of a new archive file. SQLite starts a new page when the next row does not fit, so
#: 4 KB pages held a single 2 KB block and left the rest empty (21 bytes a reading on file
#: instead of 14 with 250,000 readings a flush); 16 KB pages waste at most a few percent.
#: A file keeps the page size it was created with.
PAGE_SIZE = 16_384
#: A flush is written once it holds this many readings.
FLUSH_READINGS = 250_000
#: Readings queued for the writer at most (about 40 MB; two seconds at a million readings/s)
#: before `append` waits for it.
MAX_QUEUED_READINGS = 2_000_000


def block_stamps(ts_first: int, count: int, ts: bytes) -> np.ndarray:
    """(count,) int64 epoch ms of a block's ts blob, in either of its encodings."""
    if len(ts) == 4 * count:
        return np.frombuffer(ts, np.uint32).astype(np.int64) + ts_first
    return np.frombuffer(ts, np.int64)


class ReadingArchive:
    """Stores accepted readings per channel. `append` returns at once, without touching the
    disk, unless `max_queued` readings are still waiting for the writer (see `append`)."""

    def __init__(self, path: Path, retention_days: float = 30.0, flush_interval_s: float = 1.0,
                 max_queued: int = MAX_QUEUED_READINGS, flush_readings: int = FLUSH_READINGS,
                 page_size: int = PAGE_SIZE):
        self.path = path
        self.retention_ms = int(retention_days * _DAY_MS)
        self.flush_interval_s = flush_interval_s
        self.flush_readings = flush_readings
        self._queue: queue.SimpleQueue[Batch | threading.Event | None] = queue.SimpleQueue()
        self.max_queued = max_queued
        self._queued = 0  # readings appended and not yet written
        self._room = threading.Condition()
        #: How often `append` had to wait for the writer (the disk was the bottleneck).
        self.waits = 0
        self._reader = open_database(path, page_size=page_size)
        self._reader.executescript(SCHEMA + LEGACY_SCHEMA)
        self._read_lock = threading.Lock()
        self._thread = threading.Thread(target=self._write_loop, name="archive-writer", daemon=True)
        self.blocks_written = 0
        self.readings_written = 0
        self._thread.start()

    def append(self, batch: Batch) -> None:
        """Queue a batch for the writer; waits while `max_queued` readings are already queued.

        Waiting holds the pipeline back, whose subscriber then stops reading and leaves the
        messages at the broker (QoS 1): a disk slower than the traffic slows ingestion down
        instead of filling memory with readings not yet written."""
        if not len(batch):
            return
        with self._room:
            if self._queued >= self.max_queued:
                self.waits += 1
                while self._queued >= self.max_queued and self._thread.is_alive():
                    self._room.wait(1.0)
            self._queued += len(batch)
        self._queue.put(batch)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything appended so far is on disk."""
        done = threading.Event()
        self._queue.put(done)
        return done.wait(timeout)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)
        with self._read_lock:
            self._reader.close()

    def readings(self, channel: int, since: int | None = None, until: int | None = None,
                 limit: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
        """(ts int64, value float64) of one channel, oldest first, bounds inclusive (epoch ms)."""
        self.flush()
        lo = -(2**62) if since is None else since
        hi = 2**62 if until is None else until
        group, offset = divmod(int(channel), GROUP_SIZE)
        with self._read_lock:
            legacy = self._reader.execute(
                "SELECT ts, value FROM blocks WHERE channel = ? AND ts_last >= ? AND ts_first <= ? ORDER BY rowid",
                (channel, lo, hi)).fetchall()
            grouped = self._reader.execute(
                "SELECT ts_first, count, channel, ts, value FROM group_blocks"
                " WHERE channel_group = ? AND ts_last >= ? AND ts_first <= ? ORDER BY rowid",
                (group, lo, hi)).fetchall()
            grouped += self._reader.execute(BLOCKS_OF_GROUP, (group, lo, hi, lo, hi)).fetchall()
        stamps = [np.frombuffer(r[0], np.int64) for r in legacy]
        values = [np.frombuffer(r[1], np.float64) for r in legacy]
        for ts_first, count, offsets, ts_bytes, value_bytes in grouped:
            mine = np.frombuffer(offsets, np.uint8) == offset
            if mine.any():
                stamps.append(block_stamps(ts_first, count, ts_bytes)[mine])
                values.append(np.frombuffer(value_bytes, np.float64)[mine])
        if not stamps:
            return np.empty(0, np.int64), np.empty(0, np.float64)
        ts, value = np.concatenate(stamps), np.concatenate(values)
        keep = (ts >= lo) & (ts <= hi)
        ts, value = ts[keep], value[keep]
        order = np.argsort(ts, kind="stable")
        if len(order) > limit:
            order = order[-limit:]  # the newest `limit` readings
        return ts[order], value[order]

    # -- writer thread ------------------------------------------------------------------------
    def _write_loop(self) -> None:
        db = open_database(self.path)
        pending: list[Batch] = []
        waiters: list[threading.Event] = []
        last_prune = 0.0
        running = True
        while running:
            try:
                item = self._queue.get(timeout=self.flush_interval_s)
            except queue.Empty:
                item = False  # a quiet moment: write what we have
            deadline = time.monotonic() + self.flush_interval_s
            held = 0
            while item is not False:
                if item is None:
                    running = False
                    break
                if isinstance(item, threading.Event):
                    waiters.append(item)
                    break
                pending.append(item)
                held += len(item)
                if held >= self.flush_readings or time.monotonic() >= deadline:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            if pending:
                try:
                    self._write(db, Batch.concat(pending))
                except Exception:  # a full disk must not kill ingestion; the batch is logged as lost
                    log.exception("archive write failed for %d readings", held)
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                pending = []
                with self._room:
                    self._queued -= held
                    self._room.notify_all()
            for waiter in waiters:
                waiter.set()
            waiters = []
            if time.monotonic() - last_prune > 3600:
                last_prune = time.monotonic()
                self._prune(db)
        db.close()

    def _write(self, db: sqlite3.Connection, batch: Batch) -> None:
        # Grouped by channel group, each group's readings in arrival order (a reader picks its
        # channel's out by offset and sorts them by ts): one radix pass over 16-bit group
        # numbers (up to 4 million channels). A (channel, ts) lexsort was the writer's largest
        # cost: 6.2 ms per 60,000 readings.
        channel = batch.channel.astype(np.int64)
        group = channel // GROUP_SIZE
        order = stable_argsort(group, int(group.max()) + 1)
        channel, group = channel[order], group[order]
        ts = batch.ts[order]
        value = batch.value[order]
        offset = (channel - group * GROUP_SIZE).astype(np.uint8)
        starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
        ends = np.r_[starts[1:], len(channel)]
        first = np.minimum.reduceat(ts, starts)
        last = np.maximum.reduceat(ts, starts)
        # ts as uint32 ms after the block's first: 13 bytes a reading instead of 17.
        narrow = (last - first) < _OFFSET_SPAN_MS
        after_first = (ts - np.repeat(first, ends - starts)).astype(np.uint32)
        # Each block's bytes sliced out of the three columns' bytes: a slice of a bytes object
        # costs less than a numpy slice and its tobytes().
        offset_bytes, value_bytes = offset.tobytes(), value.tobytes()
        narrow_bytes = after_first.tobytes()
        wide_bytes = b"" if narrow.all() else ts.tobytes()
        db.execute("BEGIN IMMEDIATE")
        flush = db.execute("INSERT INTO flushes (ts_first, ts_last) VALUES (?, ?)",
                           (int(first.min()), int(last.max()))).lastrowid
        rows = [
            (flush, g, lo, hi, e - s, offset_bytes[s:e],
             narrow_bytes[4 * s:4 * e] if fits else wide_bytes[8 * s:8 * e], value_bytes[8 * s:8 * e])
            for g, lo, hi, s, e, fits in zip(group[starts].tolist(), first.tolist(), last.tolist(),
                                             starts.tolist(), ends.tolist(), narrow.tolist(), strict=True)
        ]
        db.executemany("INSERT INTO flush_blocks VALUES (?,?,?,?,?,?,?,?)", rows)
        db.execute("COMMIT")
        self.blocks_written += len(rows)
        self.readings_written += len(batch)

    def _prune(self, db: sqlite3.Connection) -> None:
        """Deletes blocks past retention. Ingest accepts no reading older than retention or
        ahead of its arrival by more than a tolerance, so no block outlives retention much."""
        cutoff = int(time.time() * 1000) - self.retention_ms
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM flush_blocks WHERE flush IN (SELECT id FROM flushes WHERE ts_last < ?)",
                       (cutoff,))
            db.execute("DELETE FROM flushes WHERE ts_last < ?", (cutoff,))
            db.execute("DELETE FROM group_blocks WHERE ts_last < ?", (cutoff,))
            db.execute("DELETE FROM blocks WHERE ts_last < ?", (cutoff,))
            db.execute("COMMIT")
        except sqlite3.Error:  # e.g. another process held the lock for 30 s: next hour, then
            log.exception("archive retention pass failed")
            if db.in_transaction:
                db.execute("ROLLBACK")

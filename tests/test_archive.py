"""The SQLite readings archive: what goes in comes back per channel and time range."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.sqlite_archive import BLOCKS_OF_GROUP, GROUP_SIZE, ReadingArchive
from ingest.batch import Batch
from tests.service import wait_for

#: Recent enough that the writer's retention pass (30 days by default) keeps everything.
T0 = int(time.time() * 1000) - 3_600_000
DAY_MS = 86_400_000


def batch(channel, ts, value) -> Batch:
    return Batch(np.asarray(channel, np.int32), np.asarray(ts, np.int64), np.asarray(value, np.float64))


reading = st.tuples(st.integers(0, 3 * GROUP_SIZE), st.integers(0, 50), st.floats(-1e6, 1e6))


@settings(max_examples=40, deadline=None)
@given(flushes=st.lists(st.lists(reading, max_size=60), min_size=1, max_size=5),
       channel=st.integers(0, 3 * GROUP_SIZE), bounds=st.tuples(st.integers(-5, 55), st.integers(-5, 55)),
       limit=st.integers(1, 200))
def test_readings_of_a_channel_are_what_was_appended(tmp_path_factory, flushes, channel, bounds, limit) -> None:
    archive = ReadingArchive(tmp_path_factory.mktemp("archive") / "readings.db")
    try:
        for rows in flushes:
            if rows:
                archive.append(batch(*zip(*[(c, T0 + t, v) for c, t, v in rows], strict=True)))
            assert archive.flush()
        since, until = T0 + min(bounds), T0 + max(bounds)
        ts, value = archive.readings(channel, since, until, limit)
    finally:
        archive.close()
    # Plain reference: the channel's readings in append order, stably sorted by time, newest `limit`.
    mine = [(T0 + t, v) for rows in flushes for c, t, v in rows if c == channel and since <= T0 + t <= until]
    mine = sorted(mine, key=lambda r: r[0])[-limit:] if mine else []
    assert ts.tolist() == [t for t, _ in mine]
    assert value.tolist() == [v for _, v in mine]


def test_a_flush_of_many_channels_is_one_row_per_channel_group(tmp_path) -> None:
    archive = ReadingArchive(tmp_path / "readings.db")
    try:
        channels = np.arange(10_000)
        archive.append(batch(channels, np.full(channels.size, T0), channels * 0.5))
        assert archive.flush()
        assert archive.readings_written == 10_000
        assert archive.blocks_written == -(-10_000 // GROUP_SIZE)  # 157 rows, not 10,000
        ts, value = archive.readings(9_999)
        assert ts.tolist() == [T0] and value.tolist() == [9_999 * 0.5]
        with sqlite3.connect(tmp_path / "readings.db") as db:  # 13 bytes a reading: ts as 4-byte offsets
            assert db.execute("SELECT sum(length(channel) + length(ts) + length(value)) FROM flush_blocks"
                              ).fetchone()[0] == 13 * 10_000
    finally:
        archive.close()


def test_a_new_archive_has_16_kb_pages_and_an_old_one_keeps_its_own(tmp_path) -> None:
    """Blocks of a few KB fill 16 KB pages; 4 KB pages held one such block each, half empty."""
    old = tmp_path / "old.db"
    ReadingArchive(old, page_size=4096).close()
    for path, size in ((tmp_path / "new.db", 16_384), (old, 4096)):
        archive = ReadingArchive(path)
        try:
            archive.append(batch([1], [T0], [1.0]))
            assert archive.readings(1)[1].tolist() == [1.0]
        finally:
            archive.close()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA page_size").fetchone()[0] == size


def test_a_flush_is_written_once_it_holds_flush_readings(tmp_path) -> None:
    """Under heavy traffic the writer does not wait out the interval (here an hour): its bursts,
    and the memory of a flush, stay bounded."""
    path = tmp_path / "readings.db"
    archive = ReadingArchive(path, flush_interval_s=3600, flush_readings=100)
    try:
        channels = np.arange(50)
        archive.append(batch(channels, np.full(50, T0), channels * 1.0))
        archive.append(batch(channels, np.full(50, T0 + 1), channels * 2.0))
        wait_for(lambda: archive.readings_written == 100, message="a flush of 100 readings")
        with sqlite3.connect(path) as db:
            assert db.execute("SELECT count(*) FROM flushes").fetchone()[0] == 1  # the 50 waited for more
        archive.append(batch([3], [T0 + 2], [9.0]))
        assert archive.readings(3)[1].tolist() == [3.0, 6.0, 9.0]  # a query writes what waits
    finally:
        archive.close()


def test_a_block_spanning_more_than_49_days_keeps_its_stamps(tmp_path) -> None:
    """Offsets from a block's first ts fit 32 bits for 49.7 days; a gateway replaying older
    readings next to new ones gets its block's ts stored whole."""
    archive = ReadingArchive(tmp_path / "readings.db", retention_days=365)
    try:
        old = T0 - 60 * DAY_MS
        archive.append(batch([5, 6, 5, 70], [T0, old, old + 1, T0 + 2], [1.0, 2.0, 3.0, 4.0]))
        assert archive.readings(5)[0].tolist() == [old + 1, T0]
        assert archive.readings(6)[0].tolist() == [old]
        assert archive.readings(70)[0].tolist() == [T0 + 2]  # another group, another block: narrow
        assert archive.readings(5, since=T0 - DAY_MS)[1].tolist() == [1.0]
    finally:
        archive.close()


def test_a_query_finds_blocks_through_indexes_only(tmp_path) -> None:
    """A channel's readings are found by seeking, not by scanning every block ever written."""
    archive = ReadingArchive(tmp_path / "readings.db")
    try:
        plan = archive._reader.execute("EXPLAIN QUERY PLAN " + BLOCKS_OF_GROUP, (1, 0, 1, 0, 1)).fetchall()
    finally:
        archive.close()
    steps = [row[-1] for row in plan]
    assert any(step.startswith("SEARCH f USING INDEX flushes_time") for step in steps), steps
    assert any(step.startswith("SEARCH b USING INDEX flush_blocks_group") for step in steps), steps
    assert not any(step.startswith("SCAN") for step in steps), steps


def wal_frames(path, page_size: int) -> int:
    """Pages written to the write-ahead log since it was last emptied."""
    wal = path.with_name(path.name + "-wal")
    return max(0, wal.stat().st_size - 32) // (page_size + 24) if wal.exists() else 0


def test_a_flush_writes_about_its_own_size_however_long_the_history(tmp_path) -> None:
    """Each flush appends to the ends of the tables and indexes. With an index on (channel
    group, time), every flush had added an entry to every group's run of it: one more page
    rewritten per group and flush once the history filled a page per group."""
    path = tmp_path / "readings.db"
    archive = ReadingArchive(path, page_size=4096)  # small pages: a short history fills them
    channels = np.arange(64 * GROUP_SIZE)  # 64 groups
    try:
        for flush in range(120):  # 7,680 block entries: 64 groups' runs are a page each and more
            archive.append(batch(channels, np.full(channels.size, T0 + flush), channels * 1.0))
            assert archive.flush()
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0  # not blocked
        assert wal_frames(path, 4096) == 0
        archive.append(batch(channels, np.full(channels.size, T0 + 120), channels * 1.0))
        assert archive.flush()
        data_pages = 13 * channels.size / 4096  # 13 pages of readings
        assert wal_frames(path, 4096) <= 1.5 * data_pages + 6
        assert archive.readings(4095, since=T0 + 119)[0].tolist() == [T0 + 119, T0 + 120]
    finally:
        archive.close()


def test_an_archive_written_before_channel_groups_is_still_read_and_pruned(tmp_path) -> None:
    path = tmp_path / "readings.db"
    archive = ReadingArchive(path, retention_days=1)
    archive.close()
    with sqlite3.connect(path) as db:  # rows as the earlier layout stored them: one channel, one flush
        for first, values in ((T0 - 2 * DAY_MS, [0.5]), (T0, [1.0, 2.0])):
            ts = first + 10 * np.arange(len(values), dtype=np.int64)
            db.execute("INSERT INTO blocks VALUES (?,?,?,?,?,?)",
                       (7, int(ts[0]), int(ts[-1]), len(values), ts.tobytes(), np.array(values).tobytes()))
    archive = ReadingArchive(path, retention_days=1)
    try:
        archive.append(batch([7, 8], [T0 + 20, T0 + 20], [3.0, 9.0]))
        ts, value = archive.readings(7, since=T0 - DAY_MS)
        assert ts.tolist() == [T0, T0 + 10, T0 + 20] and value.tolist() == [1.0, 2.0, 3.0]
        with sqlite3.connect(path) as db:
            archive._prune(db)  # the writer's retention pass (at start, then hourly), run now
            assert db.execute("SELECT count(*) FROM blocks").fetchone()[0] == 1  # the 2-day-old row went
    finally:
        archive.close()


def test_an_archive_written_with_time_indexed_group_blocks_is_still_read_and_pruned(tmp_path) -> None:
    path = tmp_path / "readings.db"
    archive = ReadingArchive(path, retention_days=1)
    archive.close()
    with sqlite3.connect(path) as db:  # rows as that layout stored them: ts int64, one group, one flush
        for first, channels, values in ((T0 - 2 * DAY_MS, [7], [0.5]), (T0, [7, 9, 7], [1.0, 5.0, 2.0])):
            ts = first + 10 * np.arange(len(values), dtype=np.int64)
            db.execute("INSERT INTO group_blocks VALUES (?,?,?,?,?,?,?)",
                       (0, int(ts[0]), int(ts[-1]), len(values), np.array(channels, np.uint8).tobytes(),
                        ts.tobytes(), np.array(values).tobytes()))
    archive = ReadingArchive(path, retention_days=1)
    try:
        archive.append(batch([7, 8], [T0 + 30, T0 + 30], [3.0, 9.0]))
        ts, value = archive.readings(7, since=T0 - DAY_MS)
        assert ts.tolist() == [T0, T0 + 20, T0 + 30] and value.tolist() == [1.0, 2.0, 3.0]
        with sqlite3.connect(path) as db:
            archive._prune(db)  # the writer's retention pass (at start, then hourly), run now
            assert db.execute("SELECT count(*) FROM group_blocks").fetchone()[0] == 1  # the 2-day-old row went
    finally:
        archive.close()


def test_readings_past_retention_are_pruned(tmp_path) -> None:
    path = tmp_path / "readings.db"
    archive = ReadingArchive(path, retention_days=1)
    try:
        archive.append(batch([3, 3, 900], [T0, T0 + 5, T0], [1.0, 2.0, 3.0]))
        archive.flush()
        archive.append(batch([3], [int(time.time() * 1000) + 60_000], [4.0]))  # a minute ahead: kept
        assert archive.readings(3)[1].tolist() == [1.0, 2.0, 4.0]
        with sqlite3.connect(path) as db:
            archive.retention_ms = 0  # everything up to now is past retention
            archive._prune(db)  # the writer's hourly pass, run now
            assert db.execute("SELECT count(*) FROM flushes").fetchone()[0] == 1
            assert db.execute("SELECT count(*) FROM flush_blocks").fetchone()[0] == 1
        assert archive.readings(3)[1].tolist() == [4.0]
        assert archive.readings(900)[0].size == 0
    finally:
        archive.close()


class GatedArchive(ReadingArchive):
    """The real archive whose writer waits at a gate before each write: a slow disk."""

    def __init__(self, *args, **kwargs) -> None:
        self.gate = threading.Event()
        super().__init__(*args, **kwargs)

    def _write(self, db, batch: Batch) -> None:
        self.gate.wait(30)
        super()._write(db, batch)


def test_append_waits_while_the_writer_is_behind_and_loses_nothing(tmp_path) -> None:
    """A writer slower than the traffic holds the pipeline back (and so the broker's queue)
    instead of piling readings up in memory."""
    archive = GatedArchive(tmp_path / "readings.db", max_queued=100, flush_interval_s=0.01)
    try:
        channels = np.arange(60)
        archive.append(batch(channels, np.full(60, T0), channels * 1.0))
        archive.append(batch(channels, np.full(60, T0 + 1), channels * 2.0))  # 60 queued < 100: taken
        third = threading.Thread(target=archive.append, args=(batch(channels, np.full(60, T0 + 2), channels * 3.0),))
        third.start()
        wait_for(lambda: archive.waits == 1, message="append to wait for the writer")
        assert third.is_alive()  # 120 readings queued: the third batch waits
        archive.gate.set()
        third.join(10)
        assert not third.is_alive()
        assert archive.flush()
        assert archive.readings_written == 180
        ts, value = archive.readings(7)
        assert ts.tolist() == [T0, T0 + 1, T0 + 2] and value.tolist() == [7.0, 14.0, 21.0]
    finally:
        archive.gate.set()
        archive.close()

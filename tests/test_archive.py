"""The SQLite readings archive: what goes in comes back per channel and time range."""

from __future__ import annotations

import sqlite3
import threading
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from archive.sqlite_archive import GROUP_SIZE, ReadingArchive
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


def test_readings_past_retention_are_pruned_from_group_blocks(tmp_path) -> None:
    archive = ReadingArchive(tmp_path / "readings.db", retention_days=1)
    try:
        archive.append(batch([3, 3], [T0, T0 + 5], [1.0, 2.0]))
        assert archive.readings(3)[1].tolist() == [1.0, 2.0]
        db = sqlite3.connect(tmp_path / "readings.db")
        try:
            archive.retention_ms = 0  # everything up to now is past retention
            archive._prune(db)  # the writer's hourly pass, run now
            db.commit()
        finally:
            db.close()
        assert archive.readings(3)[0].size == 0
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

"""The InfluxDB time-series sink: accepted readings and alert transitions, written in order.

The pipeline thread hands each accepted batch to `append`, which never waits for the network:
the batch joins a bounded in-memory queue, or, when that is full, goes straight to the disk
spool. One worker thread writes what is oldest first, in requests of about `batch_lines`
lines (gzip), at least every `flush_s`. While InfluxDB is unreachable the worker moves what
arrives to the spool and retries with a growing pause; when InfluxDB returns the spool is
written oldest first, then live data again. Each piece of data is written once: it leaves the
queue or the spool only after InfluxDB acknowledged it (and a resent line would only overwrite
the identical point, see `archive.influx_lines`).
"""

from __future__ import annotations

import collections
import gzip
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from alerting.lifecycle import Event
from archive.influx_lines import LineFormat
from archive.influx_spool import Segment, Spool
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import InfluxSettings
from lifeline.metrics import Metrics

log = logging.getLogger("lifeline.influx")

#: Environment variables that override (or, with the URL, stand in for) the config's `influx:`.
ENVIRONMENT = {"url": "LIFELINE_INFLUX_URL", "token": "LIFELINE_INFLUX_TOKEN", "org": "LIFELINE_INFLUX_ORG",
               "bucket": "LIFELINE_INFLUX_BUCKET"}


def influx_settings(configured: InfluxSettings | None, env: Mapping[str, str] | None = None) -> InfluxSettings | None:
    """The config's `influx:` with `LIFELINE_INFLUX_*` applied; None when no URL is given anywhere."""
    env = os.environ if env is None else env
    overrides = {key: env[name] for key, name in ENVIRONMENT.items() if env.get(name)}
    if configured is None:
        if "url" not in overrides:
            return None
        configured = InfluxSettings(url=overrides["url"], token="", org="lifeline", bucket="lifeline")
    return replace(configured, **overrides)


class WriteRefused(Exception):
    """InfluxDB answered that these lines can never be written (HTTP 400, 413 or 422)."""


class InfluxWriter:
    """One synchronous write request per call through influxdb-client's write service, the body
    compressed here with gzip level 1: the client's own gzip (level 9) took three quarters of the
    sink's time for a body a few kilobytes smaller."""

    def __init__(self, settings: InfluxSettings):
        from influxdb_client import InfluxDBClient, WriteService

        self.settings = settings
        self._client = InfluxDBClient(url=settings.url, token=settings.token or None, org=settings.org,
                                      timeout=int(settings.timeout_s * 1000), retries=False)
        self._service = WriteService(self._client.api_client)

    def write(self, body: bytes) -> None:
        """Raises WriteRefused for data InfluxDB rejects, anything else for "try again later"."""
        from influxdb_client.rest import ApiException

        try:
            self._service.post_write(org=self.settings.org, bucket=self.settings.bucket, precision="ms",
                                     body=gzip.compress(body, compresslevel=1), content_encoding="gzip",
                                     content_type="text/plain; charset=utf-8")
        except ApiException as exc:
            if exc.status in (400, 413, 422):
                raise WriteRefused(f"HTTP {exc.status}: {(exc.body or exc.reason or '')!s:.300}") from None
            raise

    def close(self) -> None:
        self._client.close()


@dataclass
class _Item:
    """Something appended and not yet written: readings, or alert-event lines."""

    seq: int
    part: int
    appended_ms: int
    batch: Batch | None = None
    lines: list[str] | None = None

    @property
    def size(self) -> int:
        return len(self.batch) if self.batch is not None else len(self.lines or ())

    @property
    def key(self) -> tuple[int, int]:
        return (self.seq, self.part)


class InfluxSink:
    """Feeds InfluxDB from the pipeline without ever slowing it down; see the module docstring."""

    def __init__(self, settings: InfluxSettings, catalogue: Catalogue, spool_dir: Path,
                 metrics: Metrics | None = None, *, writer: Callable[[bytes], None] | None = None,
                 retry_min_s: float = 0.25, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.format = LineFormat(catalogue)
        self.spool = Spool(spool_dir, int(settings.spool_max_mb * 1_000_000))
        self.metrics = metrics
        self.clock = clock
        self.batch_lines = settings.batch_lines
        self.queue_max = settings.queue_max_readings
        self.retry_min_s = retry_min_s
        self._writer = None if writer is not None else InfluxWriter(settings)
        self._write = writer or self._writer.write  # type: ignore[union-attr]
        self._lock = threading.Condition()
        self._memory: collections.deque[_Item] = collections.deque()
        self._memory_count = 0
        self._seq = self.spool.last_seq()
        self._stopping = False
        self.up = True  # until a write fails
        self.lines_written = 0
        self.write_errors = 0
        self.refused_lines = 0
        self.write_seconds = 0.0
        self._last_error = ""
        if metrics is not None:
            metrics.influx_lag.set_function(self.lag_seconds)
            metrics.influx_spool_bytes.set_function(lambda: self.spool.bytes)
            metrics.influx_pending.set_function(lambda: self._memory_count + self.spool.count)
            metrics.influx_up.set_function(lambda: 1 if self.up else 0)
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)
        self._thread.start()

    # -- producers (pipeline thread, alert listeners) ------------------------------------------
    def append(self, batch: Batch) -> None:
        """Queue accepted readings; spills to the disk spool when the queue is full."""
        if len(batch):
            self._add(_Item(0, 0, self._now_ms(), batch=batch))

    def on_event(self, event: Event) -> None:
        """AlertBook listener: the transition as one `alert_event` point."""
        now = self._now_ms()
        self._add(_Item(0, 0, now, lines=[self.format.event_line(event, now)]))

    def _add(self, item: _Item) -> None:
        with self._lock:
            self._seq += 1
            item.seq = self._seq
            if self._memory_count + item.size <= self.queue_max:
                self._memory.append(item)
                self._memory_count += item.size
                if self._memory_count >= self.batch_lines or len(self._memory) == 1:
                    self._lock.notify()
                return
            # Full: spill under the lock, so the worker sees every key in order.
            self._spill(item)
            self._lock.notify()

    # -- state ------------------------------------------------------------------------------------
    def lag_seconds(self) -> float:
        """Age of the oldest reading or event not yet in InfluxDB; 0 when all are written."""
        with self._lock:
            oldest = [self._memory[0].appended_ms] if self._memory else []
        head = self.spool.head()
        if head is not None:
            oldest.append(head.appended_ms)
        return max(0.0, self.clock() - min(oldest) / 1000) if oldest else 0.0

    def status(self) -> dict:
        """For /healthz and the dashboard's status bar."""
        return {"up": self.up, "lag_s": round(self.lag_seconds(), 3), "queued": self._memory_count,
                "spooled": self.spool.count, "spool_bytes": self.spool.bytes, "dropped": self.spool.dropped,
                "lines_written": self.lines_written, "write_errors": self.write_errors,
                "last_error": self._last_error}

    def pending(self) -> int:
        return self._memory_count + self.spool.count

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything appended so far is written (True) or `timeout` passes."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._flushing = True  # write what is queued now, without waiting for flush_s
            self._lock.notify()
        try:
            while time.monotonic() < deadline:
                if self.pending() == 0 and not self._busy:
                    return True
                time.sleep(0.01)
            return False
        finally:
            self._flushing = False

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued if InfluxDB answers within `timeout`, spool the rest, stop."""
        self._close_deadline = time.monotonic() + timeout
        with self._lock:
            self._stopping = True
            self._lock.notify()
        self._thread.join(timeout + 30)
        if self._writer is not None:
            self._writer.close()

    # -- the worker -------------------------------------------------------------------------------
    _busy = False
    _flushing = False
    _close_deadline = 0.0

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _spill(self, item: _Item) -> None:
        """Put an item into the spool, in segments of at most batch_lines."""
        dropped = self.spool.dropped
        self._spill_parts(item)
        if self.metrics is not None and self.spool.dropped > dropped:
            self.metrics.influx_dropped.inc(self.spool.dropped - dropped)

    def _spill_parts(self, item: _Item) -> None:
        size = item.size
        for part, start in enumerate(range(0, size, self.batch_lines), start=item.part):
            end = min(size, start + self.batch_lines)
            if item.batch is not None:
                piece = Batch(item.batch.channel[start:end], item.batch.ts[start:end], item.batch.value[start:end])
                self.spool.put_readings(item.seq, part, piece, item.appended_ms)
            else:
                self.spool.put_lines(item.seq, part, (item.lines or [])[start:end], item.appended_ms)

    def _spill_memory(self) -> None:
        """While InfluxDB is away: move the whole queue to the spool (keeps memory small)."""
        while True:
            with self._lock:
                if not self._memory:
                    return
                run = [self._memory.popleft()]
                while self._memory and self._follows(run, self._memory[0]):
                    run.append(self._memory.popleft())
                self._memory_count -= sum(item.size for item in run)
                self._spill(self._merged(run))

    def _follows(self, run: list[_Item], item: _Item) -> bool:
        """Whether `item` can join `run` in one spool segment: readings whose key comes right
        after the run's last (nothing else can sort between them), within batch_lines."""
        last = run[-1]
        return (item.batch is not None and last.batch is not None and item.part == 0
                and item.seq == last.seq + 1 and sum(i.size for i in run) + item.size <= self.batch_lines)

    @staticmethod
    def _merged(run: list[_Item]) -> _Item:
        """One item for a run (keyed by its first, so it sorts where the run did)."""
        if len(run) == 1:
            return run[0]
        return _Item(run[0].seq, run[0].part, run[0].appended_ms, batch=Batch.concat([i.batch for i in run]))

    def _run(self) -> None:
        pause = self.retry_min_s
        retry_at = 0.0
        while True:
            with self._lock:
                if not self._stopping:
                    self._lock.wait(self._wait_s(retry_at))
                stopping = self._stopping
            if stopping and (not self.up or time.monotonic() > self._close_deadline):
                self._spill_memory()
                return
            if not self.up and time.monotonic() < retry_at:
                if self._spill_due():  # gathered first, so a long outage makes few large segments
                    self._spill_memory()
                continue
            self._busy = True
            try:
                written = self._write_pending(stopping)
            finally:
                self._busy = False
            if written is False:
                self.up = False
                retry_at = time.monotonic() + pause
                pause = min(pause * 2, self.settings.retry_max_s)
                self._spill_memory()
            elif written:
                if not self.up:
                    log.info("InfluxDB at %s is writable again", self.settings.url)
                self.up = True
                pause = self.retry_min_s
            if stopping and self.pending() == 0:
                return

    def _spill_due(self) -> bool:
        with self._lock:
            return self._memory_count >= self.batch_lines or bool(
                self._memory and self.clock() >= self._memory[0].appended_ms / 1000 + self.settings.flush_s)

    def _wait_s(self, retry_at: float) -> float:
        """How long the worker may sleep before something is due."""
        if not self.up:
            return max(0.0, min(0.25, retry_at - time.monotonic()))
        if self.spool.head() is not None or self._memory_count >= self.batch_lines or (
                self._flushing and self._memory):
            return 0.0
        if self._memory:
            due = self._memory[0].appended_ms / 1000 + self.settings.flush_s
            return max(0.0, min(0.25, due - self.clock()))
        return 0.25

    def _write_pending(self, stopping: bool) -> bool | None:
        """Write due data oldest first: True when something was written, False when InfluxDB
        failed, None when nothing was due."""
        wrote = None
        while True:
            if stopping and time.monotonic() > self._close_deadline:
                return wrote
            with self._lock:  # the spool's head is read under the lock that orders `_add`
                head = self.spool.head()
                first = self._memory[0] if self._memory else None
                if head is not None and (first is None or (head.seq, head.part) < first.key):
                    taken: list[_Item] | Segment = head
                else:
                    if first is None:
                        return wrote
                    due = (stopping or self._flushing or self._memory_count >= self.batch_lines
                           or self.clock() >= first.appended_ms / 1000 + self.settings.flush_s
                           or (head is not None))
                    if not due:
                        return wrote
                    taken = self._take_memory(head)
            ok = self._write_segment(taken) if isinstance(taken, Segment) else self._write_items(taken)
            if not ok:
                return False
            wrote = True

    def _take_memory(self, head: Segment | None) -> list[_Item]:
        """Queue items older than the spool's head, up to batch_lines readings (lock held)."""
        taken: list[_Item] = []
        count = 0
        limit = (head.seq, head.part) if head is not None else None
        while self._memory and count < self.batch_lines:
            item = self._memory[0]
            if limit is not None and item.key >= limit:
                break
            room = self.batch_lines - count
            if item.size > room:
                if taken:
                    break
                taken.append(self._split(item, room))
                count += room
                break
            self._memory.popleft()
            self._memory_count -= item.size
            taken.append(item)
            count += item.size
        return taken

    def _split(self, item: _Item, size: int) -> _Item:
        """Take the first `size` readings of the queue's head, leaving the rest as its next part."""
        first = _Item(item.seq, item.part, item.appended_ms)
        if item.batch is not None:
            b = item.batch
            first.batch = Batch(b.channel[:size], b.ts[:size], b.value[:size])
            item.batch = Batch(b.channel[size:], b.ts[size:], b.value[size:])
        else:
            first.lines, item.lines = (item.lines or [])[:size], (item.lines or [])[size:]
        item.part += 1
        self._memory_count -= size
        return first

    def _write_items(self, items: list[_Item]) -> bool:
        lines: list[str] = []
        for item in items:
            lines += self.format.reading_lines(item.batch) if item.batch is not None else (item.lines or [])
        if self._send(lines):
            return True
        with self._lock:  # back into the spool, keeping their keys (older than anything queued)
            run: list[_Item] = []
            for item in items:
                if run and not self._follows(run, item):
                    self._spill(self._merged(run))
                    run = []
                run.append(item)
            if run:
                self._spill(self._merged(run))
        return False

    def _write_segment(self, segment: Segment) -> bool:
        self.spool.pin(segment)
        content = self.spool.read(segment)
        if content is None:  # dropped to respect the bound while we looked
            self.spool.unpin()
            return True
        lines = self.format.reading_lines(content) if isinstance(content, Batch) else content
        if not self._send(lines):
            self.spool.unpin()
            return False
        self.spool.remove(segment)
        return True

    def _send(self, lines: list[str]) -> bool:
        """One write request; True when InfluxDB has the lines (or refused them for good)."""
        if not lines:
            return True
        body = "\n".join(lines).encode()
        started = time.perf_counter()
        try:
            self._write(body)
        except WriteRefused as exc:
            # Retrying cannot help: count and log the lines instead of blocking everything behind them.
            self.refused_lines += len(lines)
            self._last_error = str(exc)
            log.error("InfluxDB refused %d lines (dropped): %s", len(lines), exc)
            if self.metrics is not None:
                self.metrics.influx_refused.inc(len(lines))
            return True
        except Exception as exc:
            self.write_errors += 1
            self._last_error = f"{type(exc).__name__}: {exc}"[:300]
            if self.up:
                log.warning("InfluxDB write to %s failed (%s); spooling to %s until it answers",
                            self.settings.url, self._last_error, self.spool.folder)
            if self.metrics is not None:
                self.metrics.influx_errors.inc()
            return False
        self.write_seconds += time.perf_counter() - started
        self.lines_written += len(lines)
        if self.metrics is not None:
            self.metrics.influx_lines.inc(len(lines))
        return True


class MirroredArchive:
    """The embedded archive as the pipeline sees it, with every accepted batch also handed to
    the InfluxDB sink; everything else (queries, flush, close) is the archive's own."""

    def __init__(self, archive, sink: InfluxSink):
        self._archive = archive
        self._sink = sink

    def append(self, batch: Batch) -> None:
        self._archive.append(batch)
        self._sink.append(batch)

    def __getattr__(self, name: str):
        return getattr(self._archive, name)

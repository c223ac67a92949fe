"""Ingestion in worker processes, for catalogues too large for one core.

A single Python process is bound by one core. With `--workers N` (N > 1) the gateways are
split over N worker processes (lifeline/partition.py). Each worker subscribes to the telemetry
topics of its own gateways, then decodes, validates, archives and detects exactly as the
single-process pipeline does, and writes last values into shared memory. What it finds - level
changes (rare, small), rejections and counters - goes over a pipe to the main process, which
owns the one AlertBook, the websocket hub, the API and the MQTT errors and alert topics, so
there is one consistent alert store and one event sequence.

At start the main process hands each worker the open active alerts of its gateways, so its
detectors resume where they stopped (`restore_bindings`). A worker that dies is started again.

A worker is sent the configuration as it sees it (lifeline/partition.py `config_for`): its own
gateways' sensors in full and stand-ins for the rest, so that it neither receives nor holds
the whole catalogue, while its channel numbers stay those of the whole catalogue.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from pathlib import Path

from alerting.alert import Alert
from alerting.lifecycle import AlertBook, Event, Finding
from ingest.refusals import Refusals
from ingest.rejection import Rejection
from lifeline.config import Config
from lifeline.metrics import Metrics
from lifeline.partition import config_for

log = logging.getLogger("lifeline.workers")

REPORT_S = 0.2  # how often a worker reports its counters
RESTART_DELAY_S = 1.0
# How often a worker that processed readings hands freed heap memory back. glibc serves batch
# arrays from the heap (its mmap threshold rises to 32 MiB as such blocks are freed), so freed
# pages pile up between trims: under a flood of a million readings/s a worker grew by 200 MiB
# with 5 s. Giving every large array pages of its own instead (a fixed mmap threshold) cost
# 15 % more CPU per reading in page faults.
TRIM_S = 1.0


@dataclass(frozen=True)
class WorkerPlan:
    """Everything a worker process starts from (sent to it pickled)."""

    index: int
    gateways: tuple[str, ...]
    config: Config  # the whole configuration in the main process; `config_for` its gateways when sent
    mqtt_url: str
    client_id: str  # its own persistent MQTT session
    data_dir: Path
    last_values: tuple[str, str]  # shared-memory block names (ingest/last_values.py)
    open_alerts: tuple[Alert, ...] = ()  # active alerts of its gateways, to resume from
    stale_filters: tuple[str, ...] = ()  # its session's filters from an earlier run (lifeline/mqtt_sessions.py)
    log_level: int = logging.INFO


# -- inside a worker process ------------------------------------------------------------------

class _Count:
    def __init__(self) -> None:
        self.total = 0

    def inc(self, amount: int = 1) -> None:
        self.total += amount


class _Samples:
    def __init__(self) -> None:
        self.values: list[float] = []

    def observe(self, value: float) -> None:
        self.values.append(value)


class _Gauge:
    def __init__(self) -> None:
        self.value = 0

    def set(self, value: int) -> None:
        self.value = value


class ReportedMetrics:
    """The pipeline's metrics inside a worker: kept as plain numbers and sent to the main
    process, whose Prometheus registry is the only one scraped."""

    def __init__(self) -> None:
        self.messages = _Count()
        self.readings = _Count()
        self.batch_seconds = _Samples()
        self.ingest_latency = _Samples()
        self.backlog = _Gauge()


class Outbox:
    """A worker's side of the pipe: findings, rejections and counters to the main process."""

    def __init__(self, conn: Connection):
        self._conn = conn
        self._lock = threading.Lock()  # the pipeline thread and the reporter both send
        self.metrics = ReportedMetrics()
        self._reported = (0, 0)

    def send(self, *message: object) -> None:
        with self._lock:
            self._conn.send(message)

    def apply(self, findings: list[Finding]) -> list[Event]:
        """The pipeline's FindingSink: the main process's AlertBook turns them into events."""
        if findings:
            self.send("findings", findings)
        return []

    def refuse(self, rejected: list[tuple[Rejection, bytes]]) -> None:
        self.send("rejections", rejected)

    def report(self, subscribed: bool) -> None:
        m = self.metrics
        messages, readings = m.messages.total, m.readings.total
        batch_seconds, m.batch_seconds.values = m.batch_seconds.values, []
        latency, m.ingest_latency.values = m.ingest_latency.values, []
        self.send("progress", messages - self._reported[0], readings - self._reported[1], m.backlog.value,
                  subscribed, batch_seconds, latency)
        self._reported = (messages, readings)


class Heap:
    """glibc's heap in a worker process (a no-op elsewhere).

    Under load the network thread allocates every payload and the pipeline thread frees it, and
    glibc keeps what is freed for reuse, per thread arena: after a burst each worker held about
    100 MiB more than it used. So a worker uses two arenas (its threads take turns at the GIL
    anyway), and while it is processing readings it returns freed pages every TRIM_S."""

    M_ARENA_MAX = -8  # mallopt(3)

    def __init__(self) -> None:
        try:
            self._libc: ctypes.CDLL | None = ctypes.CDLL("libc.so.6")
            self._libc.malloc_trim  # noqa: B018 - glibc, not another C library
        except (OSError, AttributeError):
            self._libc = None

    def limit_arenas(self, arenas: int = 2) -> None:
        """Before the process starts threads: they share `arenas` instead of one each."""
        if self._libc is not None:
            self._libc.mallopt(self.M_ARENA_MAX, arenas)

    def trim(self) -> None:
        if self._libc is not None:
            self._libc.malloc_trim(0)


def run_worker(plan: WorkerPlan, conn: Connection) -> None:
    """Entry point of a worker process: the pipeline for the plan's gateways until SIGTERM."""
    # Local imports: a spawned process imports only what the worker needs.
    from archive.influx_sink import InfluxSink, MirroredArchive, influx_settings
    from archive.sqlite_archive import ReadingArchive
    from detectors.registry import build_detectors
    from ingest.decode import TelemetryDecoder
    from ingest.last_values import SharedLastValues
    from ingest.telemetry_subscriber import TelemetrySubscriber
    from lifeline.catalogue import Catalogue
    from lifeline.gc_freeze import freeze_long_lived
    from lifeline.mqtturl import parse_mqtt_url
    from lifeline.pipeline import Pipeline, restore_bindings

    logging.basicConfig(level=plan.log_level, format=f"%(asctime)s %(levelname)s %(name)s[w{plan.index}]: %(message)s")
    # Stopped by SIGTERM from the main process. Not by a multiprocessing.Event: a worker killed
    # while waiting on one leaves its lock held, and the main process would hang setting it.
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the main process stops us
    heap = Heap()
    heap.limit_arenas()
    config = plan.config  # as `config_for` made it: stand-ins for other gateways' sensors, own rules
    catalogue = Catalogue(config)
    detectors = build_detectors(catalogue, config.rules)
    outbox = Outbox(conn)
    outbox.send("restored", restore_bindings(detectors, plan.open_alerts),
                sum(len(d.bindings) for d in detectors.all()))
    archive = ReadingArchive(plan.data_dir / "readings.db", config.storage.retention_days)
    influx = influx_settings(config.influx)  # the environment was inherited: the same answer as in main
    # Each worker mirrors its own readings, with a spool of its own; alert events go from main.
    sink = None if influx is None else InfluxSink(influx, catalogue,
                                                   plan.data_dir / "influx-spool" / f"worker-{plan.index}")
    shared = SharedLastValues(len(catalogue), plan.last_values)
    prefix = config.mqtt.topic_prefix
    subscriber = TelemetrySubscriber(parse_mqtt_url(plan.mqtt_url), plan.client_id,
                                     [f"{prefix}/{gateway}/telemetry" for gateway in plan.gateways],
                                     plan.stale_filters)
    pipeline = Pipeline(
        catalogue=catalogue, decoder=TelemetryDecoder(catalogue, config.storage.retention_days),
        detectors=detectors, book=outbox, archive=archive if sink is None else MirroredArchive(archive, sink),
        metrics=outbox.metrics, last_values=shared.view,
        refuse=outbox.refuse, topic_prefix=prefix, backfill_after_s=config.alerting.backfill_after_s)
    freeze_long_lived()  # the catalogue and detectors: never again walked by the cyclic collector
    halt = threading.Event()
    pipeline_thread = threading.Thread(target=pipeline.run, args=(subscriber, halt), name="pipeline", daemon=True)
    subscriber.start()
    pipeline_thread.start()
    parent = os.getppid()
    heap.trim()  # what building the catalogue and detectors left
    trimmed_at, readings_then = time.monotonic(), 0
    try:
        # Readings are acknowledged to the broker once queued here: a worker whose main process
        # is gone must stop receiving them, or they would be lost with nobody to alert.
        while not stop.wait(REPORT_S) and os.getppid() == parent:
            outbox.report(subscriber.subscribed)
            if time.monotonic() - trimmed_at >= TRIM_S and pipeline.readings_total != readings_then:
                heap.trim()
                trimmed_at, readings_then = time.monotonic(), pipeline.readings_total
    except OSError:  # the pipe broke: the main process is gone
        log.error("lost the main process; stopping")
    finally:
        subscriber.stop()
        halt.set()
        pipeline_thread.join(timeout=10)
        archive.close()
        if sink is not None:
            sink.close()
        with contextlib.suppress(OSError):
            outbox.report(False)
        shared.close()
        conn.close()


# -- in the main process ----------------------------------------------------------------------

@dataclass
class _Worker:
    plan: WorkerPlan
    process: multiprocessing.process.BaseProcess | None = None
    conn: Connection | None = None
    subscribed: bool = False
    backlog: int = 0
    restored: threading.Event = field(default_factory=threading.Event)


class WorkerPool:
    """The main process's side: starts the workers and applies what they send, in arrival order,
    on one thread of its own (alert listeners run there, as they run on the pipeline thread
    in a single process)."""

    def __init__(self, plans: list[WorkerPlan], *, book: AlertBook, refusals: Refusals, metrics: Metrics):
        self._workers = [_Worker(plan) for plan in plans]
        self.book = book
        self.refusals = refusals
        self.metrics = metrics
        self.readings_total = 0
        self.bindings = 0
        self._context = multiprocessing.get_context("spawn")  # no fork of a threaded process
        self._stopping = threading.Event()
        self._spawning = threading.Lock()  # a restart never races with stop()
        self._any_change = threading.Condition()
        self._thread = threading.Thread(target=self._receive, name="worker-results", daemon=True)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        for worker in self._workers:
            self._spawn(worker)
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        with self._spawning:
            self._stopping.set()
            for worker in self._workers:
                if worker.process is not None and worker.process.is_alive():
                    worker.process.terminate()  # SIGTERM: the worker finishes its batch, flushes the archive
        deadline = time.monotonic() + timeout
        for worker in self._workers:
            if worker.process is not None:
                worker.process.join(max(0.1, deadline - time.monotonic()))
                if worker.process.is_alive():
                    log.warning("worker %d did not stop in time; killing it", worker.plan.index)
                    worker.process.kill()
                    worker.process.join(5)
        self._thread.join(timeout=5)

    def wait_restored(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        return all(w.restored.wait(max(0.0, deadline - time.monotonic())) for w in self._workers)

    @property
    def subscribed(self) -> bool:
        """True while every worker's telemetry subscription is acknowledged."""
        return all(w.subscribed for w in self._workers)

    def wait_subscribed(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._any_change:
            return self._any_change.wait_for(lambda: self.subscribed, max(0.0, deadline - time.monotonic()))

    def backlog(self) -> int:
        return sum(w.backlog for w in self._workers)

    def gateways(self) -> list[tuple[str, ...]]:
        return [w.plan.gateways for w in self._workers]

    # -- workers ------------------------------------------------------------------------------
    def _spawn(self, worker: _Worker) -> None:
        receiving, sending = self._context.Pipe(duplex=False)
        sent = replace(worker.plan, config=config_for(worker.plan.config, worker.plan.gateways))
        process = self._context.Process(target=run_worker, args=(sent, sending),
                                        name=f"lifeline-worker-{worker.plan.index}", daemon=True)
        process.start()
        sending.close()  # the worker holds the only sending end: its exit ends our reads
        worker.process, worker.conn = process, receiving

    def _receive(self) -> None:
        while True:
            live = {w.conn: w for w in self._workers if w.conn is not None}
            if not live:
                if self._stopping.is_set():
                    return
                time.sleep(0.1)
                continue
            for conn in wait(list(live), timeout=0.5):
                worker = live[conn]
                try:
                    message = conn.recv()
                except (EOFError, OSError):
                    self._ended(worker)
                    continue
                try:
                    self._handle(worker, message)
                except Exception:  # one bad report must not stop the others
                    log.exception("worker %d: could not handle %s", worker.plan.index, message[0])

    def _handle(self, worker: _Worker, message: tuple) -> None:
        kind = message[0]
        if kind == "findings":
            self.book.apply(message[1])
        elif kind == "rejections":
            self.refusals.record(message[1])
        elif kind == "progress":
            _, messages, readings, backlog, subscribed, batch_seconds, latency = message
            self.metrics.messages.inc(messages)
            self.metrics.readings.inc(readings)
            self.readings_total += readings
            for value in batch_seconds:
                self.metrics.batch_seconds.observe(value)
            for value in latency:
                self.metrics.ingest_latency.observe(value)
            worker.backlog = backlog
            self.metrics.backlog.set(self.backlog())
            if subscribed != worker.subscribed:
                with self._any_change:
                    worker.subscribed = subscribed
                    self._any_change.notify_all()
        elif kind == "restored":
            _, orphans, bindings = message
            for alert_id, why in orphans:
                self.book.clear_condition(alert_id, "system", f"cleared at start-up: {why}")
            if orphans:
                log.warning("cleared %d alerts whose rule or sensor left the configuration", len(orphans))
            if not worker.restored.is_set():
                self.bindings += bindings
            worker.restored.set()

    def _ended(self, worker: _Worker) -> None:
        worker.conn.close()
        worker.conn = None
        with self._any_change:
            worker.subscribed = False
            self._any_change.notify_all()
        if self._stopping.is_set():
            return
        code = worker.process.exitcode if worker.process is not None else None
        log.error("worker %d (gateways %s) ended unexpectedly (exit code %s); starting it again",
                  worker.plan.index, ", ".join(worker.plan.gateways[:5]), code)
        time.sleep(RESTART_DELAY_S)
        own = set(worker.plan.gateways)
        active = tuple(a for a in self.book.open_alerts() if a.condition == "active" and a.gateway in own)
        with self._spawning:
            if not self._stopping.is_set():
                worker.plan = replace(worker.plan, open_alerts=active)
                self._spawn(worker)

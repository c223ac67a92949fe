"""The ingestion pipeline: messages -> one columnar batch -> detectors -> alert lifecycle.

It runs in one thread of its own, fed by the MQTT source; everything it does per batch is
array work except for the rare rejections and level changes. In a worker process
(lifeline/workers.py) the same pipeline runs for a share of the gateways, and its findings
and rejections go to the main process, which owns the alert book.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Protocol

from alerting.alert import Alert
from alerting.lifecycle import AlertBook, Event, Finding
from archive.sqlite_archive import ReadingArchive
from detectors.base import Detector
from detectors.registry import DetectorSet
from detectors.threshold import ThresholdFindings
from ingest.batch import Batch
from ingest.decode import TelemetryDecoder
from ingest.fast_decode import FastDecoder
from ingest.last_values import LastValues
from ingest.rejection import Rejection
from ingest.telemetry_subscriber import Message
from lifeline.catalogue import Catalogue
from lifeline.levels import LEVEL_NUMBER
from lifeline.metrics import Metrics

log = logging.getLogger("lifeline.pipeline")

TICK_S = 1.0  # how often silence is evaluated when no data arrives


class FindingSink(Protocol):
    """Where findings go: the AlertBook, or in a worker process the way to the main one."""

    def apply(self, findings: Iterable[Finding]) -> list[Event]: ...


class Pipeline:
    """Decodes, validates, archives, detects and alerts, one batch at a time.

    `refuse` receives the rejections of a batch with their payloads (ingest/refusals.py).
    `metrics` is the service's Metrics, or in a worker the stand-in that reports to the main process.
    """

    def __init__(self, *, catalogue: Catalogue, decoder: TelemetryDecoder, detectors: DetectorSet,
                 book: FindingSink, archive: ReadingArchive, metrics: Metrics, last_values: LastValues,
                 refuse: Callable[[list[tuple[Rejection, bytes]]], None], topic_prefix: str,
                 backfill_after_s: float = 300.0, clock: Callable[[], float] = time.time):
        self.catalogue = catalogue
        self.decoder = decoder
        self.fast_decoder = FastDecoder(catalogue, decoder.retention_ms)
        self.detectors = detectors
        self.book = book
        self.archive = archive
        self.metrics = metrics
        self.last_values = last_values
        self.refuse = refuse
        self.prefix = topic_prefix
        self.backfill_after_ms = int(backfill_after_s * 1000)
        self.clock = clock
        self.readings_total = 0
        self._last_tick = 0.0

    # -- one batch ----------------------------------------------------------------------------
    def process(self, messages: list[Message]) -> list[Event]:
        """Handle a group of telemetry messages as one batch; returns the alert events."""
        started = time.perf_counter()
        rejected: list[tuple[Rejection, bytes]] = []
        prefix_len = len(self.prefix) + 1
        group = [(topic[prefix_len:-len("/telemetry")], payload, received_ms)
                 for topic, payload, received_ms in messages]
        clean, unusual = self.fast_decoder.decode_many(group)
        parts = [clean]
        # Messages the fast path handed back: decoded one by one, each refused part with its reason.
        for i in unusual:
            gateway, payload, received_ms = group[i]
            decoded = self.decoder.decode(gateway, payload, received_ms)
            if len(decoded.batch):
                parts.append(decoded.batch)
            for rejection in decoded.rejections:
                rejected.append((rejection, payload))
        batch = Batch.concat(parts)
        self.metrics.messages.inc(len(messages))
        if rejected:
            self.refuse(rejected)
        events: list[Event] = []
        if len(batch):
            self.archive.append(batch)
            self.last_values.update(batch)
            events = self.book.apply(self.detect(batch))
            # Counted once detected: a client that waits for the count sees the batch's alerts too.
            self.readings_total += len(batch)
            self.metrics.readings.inc(len(batch))
        self.metrics.batch_seconds.observe(time.perf_counter() - started)
        if messages:
            oldest_ms = min(m.received_ms for m in messages)
            self.metrics.ingest_latency.observe(max(0.0, self.clock() - oldest_ms / 1000))
        return events

    def detect(self, batch: Batch) -> list[Finding]:
        """Every detector over the batch; quality first, so hazards of faulty channels are marked."""
        quality = self.detectors.quality
        findings = self._rows(quality, quality.update(batch))
        for detector in self.detectors.hazards:
            findings += self._rows(detector, detector.update(batch), quality)
        findings += self._rows(self.detectors.deadman, self.detectors.deadman.update(batch))
        return findings

    def tick(self) -> list[Event]:
        """Timer work: silence is noticed even when nothing arrives."""
        deadman = self.detectors.deadman
        return self.book.apply(self._rows(deadman, deadman.tick()))

    def _rows(self, detector: Detector, found: ThresholdFindings, quality=None) -> list[Finding]:
        if not len(found):
            return []
        now_ms = int(self.clock() * 1000)
        rows = []
        for b, ts, before, after, value, limit, started in zip(
                found.binding.tolist(), found.ts.tolist(), found.level_before.tolist(), found.level_after.tolist(),
                found.value.tolist(), found.limit.tolist(), found.started_at.tolist(), strict=True):
            binding = detector.bindings[b]
            sensor = binding.channel.sensor
            extra = detector.details(b)
            grade = self.detectors.grades.get(sensor.id)
            if grade is not None:
                extra.setdefault("hazard_grade", grade)
            if quality is not None and quality.faulty[binding.channel.index]:
                if quality.on_fault(binding.channel.index) == "suppress" and after > before:
                    continue  # a broken sensor does not send anyone out
                extra["confidence"] = "low"
            elif quality is not None:
                extra["confidence"] = "normal"
            rows.append(Finding(
                binding.rule.id, sensor.id, binding.metric, sensor.domain, sensor.asset, sensor.gateway,
                self.catalogue.owner_by_gateway.get(sensor.gateway, ""), ts, before, after, value, limit, started,
                detector.message(b, before, after, value, limit), extra,
                backfilled=ts < now_ms - self.backfill_after_ms))
        return rows

    # -- the thread ---------------------------------------------------------------------------
    def run(self, source, stop: threading.Event, linger_s: float = 0.002, max_messages: int = 5000) -> None:
        """Drain `source` until `stop` is set; a failing batch is logged and skipped, never fatal.

        Stop the source first: what it still holds was acknowledged to the broker, so it is
        processed before returning."""
        while not stop.is_set():
            messages = source.drain(linger_s, max_messages, timeout_s=0.1)
            self.metrics.backlog.set(source.backlog())
            try:
                if messages:
                    self.process(messages)
                if time.monotonic() - self._last_tick >= TICK_S:
                    self._last_tick = time.monotonic()
                    self.tick()
            except Exception:
                log.exception("batch of %d messages failed; continuing", len(messages))
        while source.backlog():
            messages = source.drain(0.0, max_messages, timeout_s=0.0)
            try:
                self.process(messages)
            except Exception:
                log.exception("batch of %d messages failed at stop", len(messages))


def restore_bindings(detectors: DetectorSet, alerts: Iterable[Alert]) -> list[tuple[str, str]]:
    """Put each binding with an active open alert back to that alert's level, so a restart
    neither re-raises nor forgets it. Returns (alert id, why) of the active alerts that no
    binding can take (rule, sensor or level left the configuration)."""
    index: dict[tuple[str, str, str], tuple[Detector, int]] = {}
    for detector in detectors.all():
        for binding in detector.bindings:
            index[(binding.rule.id, binding.channel.sensor.id, binding.metric)] = (detector, binding.index)
    orphans = []
    for alert in alerts:
        if alert.condition != "active":
            continue
        found = index.get(alert.key)
        try:
            if found is None:
                raise ValueError("rule or sensor removed from the configuration")
            detector, binding = found
            detector.restore(binding, LEVEL_NUMBER[alert.level], alert.raised_at,
                             max(alert.raised_at, alert.updated_at))
        except ValueError as exc:
            orphans.append((alert.id, str(exc)))
    return orphans


def clear_orphans(book: AlertBook, orphans: list[tuple[str, str]]) -> list[str]:
    """Active alerts nothing could ever clear are cleared at start-up; returns their ids."""
    for alert_id, why in orphans:
        book.clear_condition(alert_id, "system", f"cleared at start-up: {why}")
    return [alert_id for alert_id, _ in orphans]


def restore_detector_state(detectors: DetectorSet, book: AlertBook) -> list[str]:
    """`restore_bindings` from the book's open alerts, clearing the orphans; returns their ids."""
    return clear_orphans(book, restore_bindings(detectors, book.open_alerts()))

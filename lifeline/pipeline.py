"""The ingestion pipeline: messages -> one columnar batch -> detectors -> alert lifecycle.

It runs in one thread of its own, fed by the MQTT source; everything it does per batch is
array work except for the rare rejections and level changes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from alerting.lifecycle import AlertBook, Event, Finding
from archive.sqlite_archive import ReadingArchive
from detectors.threshold import ThresholdDetector, ThresholdFindings
from ingest.batch import Batch
from ingest.dead_letters import DeadLetters
from ingest.decode import TelemetryDecoder
from ingest.last_values import LastValues
from ingest.mqtt_source import Message
from ingest.rejection import Rejection
from lifeline.catalogue import Catalogue
from lifeline.levels import LEVEL_NUMBER, level_name
from lifeline.metrics import Metrics

log = logging.getLogger("lifeline.pipeline")


@dataclass(frozen=True)
class _BindingLabel:
    """What an alert needs to know about one (rule, channel) binding, computed once."""

    rule: str
    sensor: str
    metric: str
    unit: str
    domain: str
    asset: str
    gateway: str
    owner: str
    direction: str


def _format_number(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e6 else f"{value:.6g}"


class Pipeline:
    """Decodes, validates, archives, detects and alerts, one batch at a time."""

    def __init__(self, *, catalogue: Catalogue, decoder: TelemetryDecoder, detector: ThresholdDetector,
                 book: AlertBook, archive: ReadingArchive, dead_letters: DeadLetters, metrics: Metrics,
                 last_values: LastValues, publish: Callable[[str, bytes, int], None], topic_prefix: str):
        self.catalogue = catalogue
        self.decoder = decoder
        self.detector = detector
        self.book = book
        self.archive = archive
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.last_values = last_values
        self.publish = publish
        self.prefix = topic_prefix
        self.labels = [
            _BindingLabel(b.rule.id, b.channel.sensor.id, b.channel.metric, b.channel.unit, b.channel.sensor.domain,
                          b.channel.sensor.asset, b.channel.sensor.gateway, catalogue.owner_of(b.channel.sensor),
                          b.rule.threshold.direction)
            for b in detector.bindings
        ]
        self.readings_total = 0

    # -- one batch ----------------------------------------------------------------------------
    def process(self, messages: list[Message]) -> list[Event]:
        """Handle a group of telemetry messages as one batch; returns the alert events."""
        started = time.perf_counter()
        parts: list[Batch] = []
        rejected: list[tuple[Rejection, bytes]] = []
        prefix_len = len(self.prefix) + 1
        for message in messages:
            gateway = message.topic[prefix_len:-len("/telemetry")]
            decoded = self.decoder.decode(gateway, message.payload, message.received_ms)
            if len(decoded.batch):
                parts.append(decoded.batch)
            for rejection in decoded.rejections:
                rejected.append((rejection, message.payload))
        batch = Batch.concat(parts)
        self.metrics.messages.inc(len(messages))
        if rejected:
            self._reject(rejected)
        events: list[Event] = []
        if len(batch):
            self.archive.append(batch)
            self.last_values.update(batch)
            self.readings_total += len(batch)
            self.metrics.readings.inc(len(batch))
            findings = self.detector.update(batch)
            if len(findings):
                events = self.book.apply(self._findings(findings))
        finished = time.perf_counter()
        self.metrics.batch_seconds.observe(finished - started)
        if messages:
            oldest_ms = min(m.received_ms for m in messages)
            self.metrics.ingest_latency.observe(max(0.0, time.time() - oldest_ms / 1000))
        return events

    def _findings(self, findings: ThresholdFindings) -> list[Finding]:
        rows = []
        for b, ts, before, after, value, limit, started in zip(
                findings.binding.tolist(), findings.ts.tolist(), findings.level_before.tolist(),
                findings.level_after.tolist(), findings.value.tolist(), findings.limit.tolist(),
                findings.started_at.tolist(), strict=True):
            label = self.labels[b]
            rows.append(Finding(label.rule, label.sensor, label.metric, label.domain, label.asset, label.gateway,
                                label.owner, ts, before, after, value, limit, started,
                                self._message(label, before, after, value, limit)))
        return rows

    @staticmethod
    def _message(label: _BindingLabel, before: int, after: int, value: float, limit: float) -> str:
        unit = f" {label.unit}" if label.unit else ""
        shown = f"{label.metric} {_format_number(value)}{unit}"
        if after == 0:
            side = "below" if label.direction == "above" else "above"
            return f"{shown} back {side} {level_name(before)} {_format_number(limit)} (cleared)"
        sign = ">=" if label.direction == "above" else "<="
        return f"{shown} {sign} {level_name(after)} {_format_number(limit)}"

    def _reject(self, rejected: list[tuple[Rejection, bytes]]) -> None:
        for rejection, _ in rejected:
            self.metrics.rejections.labels(self.metrics.gateway_label(rejection.gateway), rejection.reason).inc()
            try:
                self.publish(f"{self.prefix}/{rejection.gateway}/errors", rejection.error_message(), 0)
            except Exception:  # the errors topic is a courtesy; it never stops ingestion
                log.exception("could not publish a rejection to %s", rejection.gateway)
        try:
            self.dead_letters.add(rejected)
        except Exception:
            log.exception("could not store %d rejections", len(rejected))

    # -- the thread ---------------------------------------------------------------------------
    def run(self, source, stop: threading.Event, linger_s: float = 0.004, max_messages: int = 5000) -> None:
        """Drain `source` until `stop` is set; a failing batch is logged and skipped, never fatal."""
        while not stop.is_set():
            messages = source.drain(linger_s, max_messages, timeout_s=0.1)
            self.metrics.backlog.set(source.backlog())
            if not messages:
                continue
            try:
                self.process(messages)
            except Exception:
                log.exception("batch of %d messages failed; continuing", len(messages))


def restore_detector_state(detector: ThresholdDetector, book: AlertBook) -> list[str]:
    """Put each binding with an active open alert back to that alert's level, so a restart
    neither re-raises nor forgets it. Active alerts whose rule or sensor left the configuration
    are cleared (nothing could ever clear them otherwise); returns their ids."""
    index = {(b.rule.id, b.channel.sensor.id, b.channel.metric): b.index for b in detector.bindings}
    orphans = []
    for alert in book.open_alerts():
        binding = index.get(alert.key)
        if binding is None:
            if alert.condition == "active":
                book.clear_condition(alert.id, "system", "rule or sensor removed from the configuration")
                orphans.append(alert.id)
            continue
        if alert.condition == "active":
            detector.restore(binding, LEVEL_NUMBER[alert.level], alert.raised_at, alert.updated_at)
    return orphans


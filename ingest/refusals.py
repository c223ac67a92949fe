"""What becomes of a rejection (CONTRACT §4): the gateway is told on its errors topic, the
rejection is counted per gateway and reason, and it is kept with its payload as a dead letter."""

from __future__ import annotations

import logging
from collections.abc import Callable

from ingest.dead_letters import DeadLetters
from ingest.rejection import Rejection
from lifeline.metrics import Metrics

log = logging.getLogger("lifeline.pipeline")


class Refusals:
    """Records rejections; never raises, so bad input cannot stop ingestion."""

    def __init__(self, *, metrics: Metrics, publish: Callable[[str, bytes, int], None], dead_letters: DeadLetters,
                 topic_prefix: str):
        self.metrics = metrics
        self.publish = publish
        self.dead_letters = dead_letters
        self.prefix = topic_prefix

    def record(self, rejected: list[tuple[Rejection, bytes]]) -> None:
        """Each rejection with the raw payload it came in."""
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

"""How `lifeline up` ingests: in its own process, or in worker processes for large catalogues.

Both ways offer the service the same small surface (start, stop, subscription state, backlog,
readings counted); lifeline/workers.py holds the multi-process one.
"""

from __future__ import annotations

import os
import threading
from typing import Protocol

from ingest.telemetry_subscriber import TelemetrySubscriber
from lifeline.pipeline import Pipeline

#: Below this many channels one process keeps up with any realistic feed, starts faster and
#: is simpler to debug, so `--workers auto` stays at 1 (README, Performance: workers).
AUTO_WORKERS_MIN_CHANNELS = 5_000
MAX_AUTO_WORKERS = 8


def choose_workers(requested: str | int | None, channels: int, cpus: int | None = None) -> int:
    """`requested` is a count, or None/"auto": one per core for large catalogues, else 1."""
    if requested not in (None, "auto"):
        count = int(requested)
        if count < 1:
            raise ValueError(f"--workers must be at least 1 or 'auto', got {requested!r}")
        return count
    cpus = cpus if cpus is not None else len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
    if channels < AUTO_WORKERS_MIN_CHANNELS or cpus < 2:
        return 1
    return min(cpus, MAX_AUTO_WORKERS)


class Ingestion(Protocol):
    readings_total: int
    bindings: int  # rule bindings of the detectors

    @property
    def subscribed(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def wait_subscribed(self, timeout: float) -> bool: ...

    def backlog(self) -> int: ...


class InProcessIngestion:
    """One process: the subscriber's network thread feeds the pipeline thread."""

    def __init__(self, source: TelemetrySubscriber, pipeline: Pipeline):
        self.source = source
        self.pipeline = pipeline
        self.bindings = sum(len(d.bindings) for d in pipeline.detectors.all())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=pipeline.run, args=(source, self._stop), name="pipeline",
                                        daemon=True)

    @property
    def readings_total(self) -> int:
        return self.pipeline.readings_total

    @property
    def subscribed(self) -> bool:
        return self.source.subscribed

    def start(self) -> None:
        self._thread.start()
        self.source.start()

    def stop(self) -> None:
        self.source.stop()  # first: the pipeline then finishes what was received
        self._stop.set()
        self._thread.join(timeout=10)

    def wait_subscribed(self, timeout: float) -> bool:
        return self.source.wait_subscribed(timeout)

    def backlog(self) -> int:
        return self.source.backlog()

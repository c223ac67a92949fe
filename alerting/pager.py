"""The pager: everything that turns alert events into people being told, assembled.

It owns the records the API reads (silences, the notification log, the audit trail, the
alarm-load report) and the two kinds of threads that act on them: the dispatcher (routing,
grouping, muting, deadlines, flapping; alerting/dispatcher.py) and one delivery worker per
receiver (alerting/delivery.py). Its only input is the AlertBook listener `on_event`, which
just enqueues. See README "Alert management".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

from alerting.alarm_load import AlarmLoad, AlarmLoadCollector
from alerting.audit import AuditLog
from alerting.delivery import Outbox
from alerting.dispatcher import Dispatcher
from alerting.inhibition import Inhibitor
from alerting.labels import Labeler
from alerting.lifecycle import AlertBook, Event
from alerting.silences import Silences
from alerting.store import AlertStore
from lifeline.alerting_config import AlertManagementSettings


def wall_ms() -> int:
    return int(time.time() * 1000)


class Pager:
    def __init__(self, settings: AlertManagementSettings, *, book: AlertBook, store: AlertStore, sensors: Iterable,
                 db_path: Path, metrics=None, publish: Callable[[str, bytes, int], None] | None = None,
                 clock: Callable[[], int] = wall_ms):
        self.settings = settings
        self.clock = clock
        self.audit = AuditLog(db_path, clock)
        self.silences = Silences(db_path, clock, self.audit)
        self.outbox = Outbox(db_path, settings.receivers, settings.retry, clock, self.audit, metrics, publish)
        inhibitor = Inhibitor(settings.inhibit_rules)
        self.dispatcher = Dispatcher(settings, book=book, store=store, labeler=Labeler.for_catalogue(sensors),
                                     muters=(self.silences, inhibitor), inhibitor=inhibitor, outbox=self.outbox,
                                     audit=self.audit, clock=clock, metrics=metrics)
        self.alarm_load = AlarmLoad(db_path, clock, settings.operators_on_duty)
        if metrics is not None:
            metrics.registry.register(AlarmLoadCollector(self.alarm_load))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._loaded = False

    def on_event(self, event: Event) -> None:
        """AlertBook listener: enqueue only (called under the book's lock)."""
        self.dispatcher.on_event(event)

    def load(self) -> None:
        """Take the book's current state; call once after subscribing `on_event`."""
        if not self._loaded:
            self.dispatcher.load()
            self._loaded = True

    def start(self) -> None:
        self.load()
        self.outbox.start()
        self._thread = threading.Thread(target=self.dispatcher.run, args=(self._stop,), name="dispatcher",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.outbox.stop()
        self.outbox.close()
        self.silences.close()
        self.alarm_load.close()
        self.audit.close()

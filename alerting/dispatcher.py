"""The dispatcher: alert events in, notifications out.

It is an AlertBook listener that only enqueues (the pipeline thread never waits for it);
its own thread then, for every event in sequence order:

1. keeps the open alerts and their labels, the deadlines (alerting/deadlines.py) and the
   flapping state (alerting/flapping.py) up to date;
2. routes raised, escalated and reactivated alerts (and cleared ones for routes with
   `send_resolved`) into batches, one per route and incident (`group_by` labels), which
   wait `group_wait` to collect the incident's other alerts;
3. on a timer: flushes due batches, asks the Muter (silences, then inhibition) about every
   alert in them, holds back flapping alerts that already notified, and hands the rest to
   the outbox (alerting/delivery.py) as one notification per receiver; repeats notifications
   of alerts still active and unacknowledged after `repeat_interval`; marks missed response
   deadlines `overdue` through the AlertBook and notifies the next escalation tier; marks
   flapping alerts and their settling.

Silenced, inhibited and flapping alerts are still recorded and shown: only their
notifications are held back, and each hold is in the audit trail. A muted alert that is
still active and unacknowledged when its silence ends (or its inhibiting alert clears)
notifies then.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

from alerting.alert import DETECTOR_EVENTS, Transition
from alerting.audit import AuditLog, Record
from alerting.deadlines import LEVEL_EVENTS, MET, DeadlineWatch
from alerting.delivery import Outbox
from alerting.flapping import FlapDetector
from alerting.inhibition import Inhibitor
from alerting.labels import Labeler
from alerting.lifecycle import AlertBook, Event
from alerting.messages import Notification, most_severe_first
from alerting.routing import Router, group_key
from alerting.store import AlertStore
from lifeline.alerting_config import AlertManagementSettings, RouteSpec

log = logging.getLogger("lifeline.dispatch")

TICK_MS = 500  # deadlines, repeats, settling and silence ends are looked at this often
FIRING_EVENTS = ("raised", "escalated", "reactivated")


class Muter(Protocol):
    """Answers whether an alert's notifications are held back, and by what."""

    def muted_by(self, labels: Mapping[str, str], now: int) -> str | None: ...


@dataclass
class _Batch:
    route: str
    receivers: tuple[str, ...]
    kind: str
    group: dict
    flush_at: int
    alerts: dict[str, dict] = field(default_factory=dict)
    tier: int | None = None
    note: str = ""


class Dispatcher:
    def __init__(self, settings: AlertManagementSettings, *, book: AlertBook, store: AlertStore, labeler: Labeler,
                 muters: tuple[Muter, ...], inhibitor: Inhibitor, outbox: Outbox, audit: AuditLog | None,
                 clock: Callable[[], int], metrics=None):
        self.settings = settings
        self.book = book
        self.store = store
        self.labeler = labeler
        self.muters = muters
        self.inhibitor = inhibitor
        self.outbox = outbox
        self.audit = audit
        self.clock = clock
        self.metrics = metrics
        self.router = Router(settings.routes)
        self.deadlines = DeadlineWatch(settings.deadlines)
        self.flaps = FlapDetector(settings.flapping) if settings.flapping is not None else None
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._seq = -1  # events up to this seq are already reflected (set by load)
        self._alerts: dict[str, dict] = {}  # open alerts as of the last event
        self._labels: dict[str, dict[str, str]] = {}
        self._batches: dict[tuple, _Batch] = {}
        self._last_notified: dict[tuple[str, str], int] = {}  # (route, alert id) -> ms, for repeats
        self._held: set[tuple[str, str]] = set()  # (route, alert id) muted while firing
        self._notified: set[str] = set()  # alerts that notified at least once (flapping: only once)
        self._inhibition_stale = True
        self._last_tick = 0

    # -- the AlertBook listener: enqueue only ------------------------------------------------------
    def on_event(self, event: Event) -> None:
        self._inbox.put((event.seq, event.event, event.body, event.transition))

    # -- start-up ---------------------------------------------------------------------------------
    def load(self) -> None:
        """State from the book and the database, so a restart keeps deadlines, flapping and
        repeats. Call after subscribing: events up to the snapshot are then skipped."""
        now = self.clock()
        seq, alerts = self.book.snapshot()
        self._seq = seq
        window_ms = int(self.settings.flapping.window_s * 1000) if self.settings.flapping else 0
        for alert in alerts:
            self._remember(alert)
            history = self.store.history(alert["id"])
            self.deadlines.track(alert, history)
            if self.flaps is not None:
                times = [t.at for t in history if t.event in DETECTOR_EVENTS and t.at > now - window_ms]
                if times or alert.get("flapping"):
                    self.flaps.restore(alert["id"], times, bool(alert.get("flapping")))
                if alert.get("flapping"):
                    self._notified.add(alert["id"])
        for (route, alert_id), at in self.outbox.last_notified(0).items():
            if alert_id in self._alerts:
                self._last_notified[(route, alert_id)] = at
                self._notified.add(alert_id)
        # Active, unacknowledged alerts a route never told about (muted then, or the service
        # stopped during group_wait) notify as soon as nothing mutes them.
        for alert_id, alert in self._alerts.items():
            if alert.get("backfilled") or alert.get("workflow") != "new" or alert.get("condition") != "active":
                continue
            for route in self.router.routes_for(self._labels[alert_id]):
                if (route.name, alert_id) not in self._last_notified:
                    self._held.add((route.name, alert_id))

    # -- events -----------------------------------------------------------------------------------
    def drain(self, limit: int = 10_000) -> int:
        """Handle queued events (the dispatcher thread, or tests); returns how many."""
        handled = 0
        while handled < limit:
            try:
                seq, event, body, transition = self._inbox.get_nowait()
            except queue.Empty:
                break
            self.handle(seq, event, body, transition)
            handled += 1
        return handled

    def handle(self, seq: int, event: str, body: bytes, transition: Transition | None = None) -> None:
        """One alert event; `transition` is the persisted transition when the book announced
        it (saves reading it back), else it is read from the store when needed."""
        if seq <= self._seq:
            return
        self._seq = seq
        alert = msgspec.json.decode(body)["alert"]
        alert_id = alert["id"]
        now = self.clock()
        self._inhibition_stale = True
        if event == "closed" or alert.get("workflow") == "closed":
            self._forget(alert_id)
            return
        labels = self._remember(alert)
        if event in LEVEL_EVENTS:
            transition = transition or self.store.transition(seq)
            if transition is None or not self.deadlines.advance(alert, transition):
                self.deadlines.track(alert, self.store.history(alert_id))
        else:
            self.deadlines.update(alert)
        if alert.get("backfilled"):
            return  # history from buffered readings: never anyone's work
        if self.flaps is not None and event in DETECTOR_EVENTS and self.flaps.record(alert_id, now):
            self._annotate_flapping(alert_id)
        if event in FIRING_EVENTS:
            for route in self.router.routes_for(labels):
                self._add(route, "firing", alert, labels, now + int(route.group_wait_s * 1000))
        elif event == "cleared":
            for route in self.router.routes_for(labels):
                if route.send_resolved and (route.name, alert_id) in self._last_notified:
                    self._add(route, "resolved", alert, labels, now + int(route.group_wait_s * 1000))

    def _remember(self, alert: dict) -> dict[str, str]:
        labels = self.labeler.labels(alert)
        self._alerts[alert["id"]] = alert
        self._labels[alert["id"]] = labels
        return labels

    def _forget(self, alert_id: str) -> None:
        self._alerts.pop(alert_id, None)
        self._labels.pop(alert_id, None)
        self.deadlines.forget(alert_id)
        if self.flaps is not None:
            self.flaps.forget(alert_id)
        self._notified.discard(alert_id)
        for route in self.router.routes:  # a handful: cheaper than scanning every notified alert
            self._last_notified.pop((route.name, alert_id), None)
            self._held.discard((route.name, alert_id))

    def _add(self, route: RouteSpec, kind: str, alert: dict, labels: Mapping[str, str], flush_at: int) -> None:
        group = group_key(route, labels)
        key = (route.name, kind, group)
        batch = self._batches.get(key)
        if batch is None:
            batch = self._batches[key] = _Batch(route.name, route.receivers, kind, dict(zip(route.group_by, group,
                                                                                            strict=True)), flush_at)
        batch.alerts[alert["id"]] = alert

    # -- the timer --------------------------------------------------------------------------------
    def tick(self, now: int | None = None) -> None:
        """Deadlines, settling, silences that ended, repeats; then flush due batches."""
        now = self.clock() if now is None else now
        self._last_tick = now
        self._check_deadlines(now)
        if self.flaps is not None:
            for alert_id in self.flaps.settled(now):
                self.book.annotate(alert_id, "settled", "system", "stopped flapping", {"flapping": None})
        self._unhold(now)
        self._repeat(now)
        self.flush(now)

    def next_wake(self, now: int) -> int:
        """When the thread must look again at the latest."""
        wake = now + TICK_MS
        for batch in self._batches.values():
            wake = min(wake, batch.flush_at)
        return wake

    def _check_deadlines(self, now: int) -> None:
        tiers = self.settings.escalation
        for overdue in self.deadlines.due(now):
            receiver = tiers[min(overdue.tier, len(tiers)) - 1] if tiers else None
            stages = self.deadlines.marked(overdue.alert_id)
            stage = overdue.stage
            event = self.book.annotate(
                overdue.alert_id, "overdue", "system", overdue.note(),
                {"overdue": True, "overdue_for": stage, "overdue_stages": stages, "escalation_tier": overdue.tier},
                when=lambda a, stage=stage: a.workflow not in MET[stage], to=receiver)
            if event is None or receiver is None:
                continue
            alert = msgspec.json.decode(event.body)["alert"]
            if alert.get("backfilled"):
                continue
            key = ("escalation", "escalation", (receiver, overdue.tier, overdue.note()))
            batch = self._batches.get(key)
            if batch is None:
                batch = self._batches[key] = _Batch("escalation", (receiver,), "escalation", {}, now,
                                                    tier=overdue.tier, note=overdue.note())
            batch.alerts[alert["id"]] = alert
            self._labels.setdefault(alert["id"], self.labeler.labels(alert))

    def _annotate_flapping(self, alert_id: str) -> None:
        spec = self.settings.flapping
        assert spec is not None and self.flaps is not None
        self.book.annotate(alert_id, "flapping", "system",
                           f"{self.flaps.count(alert_id)} changes within {spec.window_s:g} s: notifies once until it "
                           f"settles", {"flapping": True})

    def _unhold(self, now: int) -> None:
        """Alerts muted while firing notify once nothing mutes them any more."""
        if not self._held:
            return
        self._refresh_inhibition()
        for route_name, alert_id in list(self._held):
            alert = self._alerts.get(alert_id)
            route = self.router.by_name.get(route_name)
            if (alert is None or route is None or alert.get("workflow") != "new"
                    or alert.get("condition") != "active"):
                self._held.discard((route_name, alert_id))
                continue
            if self.muted_by(self._labels[alert_id], now) is None:
                self._held.discard((route_name, alert_id))
                self._add(route, "firing", alert, self._labels[alert_id], now)

    def _repeat(self, now: int) -> None:
        for (route_name, alert_id), last in list(self._last_notified.items()):
            route = self.router.by_name.get(route_name)
            alert = self._alerts.get(alert_id)
            if route is None or alert is None:
                del self._last_notified[(route_name, alert_id)]
                continue
            if route.repeat_s is None or now - last < route.repeat_s * 1000:
                continue
            if alert.get("workflow") != "new" or alert.get("condition") != "active":
                continue
            labels = self._labels[alert_id]
            if not route.match.matches(labels):
                continue
            self._last_notified[(route_name, alert_id)] = now  # this repeat's slot is used, sent or held
            self._add(route, "repeat", alert, labels, now)

    def flush(self, now: int) -> None:
        """Send every batch whose group_wait is over."""
        due = [key for key, batch in self._batches.items() if batch.flush_at <= now]
        if not due:
            return
        self._refresh_inhibition()
        for key in due:
            batch = self._batches.pop(key)
            self._send(batch, now)

    def _send(self, batch: _Batch, now: int) -> None:
        kept, held = [], []
        for alert_id, queued in batch.alerts.items():
            alert = self._alerts.get(alert_id)
            if alert is None:
                continue  # closed in the meantime: nobody needs telling any more
            labels = self._labels[alert_id]
            reason = self.muted_by(labels, now)
            if reason is None and batch.kind != "escalation" and self._flapping(alert_id):
                reason = "flapping: already notified, holding back until it settles"
            if reason is not None:
                held.append((alert_id, reason))
                if batch.kind == "firing" and not reason.startswith("flapping"):
                    self._held.add((batch.route, alert_id))
                continue
            if batch.kind == "resolved" and alert.get("condition") == "active":
                continue  # active again before the resolved notice went out
            kept.append(queued if batch.kind == "escalation" else alert)
        self._record_held(batch, held, now)
        if not kept:
            return
        alerts = most_severe_first(kept)
        for receiver in batch.receivers:
            notification = Notification(receiver, batch.route, batch.kind, batch.group, alerts, batch.tier, batch.note)
            try:
                self.outbox.submit(notification)
            except Exception:
                log.exception("could not queue a notification to %s", receiver)
        for alert in alerts:
            self._notified.add(alert["id"])
            if batch.kind in ("firing", "repeat"):
                self._last_notified[(batch.route, alert["id"])] = now

    def _flapping(self, alert_id: str) -> bool:
        return self.flaps is not None and self.flaps.is_flapping(alert_id) and alert_id in self._notified

    def muted_by(self, labels: Mapping[str, str], now: int) -> str | None:
        """The first muter's reason to hold back an alert's notifications (silences, then inhibition)."""
        for muter in self.muters:
            reason = muter.muted_by(labels, now)
            if reason is not None:
                return reason
        return None

    def _refresh_inhibition(self) -> None:
        if self._inhibition_stale:
            self.inhibitor.update(self._labels[a] for a in self._alerts)
            self._inhibition_stale = False

    def _record_held(self, batch: _Batch, held: list[tuple[str, str]], now: int) -> None:
        if not held:
            return
        if self.metrics is not None:
            for _, reason in held:
                self.metrics.notifications_suppressed.labels(reason.split(" ", 1)[0].rstrip(":")).inc()
        if self.audit is not None:
            self.audit.extend(Record(now, "system", "notification.suppressed", alert_id,
                                     {"route": batch.route, "kind": batch.kind, "receivers": list(batch.receivers),
                                      "reason": reason}) for alert_id, reason in held)

    # -- the thread -------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            now = self.clock()
            timeout = max(0.0, min(TICK_MS, self.next_wake(now) - now) / 1000)
            try:
                seq, event, body, transition = self._inbox.get(timeout=timeout)
                self.handle(seq, event, body, transition)
                self.drain()
            except queue.Empty:
                pass
            except Exception:
                log.exception("alert event could not be dispatched; continuing")
            try:
                now = self.clock()
                if now - self._last_tick >= TICK_MS:
                    self.tick(now)
                else:
                    self.flush(now)
            except Exception:
                log.exception("dispatcher timer failed; continuing")

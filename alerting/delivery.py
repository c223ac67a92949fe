"""Delivery: the outbox of notifications and one worker per receiver.

Every notification is written to the `notifications` table before anything is sent, one
row per target (an apprise receiver with two URLs has two), and retried with exponential
backoff (`alerting.retry`) until it is accepted or given up. Each receiver has its own
worker thread and queue, and every send has a timeout, so a dead receiver only delays its
own messages, never another receiver's, and never the pipeline. Rows still pending at a
restart are resumed. Every attempt is counted in /metrics and appended to the audit trail.
"""

from __future__ import annotations

import heapq
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from alerting.audit import AuditLog, Record
from alerting.messages import Notification
from alerting.notifiers import DeliveryError, Target, targets_of
from alerting.store import open_database
from lifeline.alerting_config import ReceiverSpec, RetrySpec

log = logging.getLogger("lifeline.notify")

SCHEMA = """
CREATE TABLE IF NOT EXISTS notifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at INTEGER NOT NULL,
    receiver TEXT NOT NULL, target INTEGER NOT NULL, target_name TEXT NOT NULL,
    route TEXT NOT NULL, kind TEXT NOT NULL, alert_ids TEXT NOT NULL,
    title TEXT NOT NULL, body TEXT NOT NULL, payload TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL, next_attempt_at INTEGER, last_error TEXT,
    updated_at INTEGER NOT NULL, sent_at INTEGER
);
CREATE INDEX IF NOT EXISTS notifications_pending ON notifications (status);
CREATE INDEX IF NOT EXISTS notifications_created ON notifications (created_at);
"""

STATUSES = ("pending", "sent", "failed")
_COLUMNS = ("id, created_at, receiver, target, target_name, route, kind, alert_ids, title, status, attempts, "
            "next_attempt_at, last_error, updated_at, sent_at")


@dataclass(order=True)
class Delivery:
    """One notification to one target, as its worker holds it."""

    next_at: int
    id: int
    target: int = field(compare=False)
    created_at: int = field(compare=False)
    attempts: int = field(compare=False)
    title: str = field(compare=False)
    body: str = field(compare=False)
    payload: bytes = field(compare=False)
    alert_ids: list = field(compare=False)


class ReceiverWorker:
    """Sends one receiver's deliveries in order of their due time, on its own thread."""

    def __init__(self, name: str, targets: list[Target], outbox: Outbox):
        self.name = name
        self.targets = targets
        self.outbox = outbox
        self._queue: list[Delivery] = []
        self._cond = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None

    def put(self, delivery: Delivery) -> None:
        with self._cond:
            heapq.heappush(self._queue, delivery)
            self._cond.notify()
        self.outbox.pending_changed(self.name, len(self._queue))

    def __len__(self) -> int:
        return len(self._queue)

    def run_due(self, now: int) -> bool:
        """Attempt the earliest delivery if it is due; False when nothing was due."""
        with self._cond:
            if not self._queue or self._queue[0].next_at > now:
                return False
            delivery = heapq.heappop(self._queue)
        again = self.outbox.attempt(self, delivery)
        if again is not None:
            with self._cond:
                heapq.heappush(self._queue, again)
        self.outbox.pending_changed(self.name, len(self._queue))
        return True

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"notify-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                wait = 0.5
                if self._queue:
                    wait = min(wait, max(0.0, (self._queue[0].next_at - self.outbox.clock()) / 1000))
                if wait > 0:
                    self._cond.wait(wait)
                if self._stop:
                    return
            try:
                while self.run_due(self.outbox.clock()):
                    if self._stop:
                        return
            except Exception:  # a bug must not silence the receiver for good
                log.exception("notification worker %s", self.name)


class Outbox:
    """Notifications waiting, sent and failed; `submit` never blocks on a receiver."""

    def __init__(self, path: Path, receivers: Iterable[ReceiverSpec], retry: RetrySpec, clock: Callable[[], int],
                 audit: AuditLog | None = None, metrics=None,
                 publish: Callable[[str, bytes, int], None] | None = None):
        self.clock = clock
        self.retry = retry
        self.audit = audit
        self.metrics = metrics
        self._db = open_database(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self.workers = {r.name: ReceiverWorker(r.name, targets_of(r, publish), self) for r in receivers}
        self._resume()

    # -- producing --------------------------------------------------------------------------------
    def submit(self, notification: Notification) -> list[int]:
        """Persist a notification for each target of its receiver and queue it; returns the ids."""
        worker = self.workers[notification.receiver]
        now = self.clock()
        ids = []
        for index, target in enumerate(worker.targets):
            with self._lock:
                cursor = self._db.execute(
                    "INSERT INTO notifications (created_at, receiver, target, target_name, route, kind, alert_ids, "
                    "title, body, payload, status, attempts, next_attempt_at, updated_at) "
                    "VALUES (?,?,?,?,?,?,?,?,?,'',?,0,?,?)",
                    (now, notification.receiver, index, target.description, notification.route, notification.kind,
                     msgspec.json.encode(notification.alert_ids).decode(), notification.title, notification.body,
                     "pending", now, now))
                notification_id = int(cursor.lastrowid)
                payload = msgspec.json.encode(notification.payload(notification_id, now))
                self._db.execute("UPDATE notifications SET payload = ? WHERE id = ?", (payload.decode(), notification_id))
            ids.append(notification_id)
            worker.put(Delivery(now, notification_id, index, now, 0, notification.title, notification.body, payload,
                                notification.alert_ids))
        return ids

    def _resume(self) -> None:
        """Queue what was still pending when the service stopped."""
        with self._lock:
            rows = self._db.execute("SELECT id, receiver, target, created_at, attempts, next_attempt_at, title, body, "
                                    "payload, alert_ids FROM notifications WHERE status = 'pending' ORDER BY id"
                                    ).fetchall()
        for nid, receiver, target, created, attempts, next_at, title, body, payload, alert_ids in rows:
            worker = self.workers.get(receiver)
            if worker is None or target >= len(worker.targets):
                self._finish(nid, "failed", "receiver no longer configured", attempts)
                continue
            worker.put(Delivery(next_at or created, nid, target, created, attempts, title, body, payload.encode(),
                                msgspec.json.decode(alert_ids)))

    # -- delivering (worker threads) --------------------------------------------------------------
    def attempt(self, worker: ReceiverWorker, delivery: Delivery) -> Delivery | None:
        """Send once; returns the delivery to retry later, or None when it is done."""
        target = worker.targets[delivery.target]
        attempts = delivery.attempts + 1
        try:
            target.send(delivery.title, delivery.body, delivery.payload)
        except DeliveryError as exc:
            error = str(exc)
        except Exception as exc:  # a notifier bug is a failed delivery, not a dead worker
            log.exception("notifier %s", worker.name)
            error = f"{type(exc).__name__}: {exc}"
        else:
            now = self.clock()
            self._finish(delivery.id, "sent", None, attempts, sent_at=now)
            self._record(worker.name, "sent", delivery, target.description, attempts, None, now)
            return None
        now = self.clock()
        if now - delivery.created_at >= self.retry.give_up_s * 1000:
            self._finish(delivery.id, "failed", error, attempts)
            self._record(worker.name, "given_up", delivery, target.description, attempts, error, now)
            log.warning("notification %d to %s given up after %d attempts: %s", delivery.id, worker.name, attempts,
                        error)
            return None
        backoff_s = min(self.retry.max_s, self.retry.initial_s * 2 ** (attempts - 1))
        next_at = now + int(backoff_s * 1000)
        with self._lock:
            self._db.execute("UPDATE notifications SET attempts = ?, last_error = ?, next_attempt_at = ?, "
                             "updated_at = ? WHERE id = ?", (attempts, error, next_at, now, delivery.id))
        self._record(worker.name, "failed", delivery, target.description, attempts, error, now, next_at)
        delivery.attempts = attempts
        delivery.next_at = next_at
        return delivery

    def _finish(self, notification_id: int, status: str, error: str | None, attempts: int,
                sent_at: int | None = None) -> None:
        with self._lock:
            self._db.execute("UPDATE notifications SET status = ?, last_error = COALESCE(?, last_error), "
                             "attempts = ?, next_attempt_at = NULL, updated_at = ?, sent_at = ? WHERE id = ?",
                             (status, error, attempts, self.clock(), sent_at, notification_id))

    def _record(self, receiver: str, outcome: str, delivery: Delivery, target: str, attempts: int,
                error: str | None, now: int, next_at: int | None = None) -> None:
        if self.metrics is not None:
            self.metrics.notifications.labels(receiver, outcome).inc()
        if self.audit is not None:
            detail = {"receiver": receiver, "target": target, "alerts": delivery.alert_ids, "attempt": attempts}
            if error is not None:
                detail["error"] = error
            if next_at is not None:
                detail["retry_at"] = next_at
            self.audit.extend([Record(now, "system", f"notification.{outcome}", str(delivery.id), detail)])

    def pending_changed(self, receiver: str, pending: int) -> None:
        if self.metrics is not None:
            self.metrics.notifications_pending.labels(receiver).set(pending)

    # -- running ----------------------------------------------------------------------------------
    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def run_due(self, now: int | None = None) -> int:
        """Attempt every due delivery inline (tests, or a single-threaded caller); returns how many."""
        done = 0
        for worker in self.workers.values():
            while worker.run_due(self.clock() if now is None else now):
                done += 1
        return done

    # -- reading ----------------------------------------------------------------------------------
    def list(self, *, status: str | None = None, receiver: str | None = None, alert: str | None = None,
             since: int | None = None, limit: int = 100) -> list[dict]:
        """Notifications, newest first."""
        sql = f"SELECT {_COLUMNS} FROM notifications"
        where, args = [], []
        for column, value in (("status", status), ("receiver", receiver)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if alert is not None:
            where.append("instr(alert_ids, ?) > 0")
            args.append(msgspec.json.encode(alert).decode())
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        names = [c.strip() for c in _COLUMNS.split(",")]
        out = []
        for row in rows:
            item = dict(zip(names, row, strict=True))
            item["alerts"] = msgspec.json.decode(item.pop("alert_ids"))
            item["target"] = item.pop("target_name")
            out.append(item)
        return out

    def counts(self) -> dict[str, dict[str, int]]:
        """Per receiver: how many notifications are pending, sent, failed."""
        with self._lock:
            rows = self._db.execute("SELECT receiver, status, COUNT(*) FROM notifications GROUP BY receiver, status"
                                    ).fetchall()
        out: dict[str, dict[str, int]] = {}
        for receiver, status, count in rows:
            out.setdefault(receiver, dict.fromkeys(STATUSES, 0))[status] = count
        return out

    def last_notified(self, since: int) -> Mapping[tuple[str, str], int]:
        """(route, alert id) -> the last time a firing or repeat notification about it was
        created, since `since`: what repeats (and resolved notices) continue from after a restart."""
        with self._lock:
            rows = self._db.execute("SELECT route, alert_ids, MAX(created_at) FROM notifications "
                                    "WHERE kind IN ('firing', 'repeat') AND created_at >= ? GROUP BY route, alert_ids",
                                    (since,)).fetchall()
        last: dict[tuple[str, str], int] = {}
        for route, alert_ids, at in rows:
            for alert_id in msgspec.json.decode(alert_ids):
                key = (route, alert_id)
                last[key] = max(last.get(key, 0), at)
        return last

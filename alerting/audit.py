"""The audit trail: who did what, when, to which alert, silence or notification.

Alert transitions (detector changes, operator actions, overdue and flapping marks) are
already recorded, append-only, by the alert store; everything else that matters for
accountability (silences created and expired, every notification attempt and every
notification that was suppressed) is appended here. Reading the trail merges both, so
`GET /api/audit` is the whole story. The table refuses UPDATE and DELETE: records are
append-only.
"""

from __future__ import annotations

import csv
import io
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import msgspec

from alerting.store import open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"""

CSV_COLUMNS = ("at", "time", "actor", "action", "target", "detail")


@dataclass(frozen=True)
class Record:
    """One entry of the trail; `at` is wall-clock epoch ms."""

    at: int
    actor: str
    action: str  # alert.<event>, silence.created, silence.expired, notification.sent|failed|given_up|suppressed
    target: str  # alert id, silence id or notification id
    detail: dict

    def to_json(self) -> dict:
        return {"at": self.at, "actor": self.actor, "action": self.action, "target": self.target,
                "detail": self.detail}


class AuditLog:
    """Appends records and reads the merged trail; safe to call from several threads."""

    def __init__(self, path: Path, clock: Callable[[], int]):
        self.clock = clock
        self._db = open_database(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def append(self, actor: str, action: str, target: str, detail: dict | None = None,
               at: int | None = None) -> None:
        self.extend([Record(self.clock() if at is None else at, actor, action, target, detail or {})])

    def extend(self, records: Iterable[Record]) -> None:
        rows = [(r.at, r.actor, r.action, r.target, msgspec.json.encode(r.detail).decode()) for r in records]
        if not rows:
            return
        with self._lock:
            self._db.executemany("INSERT INTO audit (at, actor, action, target, detail) VALUES (?,?,?,?,?)", rows)

    def records(self, *, since: int | None = None, until: int | None = None, action: str | None = None,
                actor: str | None = None, target: str | None = None, limit: int = 1000,
                newest_first: bool = True) -> list[Record]:
        """The merged trail (alert transitions and this log) filtered by time (inclusive),
        action (an exact name, or a prefix ending in '.': `alert.`, `notification.`), actor
        and target."""
        where, args = [], []
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        if until is not None:
            where.append("at <= ?")
            args.append(until)
        if action:
            if action.endswith("."):
                where.append("substr(action, 1, ?) = ?")
                args += [len(action), action]
            else:
                where.append("action = ?")
                args.append(action)
        if actor:
            where.append("actor = ?")
            args.append(actor)
        if target:
            where.append("target = ?")
            args.append(target)
        condition = (" WHERE " + " AND ".join(where)) if where else ""
        order = "DESC" if newest_first else "ASC"
        # Transitions become records on the fly: one source of truth for alert history.
        sql = (
            "SELECT at, actor, action, target, detail, kind, ord FROM ("
            "  SELECT at, by AS actor, 'alert.' || event AS action, alert_id AS target,"
            "         json_object('seq', seq, 'level', level, 'value', value, 'note', note, 'to', to_whom) AS detail,"
            "         0 AS kind, seq AS ord FROM transitions"
            "  UNION ALL"
            "  SELECT at, actor, action, target, detail, 1 AS kind, id AS ord FROM audit"
            f"){condition} ORDER BY at {order}, kind {order}, ord {order} LIMIT ?")
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        records = []
        for at, who, what, target_id, detail, _kind, _ord in rows:
            body = msgspec.json.decode(detail) if detail else {}
            if isinstance(body, dict) and body.get("to") is None:
                body.pop("to", None)
            records.append(Record(at, who, what, target_id, body))
        return records


def to_csv(records: Iterable[Record]) -> str:
    """CSV with a header; `time` is ISO 8601 UTC beside the epoch-ms `at`; detail as JSON."""
    from datetime import UTC, datetime

    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in records:
        time_text = datetime.fromtimestamp(r.at / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        writer.writerow((r.at, time_text, r.actor, r.action, r.target, msgspec.json.encode(r.detail).decode()))
    return out.getvalue()

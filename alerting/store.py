"""Durable alerts and their transitions in SQLite (WAL).

Every transition is written with the alert as it was after the transition, in the same
transaction as the alert row, so a restart finds each alert and its whole history, and the
websocket can replay exactly the events a client missed.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

import msgspec

from alerting.alert import Alert, Transition

_ALERT_FIELDS = {f.name for f in fields(Alert)}

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    rule TEXT NOT NULL, sensor TEXT NOT NULL, metric TEXT NOT NULL,
    domain TEXT NOT NULL, level TEXT NOT NULL, owner TEXT NOT NULL,
    is_open INTEGER NOT NULL, raised_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_open ON alerts (is_open, raised_at);
CREATE TABLE IF NOT EXISTS transitions (
    seq INTEGER PRIMARY KEY,
    alert_id TEXT NOT NULL, event TEXT NOT NULL, at INTEGER NOT NULL,
    by TEXT NOT NULL, note TEXT NOT NULL, level TEXT NOT NULL, value REAL,
    to_whom TEXT,
    alert TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS transitions_alert ON transitions (alert_id, seq);
CREATE INDEX IF NOT EXISTS transitions_at ON transitions (at);
"""


@dataclass(frozen=True)
class Change:
    """A transition and the alert as it was right after it (JSON)."""

    alert: Alert
    transition: Transition
    body: bytes


def alert_from_json(body: dict) -> Alert:
    known = {k: v for k, v in body.items() if k in _ALERT_FIELDS}
    extra = {k: v for k, v in body.items() if k not in _ALERT_FIELDS}
    return Alert(**known, extra=extra)


def open_database(path: Path, page_size: int | None = None) -> sqlite3.Connection:
    """A connection with the settings every Lifeline SQLite file uses. `page_size` applies to
    a file created by this call; an existing file keeps its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=30)
    if page_size:
        connection.execute(f"PRAGMA page_size={int(page_size)}")  # before WAL fixes it
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


class AlertStore:
    """Alerts and transitions; safe to call from several threads."""

    def __init__(self, path: Path):
        self._db = open_database(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def record(self, changes: Iterable[Change]) -> None:
        """Persist transitions and the alerts after them, all or nothing."""
        alert_rows = {}
        transition_rows = []
        for change in changes:
            alert, transition, body = change.alert, change.transition, change.body.decode()
            alert_rows[alert.id] = (alert.id, alert.rule, alert.sensor, alert.metric, alert.domain, alert.level,
                                    alert.owner, int(alert.is_open), alert.raised_at, alert.updated_at, body)
            transition_rows.append((transition.seq, alert.id, transition.event, transition.at, transition.by,
                                    transition.note, transition.level, transition.value, transition.to, body))
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT OR REPLACE INTO alerts VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                                     alert_rows.values())
                self._db.executemany("INSERT INTO transitions VALUES (?,?,?,?,?,?,?,?,?,?)", transition_rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def _query(self, sql: str, args: tuple = ()) -> list[tuple]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def open_alerts(self) -> list[Alert]:
        rows = self._query("SELECT body FROM alerts WHERE is_open = 1 ORDER BY raised_at")
        return [alert_from_json(msgspec.json.decode(body)) for (body,) in rows]

    def alert(self, alert_id: str) -> Alert | None:
        rows = self._query("SELECT body FROM alerts WHERE id = ?", (alert_id,))
        return alert_from_json(msgspec.json.decode(rows[0][0])) if rows else None

    def alerts(self, *, is_open: bool, domain: str | None = None, level: str | None = None,
               owner: str | None = None, since: int | None = None, limit: int = 1000) -> list[dict]:
        """Alert objects, newest first."""
        sql = "SELECT body FROM alerts WHERE is_open = ?"
        args: list = [int(is_open)]
        for column, value in (("domain", domain), ("level", level), ("owner", owner)):
            if value is not None:
                sql += f" AND {column} = ?"
                args.append(value)
        if since is not None:
            sql += " AND updated_at >= ?"
            args.append(since)
        sql += " ORDER BY raised_at DESC, id DESC LIMIT ?"
        args.append(limit)
        return [msgspec.json.decode(body) for (body,) in self._query(sql, tuple(args))]

    def history(self, alert_id: str) -> list[Transition]:
        rows = self._query("SELECT seq, alert_id, event, at, by, note, level, value, to_whom FROM transitions "
                           "WHERE alert_id = ? ORDER BY seq", (alert_id,))
        return [Transition(*row) for row in rows]

    def transition(self, seq: int) -> Transition | None:
        """The transition numbered `seq` (the primary key: one lookup, whatever the history)."""
        rows = self._query("SELECT seq, alert_id, event, at, by, note, level, value, to_whom FROM transitions "
                           "WHERE seq = ?", (seq,))
        return Transition(*rows[0]) if rows else None

    def events_after(self, seq: int, limit: int = 10_000) -> list[tuple[int, str, str]]:
        """(seq, event, alert json) of transitions after `seq`, oldest first."""
        return self._query("SELECT seq, event, alert FROM transitions WHERE seq > ? ORDER BY seq LIMIT ?",
                           (seq, limit))

    def seq_range(self) -> tuple[int, int]:
        """(first, last) retained transition seq; (0, 0) when there are none."""
        first, last = self._query("SELECT MIN(seq), MAX(seq) FROM transitions")[0]
        return (first or 0, last or 0)

    def last_alert_number(self) -> int:
        rows = self._query("SELECT MAX(CAST(SUBSTR(id, 3) AS INTEGER)) FROM alerts")
        return rows[0][0] or 0

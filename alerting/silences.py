"""Silences (maintenance windows): a Silence mutes the notifications of every alert its
matchers match between `starts_at` and `ends_at` (wall clock).

A silenced alert is still recorded, listed and shown; only nobody is told about it. A
silence stops applying by itself at `ends_at`; expiring it early (the API's DELETE) sets
`ends_at` to now, so the record stays. Silences live in the service's SQLite database and
survive restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import msgspec

from alerting.audit import AuditLog
from alerting.labels import Matchers, matchers_from
from alerting.store import open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS silences (
    id TEXT PRIMARY KEY,
    matchers TEXT NOT NULL,
    starts_at INTEGER NOT NULL, ends_at INTEGER NOT NULL,
    reason TEXT NOT NULL, created_by TEXT NOT NULL, created_at INTEGER NOT NULL,
    expired_by TEXT, expired_at INTEGER
);
"""

MAX_DURATION_MS = 366 * 86_400_000  # a maintenance window, not a way to switch alerting off


class SilenceError(ValueError):
    """A silence that cannot be created as asked (HTTP 400)."""


class UnknownSilence(KeyError):
    pass


@dataclass(frozen=True)
class Silence:
    id: str
    matchers: Matchers
    starts_at: int  # wall-clock epoch ms
    ends_at: int
    reason: str
    created_by: str
    created_at: int
    expired_by: str | None = None  # who ended it early, if anyone
    expired_at: int | None = None

    def status(self, now: int) -> str:
        """pending before it starts, active while it applies, expired after."""
        if now < self.starts_at:
            return "pending"
        return "active" if now < self.ends_at else "expired"

    def to_json(self, now: int) -> dict:
        body = {"id": self.id, "matchers": self.matchers.to_json(), "starts_at": self.starts_at,
                "ends_at": self.ends_at, "reason": self.reason, "created_by": self.created_by,
                "created_at": self.created_at, "status": self.status(now)}
        if self.expired_by is not None:
            body["expired_by"] = self.expired_by
            body["expired_at"] = self.expired_at
        return body


class Silences:
    """The silences and the question the dispatcher asks of them: is this alert muted?"""

    def __init__(self, path: Path, clock: Callable[[], int], audit: AuditLog | None = None):
        self.clock = clock
        self.audit = audit
        self._db = open_database(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self._live: dict[str, Silence] = {}  # not yet expired: the only ones that can mute
        self._number = 0
        self._reload()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _reload(self) -> None:
        now = self.clock()
        with self._lock:
            rows = self._db.execute("SELECT id, matchers, starts_at, ends_at, reason, created_by, created_at, "
                                    "expired_by, expired_at FROM silences WHERE ends_at > ?", (now,)).fetchall()
            self._live = {row[0]: _from_row(row) for row in rows}
            last = self._db.execute("SELECT MAX(CAST(SUBSTR(id, 3) AS INTEGER)) FROM silences").fetchone()[0]
            self._number = last or 0

    # -- the Muter seam ---------------------------------------------------------------------------
    def muted_by(self, labels: Mapping[str, str], now: int) -> str | None:
        """`silenced by <id>` for an active silence matching `labels`, or None."""
        for silence in list(self._live.values()):
            if silence.starts_at <= now < silence.ends_at and silence.matchers.matches(labels):
                return f"silenced by {silence.id}"
        return None

    # -- operators' side -------------------------------------------------------------------------
    def create(self, matchers: dict, starts_at: int | None, ends_at: int, reason: str, created_by: str) -> Silence:
        now = self.clock()
        try:
            parsed = matchers_from(matchers)
        except ValueError as exc:
            raise SilenceError(f"matchers: {exc}") from None
        if not parsed.matchers:
            raise SilenceError("matchers: at least one matcher is needed (a silence of everything is refused)")
        starts = now if starts_at is None else int(starts_at)
        if ends_at <= starts:
            raise SilenceError("ends_at must be after starts_at")
        if ends_at <= now:
            raise SilenceError("ends_at is in the past")
        if ends_at - starts > MAX_DURATION_MS:
            raise SilenceError("a silence may last at most 366 days")
        if not reason.strip() or not created_by.strip():
            raise SilenceError("reason and created_by are required")
        with self._lock:
            self._number += 1
            silence = Silence(f"s-{self._number:06d}", parsed, starts, int(ends_at), reason, created_by, now)
            self._db.execute("INSERT INTO silences VALUES (?,?,?,?,?,?,?,?,?)",
                             (silence.id, msgspec.json.encode(parsed.to_json()).decode(), silence.starts_at,
                              silence.ends_at, reason, created_by, now, None, None))
            self._live[silence.id] = silence
        if self.audit is not None:
            self.audit.append(created_by, "silence.created", silence.id, silence.to_json(now), at=now)
        return silence

    def expire(self, silence_id: str, by: str) -> Silence:
        """End a silence now; one that already ended is returned unchanged."""
        now = self.clock()
        silence = self.get(silence_id)
        if silence.ends_at <= now:
            return silence
        ended = replace(silence, ends_at=max(now, silence.starts_at), expired_by=by, expired_at=now)
        with self._lock:
            self._db.execute("UPDATE silences SET ends_at = ?, expired_by = ?, expired_at = ? WHERE id = ?",
                             (ended.ends_at, by, now, silence_id))
            self._live.pop(silence_id, None)
        if self.audit is not None:
            self.audit.append(by, "silence.expired", silence_id, ended.to_json(now), at=now)
        return ended

    def get(self, silence_id: str) -> Silence:
        with self._lock:
            row = self._db.execute("SELECT id, matchers, starts_at, ends_at, reason, created_by, created_at, "
                                   "expired_by, expired_at FROM silences WHERE id = ?", (silence_id,)).fetchone()
        if row is None:
            raise UnknownSilence(silence_id)
        return _from_row(row)

    def list(self, status: str | None = None, limit: int = 1000) -> list[Silence]:
        """Newest first; `status` one of pending, active, expired (None: all)."""
        now = self.clock()
        sql = ("SELECT id, matchers, starts_at, ends_at, reason, created_by, created_at, expired_by, expired_at "
               "FROM silences")
        args: tuple = ()
        if status == "expired":
            sql += " WHERE ends_at <= ?"
            args = (now,)
        elif status == "active":
            sql += " WHERE starts_at <= ? AND ends_at > ?"
            args = (now, now)
        elif status == "pending":
            sql += " WHERE starts_at > ?"
            args = (now,)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(sql, (*args, limit)).fetchall()
        return [_from_row(row) for row in rows]

    def prune(self, now: int) -> None:
        """Forget expired silences in memory (they stay in the database)."""
        with self._lock:
            for silence_id in [s.id for s in self._live.values() if s.ends_at <= now]:
                del self._live[silence_id]


def _from_row(row: tuple) -> Silence:
    silence_id, matchers, starts_at, ends_at, reason, created_by, created_at, expired_by, expired_at = row
    return Silence(silence_id, matchers_from(msgspec.json.decode(matchers)), starts_at, ends_at, reason, created_by,
                   created_at, expired_by, expired_at)

"""The dead-letter store: every rejected message part with its reason and raw payload."""

from __future__ import annotations

import threading
from pathlib import Path

from alerting.store import open_database
from ingest.rejection import DEAD_LETTER_PAYLOAD_BYTES, Rejection

SCHEMA = """
CREATE TABLE IF NOT EXISTS rejections (
    id INTEGER PRIMARY KEY,
    received_at INTEGER NOT NULL,
    gateway TEXT NOT NULL,
    sensor TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_gateway ON rejections (gateway, id);
"""


class DeadLetters:
    """Bounded store of rejections; the oldest entries go once `capacity` is exceeded."""

    def __init__(self, path: Path, capacity: int = 100_000):
        self._db = open_database(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self.capacity = capacity
        self._since_prune = 0

    def add(self, entries: list[tuple[Rejection, bytes]]) -> None:
        """Store rejections with the payload they came in (truncated to 64 KiB)."""
        if not entries:
            return
        rows = [(r.received_ms, r.gateway, r.sensor, r.reason, r.detail, payload[:DEAD_LETTER_PAYLOAD_BYTES])
                for r, payload in entries]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.executemany("INSERT INTO rejections (received_at, gateway, sensor, reason, detail, "
                                     "payload) VALUES (?,?,?,?,?,?)", rows)
            except Exception:
                self._db.execute("ROLLBACK")  # an open transaction would refuse every later BEGIN
                raise
            self._since_prune += len(rows)
            if self._since_prune > self.capacity // 10:
                self._since_prune = 0
                self._db.execute("DELETE FROM rejections WHERE id <= (SELECT MAX(id) FROM rejections) - ?",
                                 (self.capacity,))
            self._db.execute("COMMIT")

    def latest(self, gateway: str | None = None, gateways: set[str] | None = None, limit: int = 100) -> list[dict]:
        """Newest first; `gateways` restricts to a set (an integrator's own)."""
        sql = "SELECT id, received_at, gateway, sensor, reason, detail, payload FROM rejections"
        clauses, args = [], []
        if gateway is not None:
            clauses.append("gateway = ?")
            args.append(gateway)
        if gateways is not None:
            clauses.append(f"gateway IN ({','.join('?' * len(gateways))})" if gateways else "0")
            args.extend(sorted(gateways))
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [{"id": row[0], "received_at": row[1], "gateway": row[2], "sensor": row[3], "reason": row[4],
                 "detail": row[5], "payload": bytes(row[6]).decode("utf-8", "replace")} for row in rows]

    def close(self) -> None:
        with self._lock:
            self._db.close()

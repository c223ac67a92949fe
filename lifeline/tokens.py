"""API tokens: created once, shown once, stored only as a hash.

The store is a table in the service's SQLite database, so `lifeline tokens create` from
another process is accepted by a running service at once.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from alerting.store import open_database

ROLES = ("viewer", "operator", "admin", "integrator")

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    hash TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    owner TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
"""


@dataclass(frozen=True)
class Principal:
    """Who a request acts as."""

    role: str
    owner: str  # for integrators: the gateway owner whose data it may read

    def can(self, role: str) -> bool:
        """True when this principal has at least the rights of `role`."""
        if self.role == "integrator":
            return role in ("integrator",)
        order = ("viewer", "operator", "admin")
        return role in order and order.index(self.role) >= order.index(role)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenStore:
    def __init__(self, path: Path):
        self._db = open_database(path)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def create(self, role: str, owner: str = "") -> str:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; one of {', '.join(ROLES)}")
        if role == "integrator" and not owner:
            raise ValueError("an integrator token needs --owner (the gateway owner it may read)")
        token = "ll_" + secrets.token_urlsafe(24)
        with self._lock:
            self._db.execute("INSERT INTO tokens (hash, role, owner, created_at) VALUES (?,?,?,?)",
                             (_digest(token), role, owner, int(time.time() * 1000)))
        return token

    def lookup(self, token: str) -> Principal | None:
        with self._lock:
            row = self._db.execute("SELECT role, owner FROM tokens WHERE hash = ? AND revoked = 0",
                                   (_digest(token),)).fetchone()
        return Principal(row[0], row[1]) if row else None

    def entries(self) -> list[dict]:
        """Every token without its secret: `id` (first 12 hex digits of its hash), role, owner,
        created_at (epoch ms), revoked; oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT hash, role, owner, created_at, revoked FROM tokens "
                                    "ORDER BY created_at, hash").fetchall()
        return [{"id": h[:12], "role": r, "owner": o, "created_at": c, "revoked": bool(v)}
                for h, r, o, c, v in rows]

    def revoke(self, token_id: str) -> bool:
        """Revoke the one token whose id (or a longer prefix of its hash) is `token_id`; refused
        when it is shorter than 8 hex digits or matches several tokens. The service refuses the
        token from its next request on."""
        token_id = token_id.strip().lower()
        if len(token_id) < 8 or any(c not in "0123456789abcdef" for c in token_id):
            raise ValueError("a token id is at least 8 hex digits (see `lifeline tokens list`)")
        with self._lock:
            matches = self._db.execute("SELECT hash FROM tokens WHERE hash LIKE ? AND revoked = 0",
                                       (token_id + "%",)).fetchall()
            if len(matches) > 1:
                raise ValueError(f"{token_id} matches {len(matches)} tokens; give more digits")
            if matches:
                self._db.execute("UPDATE tokens SET revoked = 1 WHERE hash = ?", (matches[0][0],))
        return bool(matches)

    def close(self) -> None:
        with self._lock:
            self._db.close()

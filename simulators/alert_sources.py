"""Where `lifeline score` reads alerts and ground truth: files or a running service.

* A file of alerts: a JSON list of alert objects (what GET /api/alerts returns) or of websocket
  messages, or JSON lines of either (what a websocket client logs). Websocket events give exact
  level times; alert objects only raised_at and the peak level.
* A service URL (http://host:port): GET /api/alerts?open=true and ?open=false (closed ones,
  including alerts raised and cleared within backfilled readings), with `Authorization: Bearer`;
  then the websocket event log from the start (`/ws/alerts?since=0`) up to the sequence number
  /healthz reports, for exact level times. When the websocket is not reachable the alert
  objects alone are scored (level times approximate).
"""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from simulators.scoring import Activation, activations_from_alerts, activations_from_events

API_LIMIT = 10_000  # GET /api/alerts returns at most this many per call
WS_TIMEOUT_S = 10.0


class SourceError(Exception):
    """Alerts or truth could not be read (one clear line for the CLI)."""


def _read_text(path: Path) -> str:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rt", encoding="utf-8") as handle:
                return handle.read()
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read {path}: {exc.strerror or exc}") from None


def _json_records(text: str, where: str) -> list[dict[str, Any]]:
    """A JSON list of objects, or JSON lines of objects (blank lines skipped)."""
    stripped = text.strip()
    if not stripped:
        return []
    if stripped.startswith("["):
        try:
            data = json.loads(stripped)
        except ValueError as exc:
            raise SourceError(f"{where}: not valid JSON: {exc}") from None
        return [d for d in data if isinstance(d, dict)]
    records = []
    for number, line in enumerate(stripped.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise SourceError(f"{where}:{number}: not valid JSON: {exc}") from None
        if isinstance(record, dict):
            records.append(record)
    return records


def read_truth_file(path: Path) -> list[dict[str, Any]]:
    return _json_records(_read_text(path), str(path))


def activations_from_records(records: list[dict[str, Any]]) -> list[Activation]:
    """Alert objects and websocket messages, mixed or not, as activations (events win for
    alerts that have them)."""
    messages = [r for r in records if r.get("type") in ("event", "snapshot")]
    with_events = {str(m["alert"].get("id")) for m in messages if m.get("type") == "event" and isinstance(m.get("alert"), dict)}
    objects = [r for r in records if "type" not in r and "raised_at" in r and str(r.get("id")) not in with_events]
    return activations_from_events(messages) + activations_from_alerts(objects)


def _get_json(url: str, token: str | None) -> Any:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace")[:200]
        hint = " (pass --token or set LIFELINE_TOKEN)" if exc.code == 401 else ""
        raise SourceError(f"GET {url}: HTTP {exc.code} {detail}{hint}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SourceError(f"GET {url}: {getattr(exc, 'reason', exc)}") from None


def _event_log(base: str, token: str | None, last_seq: int) -> list[dict[str, Any]] | None:
    """Every websocket event from the start up to `last_seq`; None when it cannot be had."""
    from websockets.sync.client import connect

    parts = urllib.parse.urlsplit(base)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = urllib.parse.urlencode({"since": 0, **({"token": token} if token else {})})
    url = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws/alerts", query, ""))
    messages: list[dict[str, Any]] = []
    try:
        with connect(url, open_timeout=WS_TIMEOUT_S, close_timeout=1, max_size=None) as socket:
            seq = 0
            while seq < last_seq:
                message = json.loads(socket.recv(timeout=WS_TIMEOUT_S))
                if message.get("type") == "snapshot":
                    if message.get("reset"):
                        return None  # the log no longer reaches back to the start
                    seq = max(seq, int(message.get("seq", 0)))
                    messages.append(message)
                elif message.get("type") == "event":
                    seq = int(message["seq"])
                    messages.append(message)
    except Exception:  # any websocket trouble: fall back to the alert objects
        return None
    return messages


def activations_from_service(url: str, token: str | None) -> tuple[list[Activation], dict[str, Any]]:
    """Alerts of a running service; returns (activations, facts about the fetch)."""
    base = url.rstrip("/")
    alerts: list[dict[str, Any]] = []
    for is_open in ("true", "false"):
        page = _get_json(f"{base}/api/alerts?open={is_open}&limit={API_LIMIT}", token)
        if not isinstance(page, list):
            raise SourceError(f"GET {base}/api/alerts: expected a JSON list, got {type(page).__name__}")
        alerts.extend(page)
    facts: dict[str, Any] = {"alerts": len(alerts), "truncated": len(alerts) >= API_LIMIT, "events": None}
    try:
        health = _get_json(f"{base}/healthz", None)
        last_seq = int(health.get("seq", 0))
    except (SourceError, TypeError, ValueError, AttributeError):
        last_seq = 0
    events = _event_log(base, token, last_seq) if last_seq else None
    if events is None:
        return activations_from_alerts(alerts), facts
    facts["events"] = len(events)
    return activations_from_records(events + alerts), facts


def load_activations(source: str, token: str | None = None) -> tuple[list[Activation], dict[str, Any]]:
    """Activations from a file path or a service URL (http:// or https://)."""
    if source.startswith(("http://", "https://")):
        return activations_from_service(source, token)
    records = _json_records(_read_text(Path(source)), source)
    return activations_from_records(records), {"alerts": len(records), "events": None}

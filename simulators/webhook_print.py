"""A local webhook receiver that prints each notification it gets, one line each.

The demo configuration routes red alerts to `http://127.0.0.1:8099/notify` (DEMO_WEBHOOK);
`lifeline up --simulate` starts this printer there, so the demo shows notifications going
out. `lifeline webhook-print --listen HOST:PORT` runs it on its own, for trying routes
with any configuration.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

log = logging.getLogger("lifeline.webhook")

DEMO_HOST, DEMO_PORT = "127.0.0.1", 8099
DEMO_WEBHOOK = f"http://{DEMO_HOST}:{DEMO_PORT}/notify"


def describe(payload: dict) -> str:
    """One line for a notification (the webhook payload of alerting/messages.py)."""
    alerts = payload.get("alerts") or []
    ids = ", ".join(a.get("id", "?") for a in alerts[:5]) + (" ..." if len(alerts) > 5 else "")
    return (f"[{payload.get('kind', '?')}] {payload.get('title', '')} -> {payload.get('receiver', '?')} "
            f"via {payload.get('route', '?')} ({ids})")


class WebhookPrinter:
    def __init__(self, host: str = DEMO_HOST, port: int = DEMO_PORT, out: Callable[[str], None] | None = None):
        self.out = out or (lambda line: print(line, flush=True))
        self.received: list[dict] = []
        printer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(min(length, 8 << 20))
                try:
                    payload = json.loads(raw)
                except ValueError:
                    payload = {"title": raw[:200].decode(errors="replace")}
                printer.received.append(payload)
                printer.out(f"lifeline webhook: {describe(payload)}")
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/notify"
        self._thread: threading.Thread | None = None

    def start(self) -> WebhookPrinter:
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-print", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_demo_printer(webhooks: list[str]) -> WebhookPrinter | None:
    """The printer at DEMO_WEBHOOK when a receiver of the configuration posts there; None
    otherwise, or when the port is taken (then the notifications show as failed)."""
    if not any(url.startswith(f"http://{DEMO_HOST}:{DEMO_PORT}/") for url in webhooks):
        return None
    try:
        printer = WebhookPrinter().start()
    except OSError as exc:
        log.warning("demo webhook printer not started on %s: %s", DEMO_WEBHOOK, exc)
        return None
    print(f"lifeline: printing notifications sent to {DEMO_WEBHOOK}", flush=True)
    return printer

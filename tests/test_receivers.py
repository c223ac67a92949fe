"""Real receivers: an HTTP server taking apprise json:// and plain webhooks, an SMTP server
(aiosmtpd) taking apprise mailto://, and dead receivers that must not hold up the others."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from alerting.audit import AuditLog
from alerting.delivery import Outbox
from alerting.messages import Notification
from alerting.store import AlertStore
from lifeline.alerting_config import ReceiverSpec, RetrySpec
from lifeline.broker import free_port
from lifeline.metrics import Metrics
from tests.service import wait_for

ALERT = {"id": "a-000007", "rule": "ch4", "sensor": "M1", "metric": "ch4", "domain": "gas", "asset": "MH-1",
         "level": "red", "condition": "active", "workflow": "new", "message": "ch4 27 %LEL >= red 25",
         "raised_at": 1_800_000_000_000}


class Hooks:
    """An HTTP server recording every POST; `status` decides the answer."""

    def __init__(self, status: int = 200):
        self.received: list[tuple[str, dict]] = []
        self.status = status
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hooks.received.append((self.path, json.loads(body)))
                self.send_response(hooks.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.messages.append(envelope)
        return "250 OK"


@pytest.fixture
def hooks():
    server = Hooks()
    yield server
    server.close()


@pytest.fixture
def smtp():
    mailbox = Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, mailbox
    controller.stop()


FAST_RETRY = RetrySpec(initial_s=0.1, max_s=0.2, give_up_s=60)


def outbox_for(tmp_path, receivers, retry=FAST_RETRY):
    AlertStore(tmp_path / "lifeline.db").close()  # the audit trail reads the transitions table
    audit = AuditLog(tmp_path / "lifeline.db", lambda: int(time.time() * 1000))
    metrics = Metrics()
    outbox = Outbox(tmp_path / "lifeline.db", receivers, retry, lambda: int(time.time() * 1000), audit, metrics)
    return outbox, audit, metrics


def notify(outbox, receiver: str) -> list[int]:
    return outbox.submit(Notification(receiver, "red", "firing", {"asset": "MH-1"}, (ALERT,)))


def test_apprise_json_webhook_and_email_arrive(tmp_path, hooks, smtp):
    smtp_port, mailbox = smtp
    receivers = [
        ReceiverSpec("chat", urls=(f"json://127.0.0.1:{hooks.port}/apprise",)),
        ReceiverSpec("dispatch-system", webhook=f"http://127.0.0.1:{hooks.port}/hook"),
        ReceiverSpec("duty-mail", urls=(f"mailto://127.0.0.1:{smtp_port}?from=lifeline@example.org"
                                        f"&to=duty@example.org&mode=insecure",)),
    ]
    outbox, audit, metrics = outbox_for(tmp_path, receivers)
    outbox.start()
    try:
        for name in ("chat", "dispatch-system", "duty-mail"):
            notify(outbox, name)
        wait_for(lambda: len(hooks.received) == 2 and mailbox.messages, timeout=15, message="deliveries")
    finally:
        outbox.stop()
    by_path = dict(hooks.received)
    apprise_body = by_path["/apprise"]
    assert apprise_body["title"].startswith("RED I gas MH-1: ch4 27 %LEL >= red 25")
    assert "a-000007" in apprise_body["message"]
    webhook = by_path["/hook"]
    assert webhook["receiver"] == "dispatch-system" and webhook["kind"] == "firing"
    assert webhook["alerts"][0]["id"] == "a-000007" and webhook["group"] == {"asset": "MH-1"}
    mail = mailbox.messages[0]
    assert mail.rcpt_tos == ["duty@example.org"]
    assert b"Subject: RED I gas MH-1" in mail.content
    sent = [r for r in audit.records(action="notification.sent")]
    assert {r.detail["receiver"] for r in sent} == {"chat", "dispatch-system", "duty-mail"}
    assert metrics.notifications.labels("duty-mail", "sent")._value.get() == 1


def test_a_dead_receiver_retries_with_backoff_and_never_blocks_the_others(tmp_path, hooks):
    # One receiver refuses connections, one accepts them and never answers (timeout 1 s).
    closed_port = free_port()
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    receivers = [
        ReceiverSpec("dead", webhook=f"http://127.0.0.1:{closed_port}/hook"),
        ReceiverSpec("hanging", webhook=f"http://127.0.0.1:{silent.getsockname()[1]}/hook", timeout_s=1),
        ReceiverSpec("alive", webhook=f"http://127.0.0.1:{hooks.port}/hook"),
    ]
    outbox, audit, metrics = outbox_for(tmp_path, receivers)
    outbox.start()
    try:
        for _ in range(3):
            notify(outbox, "hanging")
        notify(outbox, "dead")
        started = time.monotonic()
        notify(outbox, "alive")
        wait_for(lambda: hooks.received, timeout=5, message="the live receiver")
        assert time.monotonic() - started < 0.9  # not behind the hanging receiver's timeouts
        wait_for(lambda: outbox.list(receiver="dead")[0]["attempts"] >= 3, timeout=10, message="retries")
    finally:
        outbox.stop()
        silent.close()
    dead = outbox.list(receiver="dead")[0]
    assert dead["status"] == "pending" and "Connection refused" in dead["last_error"]
    assert dead["next_attempt_at"] > dead["updated_at"]
    failed = audit.records(action="notification.failed", target=str(dead["id"]))
    assert len(failed) >= 3 and all("Connection refused" in r.detail["error"] for r in failed)
    assert metrics.notifications.labels("dead", "failed")._value.get() >= 3
    # Backoff doubles: 0.1 s then 0.2 s (the configured maximum) between attempts.
    gaps = [b.at - a.at for a, b in zip(sorted(failed, key=lambda r: r.at), sorted(failed, key=lambda r: r.at)[1:],
                                        strict=False)]
    assert gaps[0] >= 90 and all(g >= 180 for g in gaps[1:])


def test_pending_notifications_resume_after_a_restart_and_give_up_in_the_end(tmp_path, hooks):
    port = free_port()
    receivers = [ReceiverSpec("later", webhook=f"http://127.0.0.1:{port}/hook")]
    outbox, _, _ = outbox_for(tmp_path, receivers, RetrySpec(initial_s=0.05, max_s=0.05, give_up_s=60))
    notify(outbox, "later")
    outbox.run_due()
    assert outbox.list()[0]["status"] == "pending"
    outbox.stop()
    # Back up with the receiver reachable: the pending notification goes out.
    receivers = [ReceiverSpec("later", webhook=f"http://127.0.0.1:{hooks.port}/hook")]
    outbox, _, _ = outbox_for(tmp_path, receivers, RetrySpec(initial_s=0.05, max_s=0.05, give_up_s=60))
    outbox.start()
    try:
        wait_for(lambda: outbox.list()[0]["status"] == "sent", timeout=5, message="resumed delivery")
    finally:
        outbox.stop()
    assert hooks.received[0][1]["alerts"][0]["id"] == "a-000007"
    # A receiver that stays down is given up after give_up_after.
    receivers = [ReceiverSpec("later", webhook=f"http://127.0.0.1:{port}/hook")]
    outbox, audit, _ = outbox_for(tmp_path, receivers, RetrySpec(initial_s=0.05, max_s=0.05, give_up_s=0.2))
    outbox.start()
    try:
        notify(outbox, "later")
        wait_for(lambda: outbox.list()[0]["status"] == "failed", timeout=5, message="given up")
    finally:
        outbox.stop()
    assert audit.records(action="notification.given_up")

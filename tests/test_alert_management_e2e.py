"""Alert management through the real service: MQTT in, webhooks out (an HTTP server of the
test), silences through the API, deadlines and silences across a restart, audit, alarm load."""

from __future__ import annotations

import csv
import io
import json
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import DATA
from tests.service import Gateway, RunningService, now_ms, wait_for


class Hooks:
    def __init__(self):
        self.received: list[tuple[str, dict]] = []
        hooks = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hooks.received.append((self.path, json.loads(body)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def about(self, path: str, sensor: str) -> list[dict]:
        return [p for where, p in self.received if where == path and any(a["sensor"] == sensor for a in p["alerts"])]


@pytest.fixture
def hooks():
    server = Hooks()
    yield server
    server.server.shutdown()
    server.server.server_close()


@pytest.fixture
def managed(broker, hooks, tmp_path):
    config = tmp_path / "alerting.yaml"
    config.write_text((DATA / "alerting.yaml").read_text().replace("HOOK_PORT", str(hooks.port)))
    running = RunningService(config, broker.url, tmp_path / "service").start()
    yield running
    running.stop()


def alert_of(service, sensor: str) -> dict:
    return wait_for(lambda: next((a for a in service.get("/api/alerts") if a["sensor"] == sensor), None),
                    message=f"an alert on {sensor}")


def test_a_flapping_sensor_through_mqtt_notifies_once(managed, broker, hooks):
    gateway = Gateway(broker.url, "gw-a")
    t0 = now_ms() - 30_000
    chatter = [{"ts": t0 + i * 1000, "values": {"ch4": 12.0 if i % 2 == 0 else 1.0}} for i in range(8)]
    gateway.send({"M1": chatter})
    alert = alert_of(managed, "M1")
    wait_for(lambda: hooks.about("/control-room", "M1"), message="the first notification")
    gateway.send({"M1": [{"ts": t0 + 10_000 + i * 1000, "values": {"ch4": 12.0 if i % 2 == 0 else 1.0}}
                         for i in range(6)]})
    held = wait_for(lambda: managed.get(f"/api/audit?action=notification.suppressed&target={alert['id']}"),
                    message="held-back notifications")
    assert all(r["detail"]["reason"].startswith("flapping") for r in held)
    body = managed.get(f"/api/alerts/{alert['id']}")
    assert body["flapping"] is True and "flapping" in [h["event"] for h in body["history"]]
    assert len(hooks.about("/control-room", "M1")) == 1
    sent = managed.get(f"/api/notifications?alert={alert['id']}")
    assert [(n["receiver"], n["status"], n["kind"]) for n in sent] == [("control-room", "sent", "firing")]
    gateway.close()


def test_silences_mute_their_matchers_only_and_survive_a_restart_with_deadlines(managed, broker, hooks):
    status, silence = managed.request("POST", "/api/silences", {
        "matchers": {"asset": "MH-2"}, "duration_s": 600, "reason": "pipe repair", "created_by": "Wang"})
    assert status == 201 and silence["status"] == "active" and silence["matchers"] == {"asset": "MH-2"}
    # Roles: viewers may read silences but not create them; integrators may not even read them.
    status, _ = managed.request("POST", "/api/silences", {"matchers": {"asset": "x"}, "duration_s": 60,
                                                          "reason": "r", "created_by": "c"},
                                token=managed.token("viewer"))
    assert status == 403
    assert managed.request("GET", "/api/silences", token=managed.token("integrator", "Gas Co."))[0] == 403
    assert [s["id"] for s in managed.get("/api/silences?status=active", token=managed.token("viewer"))] == \
        [silence["id"]]
    status, body = managed.request("POST", "/api/silences", {"matchers": {}, "duration_s": 60, "reason": "r",
                                                             "created_by": "c"})
    assert status == 400 and "matcher" in body["error"]

    gas, lift = Gateway(broker.url, "gw-a"), Gateway(broker.url, "gw-b")
    gas.send({"M2": {"ts": now_ms(), "values": {"ch4": 30.0}}})
    lift.send({"L1": {"ts": now_ms(), "values": {"speed": 2.5}}})
    wait_for(lambda: hooks.about("/control-room", "L1"), message="the lift's notification")
    m2 = alert_of(managed, "M2")
    held = wait_for(lambda: managed.get(f"/api/audit?action=notification.suppressed&target={m2['id']}"),
                    message="the silenced alert held back")
    assert held[0]["detail"]["reason"] == f"silenced by {silence['id']}"
    assert hooks.about("/control-room", "M2") == []  # recorded and visible, but told no one
    lift_alert = alert_of(managed, "L1")
    assert "overdue" not in [h["event"] for h in managed.get(f"/api/alerts/{lift_alert['id']}")["history"]]

    # Restart before the red acknowledge deadline (10 s) runs out.
    managed.stop()
    managed.start()
    assert [s["id"] for s in managed.get("/api/silences?status=active")] == [silence["id"]]
    escalation = wait_for(lambda: hooks.about("/duty", "L1"), timeout=20, message="the lift's escalation")
    assert escalation[0]["kind"] == "escalation" and escalation[0]["tier"] == 1
    body = managed.get(f"/api/alerts/{lift_alert['id']}")
    assert body["overdue"] is True and body["overdue_for"] == "acknowledge"
    overdue = [h for h in body["history"] if h["event"] == "overdue"]
    assert len(overdue) == 1 and overdue[0]["to"] == "duty-officer"
    # The silenced alert is overdue too (a fact on record), but its escalation stays silenced.
    wait_for(lambda: managed.get(f"/api/alerts/{m2['id']}").get("overdue"), message="M2 overdue")
    assert hooks.about("/duty", "M2") == []

    # Expiring the silence lets the still unacknowledged alert notify.
    status, ended = managed.request("DELETE", f"/api/silences/{silence['id']}?by=Zhao")
    assert status == 200 and ended["status"] == "expired" and ended["expired_by"] == "Zhao"
    wait_for(lambda: hooks.about("/control-room", "M2"), message="M2 notifies once unsilenced")

    # The audit trail has it all, as JSON and CSV; operators only.
    actions = {r["action"] for r in managed.get("/api/audit?limit=1000")}
    assert {"alert.raised", "alert.overdue", "silence.created", "silence.expired", "notification.sent",
            "notification.suppressed"} <= actions
    assert managed.request("GET", "/api/audit", token=managed.token("viewer"))[0] == 403
    request = urllib.request.Request(f"{managed.url}/api/audit.csv?action=silence.",
                                     headers={"Authorization": f"Bearer {managed.token()}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(response.read().decode())))
    assert [(r["action"], r["actor"], r["target"]) for r in rows] == [
        ("silence.created", "Wang", silence["id"]), ("silence.expired", "Zhao", silence["id"])]

    load = managed.get("/api/alarm-load")
    assert load["rate"]["last_10min"] == 2 and load["open"]["red"] == 2
    with urllib.request.urlopen(f"{managed.url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    assert "lifeline_alarm_rate_10m 2.0" in metrics
    assert 'lifeline_notifications_total{outcome="sent",receiver="duty-officer"} 1.0' in metrics
    assert 'lifeline_alert_events_total{event="overdue",level="red"}' in metrics
    receivers = {r["name"]: r for r in managed.get("/api/receivers")}
    assert receivers["duty-officer"]["sent"] == 1 and receivers["control-room"]["kind"] == "webhook"
    gas.close()
    lift.close()

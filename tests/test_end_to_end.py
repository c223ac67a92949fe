"""The whole path through real parts: gateway -> Mosquitto -> lifeline up -> websocket/REST -> restart."""

from __future__ import annotations

import json
import threading

import paho.mqtt.client as paho
from websockets.sync.client import connect

from tests.service import Gateway, now_ms, wait_for


def receive(ws, timeout: float = 10.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def test_gas_leak_is_raised_escalated_handled_and_survives_restart(service, broker):
    gateway = Gateway(broker.url, "gw-gas-01")
    t0 = now_ms() - 60_000
    with connect(service.ws_url()) as ws:
        snapshot = receive(ws)
        assert snapshot["type"] == "snapshot" and snapshot["alerts"] == []
        gateway.send({"GAS-0001": [{"ts": t0, "values": {"ch4": 1.0, "temp": 14.0}},
                                   {"ts": t0 + 10_000, "values": {"ch4": 12.0}}]})
        raised = receive(ws)
        gateway.send({"GAS-0001": {"ts": t0 + 20_000, "values": {"ch4": 21.5}}})
        escalated = receive(ws)

    assert raised["event"] == "raised" and escalated["event"] == "escalated"
    assert escalated["seq"] == raised["seq"] + 1
    alert = escalated["alert"]
    assert alert["id"] == raised["alert"]["id"]
    assert (alert["rule"], alert["sensor"], alert["metric"]) == ("gas-ch4-level", "GAS-0001", "ch4")
    assert (alert["domain"], alert["asset"]) == ("gas", "MH-0001")
    assert raised["alert"]["level"] == "yellow" and alert["level"] == "orange" and alert["peak_level"] == "orange"
    assert alert["condition"] == "active" and alert["workflow"] == "new"
    assert alert["value"] == 21.5 and alert["threshold"] == 20
    assert alert["raised_at"] == t0 + 10_000 and alert["updated_at"] == t0 + 20_000
    assert alert["message"] == "ch4 21.5 %LEL >= orange 20"
    alert_id = alert["id"]

    status, body = service.request("POST", f"/api/alerts/{alert_id}/ack", {"by": "Wang", "note": "seen"})
    assert status == 200 and body["workflow"] == "acknowledged"
    status, body = service.request("POST", f"/api/alerts/{alert_id}/close", {"by": "Wang", "note": "too early"})
    assert status == 409 and "active" in body["error"]
    status, body = service.request("POST", f"/api/alerts/{alert_id}/dispatch",
                                   {"by": "Wang", "to": "Gas emergency team 3", "note": "go"})
    assert status == 200 and body["workflow"] == "dispatched"

    # 19 %LEL is inside orange's hysteresis band (clear below 18): still orange; 4 clears everything.
    gateway.send({"GAS-0001": [{"ts": t0 + 30_000, "values": {"ch4": 19.0}},
                               {"ts": t0 + 40_000, "values": {"ch4": 4.0}}]})
    cleared = wait_for(lambda: service.get(f"/api/alerts/{alert_id}")["condition"] == "cleared" or None,
                       message="the alert's condition to clear")
    assert cleared
    status, body = service.request("POST", f"/api/alerts/{alert_id}/close", {"by": "Li", "note": "valve fixed"})
    assert status == 200 and body["workflow"] == "closed"
    assert service.get("/api/alerts?open=true") == []
    assert service.get("/api/alerts?open=true&domain=&level=") == []  # empty filters mean any
    closed_before = service.get(f"/api/alerts/{alert_id}")

    assert service.stop() == 0  # a clean stop on SIGTERM
    assert "stopped" in service.log()
    service.start()
    after = service.get(f"/api/alerts/{alert_id}")
    assert after == closed_before
    events = [h["event"] for h in after["history"]]
    assert events == ["raised", "escalated", "acknowledged", "dispatched", "cleared", "closed"]
    assert [h["by"] for h in after["history"]][2:4] == ["Wang", "Wang"]
    assert after["history"][3]["to"] == "Gas emergency team 3"
    assert [h["seq"] for h in after["history"]] == sorted(h["seq"] for h in after["history"])
    assert service.get("/api/alerts?open=false")[0]["id"] == alert_id
    readings = service.get(f"/api/sensors/GAS-0001/readings?metric=ch4&since={t0}&until={t0 + 30_000}")
    assert [r["value"] for r in readings["readings"]] == [1.0, 12.0, 21.5, 19.0]
    unbounded = service.get("/api/sensors/GAS-0001/readings?metric=ch4&since=&until=")
    assert [r["value"] for r in unbounded["readings"]] == [1.0, 12.0, 21.5, 19.0, 4.0]
    gateway.close()


def test_open_alert_keeps_its_level_across_restart(service, broker):
    """After a restart the detector resumes from the open alert, so a lower reading de-escalates
    the same alert instead of raising a second one."""
    gateway = Gateway(broker.url, "gw-gas-01")
    t0 = now_ms() - 60_000
    gateway.send({"GAS-0001": {"ts": t0, "values": {"ch4": 30.0}}})
    alert = wait_for(lambda: service.get("/api/alerts"), message="an alert")[0]
    assert alert["level"] == "red"
    service.stop()
    service.start()
    gateway.send({"GAS-0001": {"ts": t0 + 1000, "values": {"ch4": 12.0}}})
    wait_for(lambda: service.get(f"/api/alerts/{alert['id']}")["level"] == "yellow", message="de-escalation")
    alerts = service.get("/api/alerts")
    assert [a["id"] for a in alerts] == [alert["id"]]
    assert alerts[0]["peak_level"] == "red"
    gateway.close()


def test_alert_events_are_published_on_the_mqtt_alert_topic(service, broker):
    received: list[tuple[str, dict]] = []
    subscribed = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.on_message = lambda c, u, m: received.append((m.topic, json.loads(m.payload)))
    client.on_subscribe = lambda *args: subscribed.set()
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    client.subscribe("lifeline/alerts/#", qos=1)
    assert subscribed.wait(10)
    gateway = Gateway(broker.url, "gw-water-01")
    gateway.send({"PIPE-0001": {"ts": now_ms(), "values": {"pressure": 0.05}}})
    topic, body = wait_for(lambda: next(((t, b) for t, b in received if "pipeline" in t), None),
                           message="alert on MQTT")
    assert topic == "lifeline/alerts/pipeline/red"
    assert body["type"] == "event" and body["event"] == "raised" and body["alert"]["sensor"] == "PIPE-0001"
    client.loop_stop()
    gateway.close()

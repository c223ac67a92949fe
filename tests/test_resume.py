"""Websocket resume with ?since=, and QoS 1 delivery across a broker restart."""

from __future__ import annotations

import contextlib
import json

from websockets.sync.client import connect

from tests.service import Gateway, now_ms, wait_for


def receive(ws, timeout: float = 10.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def test_reconnect_with_since_receives_exactly_the_missed_events(service, broker):
    gateway = Gateway(broker.url, "gw-gas-01")
    t0 = now_ms() - 100_000
    with connect(service.ws_url()) as ws:
        receive(ws)  # snapshot
        gateway.send({"GAS-0001": {"ts": t0, "values": {"ch4": 6.0}}})
        first = receive(ws)
    last_seen = first["seq"]

    # While disconnected: escalate, a second alert, clear it, and an operator action.
    gateway.send({"GAS-0001": {"ts": t0 + 1000, "values": {"ch4": 26.0}}})
    gateway.send({"GAS-0002": [{"ts": t0, "values": {"ch4": 11.0}}, {"ts": t0 + 1000, "values": {"ch4": 1.0}}]})
    wait_for(lambda: len(service.get("/api/alerts")) == 2, message="two alerts")
    second = next(a for a in service.get("/api/alerts") if a["sensor"] == "GAS-0002")
    wait_for(lambda: service.get(f"/api/alerts/{second['id']}")["condition"] == "cleared", message="clear")
    status, _ = service.request("POST", f"/api/alerts/{second['id']}/close", {"by": "Zhao"})
    assert status == 200

    with connect(service.ws_url(since=last_seen)) as ws:
        missed = [receive(ws) for _ in range(4)]
        assert all(m["type"] == "event" for m in missed)
        assert [m["seq"] for m in missed] == list(range(last_seen + 1, last_seen + 5))
        assert sorted(m["event"] for m in missed) == ["cleared", "closed", "escalated", "raised"]
        # Then live events continue the same sequence, with nothing repeated.
        gateway.send({"GAS-0001": {"ts": t0 + 2000, "values": {"ch4": 1.0}}})
        live = receive(ws)
        assert live["seq"] == last_seen + 5 and live["event"] == "cleared"

    # A client whose `since` is beyond the retained log gets a fresh snapshot marked reset.
    with connect(service.ws_url(since=10_000)) as ws:
        reset = receive(ws)
        assert reset["type"] == "snapshot" and reset["reset"] is True and reset["seq"] == last_seen + 5
        assert [a["sensor"] for a in reset["alerts"]] == ["GAS-0001"]
    gateway.close()


def test_clients_joining_while_events_flow_receive_each_event_exactly_once(service, broker):
    # The boundary between a client's opening and its live events (where its events stop
    # going through its queue and the hub starts writing to it directly) loses nothing and
    # repeats nothing, whether the opening is a snapshot or the events after `since`.
    gateway = Gateway(broker.url, "gw-gas-01")
    t0 = now_ms() - 100_000
    value = iter([6.0, 1.0] * 100)  # every reading moves the alert: an event or two each
    ts = iter(range(t0, t0 + 200_000, 1000))

    def burst(readings: int = 10) -> None:
        gateway.send({"GAS-0001": [{"ts": next(ts), "values": {"ch4": next(value)}} for _ in range(readings)]})

    with contextlib.ExitStack() as stack:
        clients = []
        for since in (None, 0, None, "last", None):
            burst()
            last = service.get("/healthz")["seq"]
            clients.append(stack.enter_context(connect(service.ws_url(since=last if since == "last" else since))))
        burst(40)
        wait_for(lambda: service.get("/healthz")["readings"] == 90, message="all 90 readings processed")
        final = service.get("/healthz")["seq"]  # their events are committed and on their way
        for ws in clients:
            first = receive(ws)
            seqs = [first["seq"]] if first["type"] == "event" else []
            covered = first["seq"] - len(seqs)
            while covered + len(seqs) < final:
                message = receive(ws)
                assert message["type"] == "event"
                seqs.append(message["seq"])
            assert seqs == list(range(covered + 1, final + 1))
    gateway.close()


def test_websocket_requires_a_token(service):
    import pytest
    from websockets.exceptions import InvalidStatus

    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{service.port}/ws/alerts")
    assert refused.value.response.status_code == 401
    with pytest.raises(InvalidStatus) as refused:
        connect(f"ws://127.0.0.1:{service.port}/ws/alerts?token=nope")
    assert refused.value.response.status_code == 401


def test_readings_published_while_the_service_is_away_arrive_after_it_returns(service, broker):
    gateway = Gateway(broker.url, "gw-gas-01")
    t0 = now_ms() - 30_000
    gateway.send({"GAS-0001": {"ts": t0, "values": {"ch4": 1.0}}})
    wait_for(lambda: service.get("/api/sensors/GAS-0001")["values"].get("ch4"), message="first reading")

    # The broker restarts (persisting the service's session), then the service is away while
    # the gateway publishes; its persistent QoS 1 session keeps the readings for it.
    broker.restart()
    service.stop()
    gateway_after = Gateway(broker.url, "gw-gas-01")
    gateway_after.send({"GAS-0001": [{"ts": t0 + 1000, "values": {"ch4": 22.0}},
                                     {"ts": t0 + 2000, "values": {"ch4": 3.0}}]})
    service.start()
    alerts = wait_for(lambda: service.get("/api/alerts"), message="alert from queued readings")
    assert alerts[0]["level"] == "orange" and alerts[0]["raised_at"] == t0 + 1000
    wait_for(lambda: service.get(f"/api/alerts/{alerts[0]['id']}")["condition"] == "cleared",
             message="clearing reading")
    values = [r["value"] for r in service.get(f"/api/sensors/GAS-0001/readings?metric=ch4&since={t0}")["readings"]]
    assert values == [1.0, 22.0, 3.0]
    gateway.close()
    gateway_after.close()

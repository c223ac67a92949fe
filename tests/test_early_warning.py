"""Early warning through the real service: forecasts, silence on a timer, backfill as history."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.service import Gateway, RunningService, now_ms, wait_for

CONFIG = Path(__file__).parent / "data" / "early.yaml"


@pytest.fixture
def early(broker, tmp_path):
    running = RunningService(CONFIG, broker.url, tmp_path / "service").start()
    yield running
    running.stop()


def events(ws, count: int, timeout: float = 15.0) -> list[dict]:
    out = []
    while len(out) < count:
        message = json.loads(ws.recv(timeout=timeout))
        if message["type"] == "event":
            out.append(message)
    return out


def test_a_forecast_alert_is_raised_before_the_value_gets_there(early, broker):
    gas = Gateway(broker.url, "gw-a")
    start = now_ms() - 100_000
    # CH4 rising 3 %LEL per minute from 2: at the last reading (7 %LEL) red (25) is 7.7 min away.
    rising = [{"ts": start + i * 20_000, "values": {"ch4": 2.0 + i}} for i in range(6)]
    with connect(early.ws_url()) as ws:
        ws.recv(timeout=10)  # snapshot
        gas.send({"M1": rising})
        received = events(ws, 2)
    by_rule = {e["alert"]["rule"]: e["alert"] for e in received}
    forecast = by_rule["ch4-forecast"]
    assert forecast["kind"] == "forecast" and forecast["condition"] == "active"
    assert forecast["forecast"]["slope_per_min"] == pytest.approx(3.0)
    assert forecast["level"] == "red" and forecast["forecast"]["level"] == "red"
    assert forecast["forecast"]["eta_s"] == pytest.approx((25 - 7) / 3 * 60, abs=1)
    assert forecast["value"] == 7.0  # the value itself is still only blue
    assert by_rule["ch4-level"]["level"] == "blue"
    gas.close()


def test_a_silent_gateway_raises_one_alert_on_the_timer_and_clears_when_data_returns(early, broker):
    water = Gateway(broker.url, "gw-b")
    with connect(early.ws_url()) as ws:
        ws.recv(timeout=10)
        water.send({"P1": {"values": {"pressure": 0.3}}, "P2": {"values": {"pressure": 0.3}}})
        # Nothing more is sent: after 2 x 1 s the timer notices the silence.
        raised = events(ws, 1)[0]
        assert raised["event"] == "raised"
        alert = raised["alert"]
        assert (alert["sensor"], alert["metric"], alert["level"], alert["kind"]) == ("gw-b", "*", "orange",
                                                                                  "gateway_silent")
        water.send({"P1": {"values": {"pressure": 0.3}}})
        cleared = events(ws, 1)[0]
        assert cleared["event"] == "cleared" and cleared["alert"]["id"] == alert["id"]
    open_ids = [a["id"] for a in early.get("/api/alerts") if a["rule"] == "water-silence"]
    assert open_ids == [alert["id"]]  # one alert for the outage, none per sensor
    water.close()


def test_backfilled_conditions_that_already_cleared_are_history(early, broker):
    water = Gateway(broker.url, "gw-b")
    old = now_ms() - 30 * 60_000
    # The gateway was offline for half an hour and now sends its buffer: a pressure dip that
    # came and went, then a second dip still going on at the end of the buffer.
    buffered = [{"ts": old + i * 1000, "values": {"pressure": p}}
                for i, p in enumerate([0.3, 0.05, 0.04, 0.3, 0.3])]
    water.send({"P1": buffered})
    history = wait_for(lambda: early.get("/api/alerts?open=false"), message="backfilled history")
    assert history[0]["backfilled"] is True and history[0]["workflow"] == "closed"
    assert [h["event"] for h in early.get(f"/api/alerts/{history[0]['id']}")["history"]] == \
        ["raised", "cleared", "closed"]
    assert [a for a in early.get("/api/alerts") if a["rule"] == "pressure-low"] == []
    water.send({"P2": [{"ts": old, "values": {"pressure": 0.3}}, {"ts": old + 1000, "values": {"pressure": 0.02}}]})
    still = wait_for(lambda: [a for a in early.get("/api/alerts") if a["rule"] == "pressure-low"],
                     message="an alert still active after the backfill")
    assert still[0]["sensor"] == "P2" and still[0]["backfilled"] is True and still[0]["condition"] == "active"
    water.close()

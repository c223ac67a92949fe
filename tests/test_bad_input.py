"""Every rejection reason of CONTRACT §4, through a real broker and `lifeline up`."""

from __future__ import annotations

import json
import re
import urllib.request

from tests.service import Gateway, now_ms, wait_for

DAY_MS = 86_400_000


def counters(service) -> dict[tuple[str, str], float]:
    text = urllib.request.urlopen(f"{service.url}/metrics", timeout=5).read().decode()
    found = {}
    for gateway, reason, value in re.findall(
            r'^lifeline_rejections_total\{gateway="([^"]*)",reason="([^"]*)"\} ([0-9.e+]+)$', text, re.M):
        found[(gateway, reason)] = float(value)
    return found


def test_each_rejection_is_published_counted_and_dead_lettered_while_valid_readings_alert(service, broker):
    gas = Gateway(broker.url, "gw-gas-01")
    now = now_ms()
    # One message mixing a valid reading (raises red) with one bad reading object per reason.
    mixed = {
        "GAS-0002": {"ts": now, "values": {"ch4": 30.0}},
        "GAS-9999": {"ts": now, "values": {"ch4": 1.0}},
        "PIPE-0001": {"ts": now, "values": {"pressure": 0.3}},
        "GAS-0001": [
            {"ts": now, "values": {"h2s": 1.0}},
            {"ts": now + 1, "values": {"ch4": float("nan")}},
            {"ts": now + 10 * 60_000, "values": {"ch4": 1.0}},
            {"ts": now - 31 * DAY_MS, "values": {"ch4": 1.0}},
            {"ts": "yesterday", "values": {"ch4": 1.0}},
            {"ts": now + 2, "values": {"ch4": 2.0, "temp": 15.0}},
        ],
    }
    gas.send(json.dumps(mixed))  # json.dumps writes NaN, as a careless gateway would
    gas.send(b"{this is not json")
    gas.send(b"[1, 2, 3]")
    gas.send(b'{"GAS-0001": {"ts": 1, "values": {"ch4": ' + b"1" * (1024 * 1024) + b"}}}")

    expected = {
        ("unknown_sensor", "GAS-9999"), ("not_owner", "PIPE-0001"), ("unknown_metric", "GAS-0001"),
        ("invalid_value", "GAS-0001"), ("future_timestamp", "GAS-0001"), ("stale_timestamp", "GAS-0001"),
        ("invalid_shape", "GAS-0001"), ("invalid_json", ""), ("invalid_shape", ""), ("too_large", ""),
    }
    wait_for(lambda: len(gas.errors) >= len(expected), message="errors-topic messages")
    assert {(e["reason"], e["sensor"]) for e in gas.errors} == expected
    assert all(e["detail"] for e in gas.errors)

    # The valid reading in the mixed message still raised its alert; the valid GAS-0001 one was kept.
    alerts = wait_for(lambda: service.get("/api/alerts"), message="the valid reading's alert")
    assert [(a["sensor"], a["level"]) for a in alerts] == [("GAS-0002", "red")]
    readings = service.get(f"/api/sensors/GAS-0001/readings?metric=temp&since={now - 10}")["readings"]
    assert readings == [{"ts": now + 2, "value": 15.0}]

    count = counters(service)
    for reason, _ in expected:
        assert count[("gw-gas-01", reason)] >= 1
    assert count[("gw-gas-01", "invalid_shape")] == 2
    assert sum(count.values()) == len(expected)

    letters = service.get("/api/rejections?gateway=gw-gas-01&limit=50")
    assert {(r["reason"], r["sensor"]) for r in letters} == expected
    too_large = next(r for r in letters if r["reason"] == "too_large")
    assert len(too_large["payload"]) == 64 * 1024  # kept, truncated to 64 KiB
    not_json = next(r for r in letters if r["reason"] == "invalid_json")
    assert not_json["payload"] == "{this is not json"
    status, health = service.request("GET", "/healthz")
    assert status == 200 and health["status"] == "ok"  # still ingesting
    gas.close()


def test_spoofed_gateway_cannot_report_another_owners_sensor(service, broker):
    spoofer = Gateway(broker.url, "gw-water-01")
    spoofer.send({"GAS-0001": {"values": {"ch4": 99.0}}})
    wait_for(lambda: spoofer.errors, message="not_owner error")
    assert spoofer.errors[0]["reason"] == "not_owner"
    assert service.get("/api/alerts") == []
    spoofer.close()

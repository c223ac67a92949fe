"""The dashboard's own endpoints: base map, gateways and status, sensor rules, series and alerts."""

from __future__ import annotations

import csv
import json

import numpy as np

from dashboard.detail_api import downsample
from dashboard.status_api import gateway_liveness
from ingest.last_values import NEVER
from lifeline.catalogue import Catalogue
from lifeline.config import load_config
from tests.service import ROOT, Gateway, RunningService, now_ms, wait_for

DEMO = ROOT / "lifeline" / "demo" / "lifeline.yaml"


# -- pure functions -------------------------------------------------------------------------------

def test_downsample_keeps_min_max_and_last_of_each_bucket():
    rng = np.random.default_rng(3)
    ts = np.sort(rng.integers(0, 10_000, 500)).astype(np.int64)
    value = rng.normal(size=500)
    out = downsample(ts, value, since=0, bucket_ms=1000)
    buckets = {}
    for t, v in zip(ts.tolist(), value.tolist(), strict=True):
        buckets.setdefault(t // 1000, []).append((t, v))
    expected = [sorted(b) for _, b in sorted(buckets.items())]
    assert out["min"] == [min(v for _, v in b) for b in expected]
    assert out["max"] == [max(v for _, v in b) for b in expected]
    assert out["ts"] == [b[-1][0] for b in expected]
    assert downsample(np.empty(0, np.int64), np.empty(0), 0, 10) == {"ts": [], "value": [], "min": [], "max": []}


def test_gateway_liveness_uses_the_shortest_interval_of_its_sensors(tmp_path):
    catalogue = Catalogue(load_config(ROOT / "tests" / "data" / "city.yaml"))
    now = 1_000_000_000
    last = np.full(len(catalogue), NEVER, np.int64)
    channels = catalogue.channels_of
    last[channels["GAS-0002"]["ch4"]] = now - 179_000  # within 3 x 60 s
    last[channels["PIPE-0001"]["pressure"]] = now - 16_000  # interval 5 s: silent after 15 s
    live = gateway_liveness(catalogue, last, now)
    index = catalogue.gateway_index
    assert live.online[index["gw-gas-01"]] and live.reporting[index["gw-gas-01"]] == 1
    assert live.sensors[index["gw-gas-01"]] == 2 and live.interval_s[index["gw-gas-01"]] == 60
    assert not live.online[index["gw-water-01"]] and live.last_seen[index["gw-water-01"]] == now - 16_000
    assert live.last_seen[index["gw-bridge-01"]] == NEVER and not live.online[index["gw-bridge-01"]]


# -- against a running service ---------------------------------------------------------------------

def test_gateways_and_status_for_the_status_bar(service, broker):
    gas = Gateway(broker.url, "gw-gas-01")
    gas.send({"GAS-0001": {"ts": now_ms(), "values": {"ch4": 12.0, "temp": 14.0}}})
    gas.send({"GAS-0001": {"ts": now_ms(), "values": {"h2s": 1.0}}})  # unknown_metric
    Gateway(broker.url, "gw-water-01").send({"PIPE-0001": {"ts": now_ms() - 600_000, "values": {"pressure": 0.3}}})
    Gateway(broker.url, "gw-rogue").send({"X-1": {"ts": now_ms(), "values": {"v": 1}}})  # not in the catalogue
    wait_for(lambda: len(service.get("/api/rejections")) == 2, message="two rejections")

    gateways = {g["id"]: g for g in service.get("/api/gateways")}
    gas_gw = gateways["gw-gas-01"]
    assert gas_gw["status"] == "online" and gas_gw["online"] is True
    assert (gas_gw["sensors"], gas_gw["reporting"], gas_gw["interval_s"]) == (2, 1, 60)
    assert gas_gw["rejections"] == {"unknown_metric": 1} and gas_gw["rejected"] == 1
    assert abs(gas_gw["last_seen"] - now_ms()) < 60_000
    assert gateways["gw-water-01"]["status"] == "offline"  # last reading 10 min ago, interval 5 s
    assert gateways["gw-bridge-01"]["status"] == "no_data" and gateways["gw-bridge-01"]["last_seen"] is None
    assert gateways["gw-rogue"]["known"] is False and gateways["gw-rogue"]["rejected"] == 1

    status = service.get("/api/status")
    assert status["healthy"] is True and status["subscribed"] is True
    assert status["readings"] >= 3 and status["sensors"] == 4 and status["rejected"] == 2
    assert status["open_by_level"] == {"red": 0, "orange": 0, "yellow": 1, "blue": 0}
    assert status["gateways"] == {"online": 1, "offline": 1, "no_data": 1}
    assert abs(status["at"] - now_ms()) < 60_000

    water = service.token("integrator", owner="City Water")
    assert [g["id"] for g in service.get("/api/gateways", token=water)] == ["gw-water-01"]
    own = service.get("/api/status", token=water)
    assert own["open_by_level"]["yellow"] == 0 and own["rejected"] == 0 and own["sensors"] == 1
    assert service.request("GET", "/api/gateways", token=None)[0] == 401
    assert service.request("GET", "/api/status", token=None)[0] == 401


def test_rules_series_and_alerts_of_a_sensor(service, broker):
    gas = Gateway(broker.url, "gw-gas-01")
    start = now_ms() - 50 * 60_000
    gas.send({"GAS-0001": [{"ts": start + k * 60_000, "values": {"ch4": float(k % 5)}} for k in range(50)]})  # below blue
    gas.send({"GAS-0001": {"ts": now_ms(), "values": {"ch4": 26.0}}})
    alert = wait_for(lambda: service.get("/api/alerts?open=true"), message="the red alert")[0]

    rules = service.get("/api/sensors/GAS-0001/rules")
    assert rules["sensor"] == "GAS-0001"
    [ch4] = [r for r in rules["rules"] if r["metric"] == "ch4"]
    assert ch4["id"] == "gas-ch4-level" and ch4["kind"] == "threshold" and ch4["direction"] == "above"
    assert ch4["levels"] == {"blue": 5, "yellow": 10, "orange": 20, "red": 25}
    assert ch4["clear_values"]["red"] == 22.5 and ch4["for_s"] == 0
    pipe = service.get("/api/sensors/PIPE-0001/rules")["rules"]
    assert pipe[0]["direction"] == "below" and abs(pipe[0]["clear_values"]["red"] - 0.1 / 0.9) < 1e-12

    window = f"since={start}&until={now_ms()}"
    raw = service.get(f"/api/sensors/GAS-0001/series?metric=ch4&{window}&points=1000")
    assert raw["bucket_ms"] == 0 and raw["count"] == 51 and raw["min"] is None
    assert raw["value"][:7] == [0, 1, 2, 3, 4, 0, 1] and raw["value"][-1] == 26.0
    reduced = service.get(f"/api/sensors/GAS-0001/series?metric=ch4&{window}&points=10")
    assert reduced["bucket_ms"] > 0 and reduced["count"] == 51 and len(reduced["ts"]) <= 11
    assert max(reduced["max"]) == 26.0 and min(reduced["min"]) == 0
    assert all(lo <= v <= hi for lo, v, hi in zip(reduced["min"], reduced["value"], reduced["max"], strict=True))
    assert service.request("GET", "/api/sensors/GAS-0001/series?metric=h2s")[0] == 404

    alerts = service.get("/api/sensors/GAS-0001/alerts")
    assert [a["id"] for a in alerts] == [alert["id"]]
    assert [h["event"] for h in alerts[0]["history"]] == ["raised"]
    assert service.get("/api/sensors/GAS-0002/alerts") == []

    water = service.token("integrator", owner="City Water")
    for path in ("rules", "series?metric=ch4", "alerts"):
        assert service.request("GET", f"/api/sensors/GAS-0001/{path}", token=water)[0] == 404


def test_the_map_base_comes_from_beside_the_configuration(service, broker, tmp_path):
    assert service.get("/api/map") == {"districts": None, "base": None, "error": None}  # tests/data has none
    assert service.request("GET", "/api/map", token=None)[0] == 401

    demo = RunningService(DEMO, broker.url, tmp_path / "demo").start()
    try:
        base = demo.get("/api/map")
    finally:
        demo.stop()
    districts = {f["properties"]["id"]: f for f in base["districts"]["features"]}
    assert all(f["geometry"]["type"] == "Polygon" for f in districts.values())
    assert all(f["properties"]["name_zh"].endswith(("区", "新区")) for f in districts.values())
    with (DEMO.parent / "sensors.csv").open() as rows:
        assert {r["district"] for r in csv.DictReader(rows)} <= set(districts)
    kinds = {f["properties"]["kind"] for f in base["base"]["features"]}
    assert kinds == {"water", "river", "road"}


def test_a_broken_base_file_is_reported_not_fatal(broker, tmp_path):
    folder = tmp_path / "city"
    folder.mkdir()
    (folder / "city.yaml").write_text((ROOT / "tests" / "data" / "city.yaml").read_text())
    (folder / "districts.geojson").write_text(json.dumps({"type": "Feature"}))
    running = RunningService(folder / "city.yaml", broker.url, tmp_path / "service").start()
    try:
        body = running.get("/api/map")
        assert body["districts"] is None and "not a GeoJSON FeatureCollection" in body["error"]
        (folder / "districts.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
            {"type": "Feature", "properties": {"id": "A", "name": "A"},
             "geometry": {"type": "Polygon", "coordinates": [[[117.2, 31.8], [117.3, 31.8], [117.3, 31.9], [117.2, 31.8]]]}}]}))
        body = running.get("/api/map")  # re-read when the file changes
        assert [f["properties"]["id"] for f in body["districts"]["features"]] == ["A"] and body["base"] is None
    finally:
        running.stop()

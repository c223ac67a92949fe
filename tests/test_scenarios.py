"""Scenario suite: a generated city through a real Mosquitto and `lifeline up`, compressed,
scored against its ground truth; scenario files; replaying the recorded demo feed.

What the suite asserts, with the detectors the service has today (threshold rules):
* every hazard incident a threshold rule can see (truth `detectors` has "threshold") is detected,
  and reaches its expected level;
* the sewer-biogas trap and the sensor faults are never reported as hazards at yellow or above;
* false alerts (matching no incident) stay at or under FALSE_ALERT_BOUND per 1,000 sensor-hours;
* the service accepted every reading the simulator published (waveforms and backfill included).
Incidents only later detectors see (stiffness loss: modal tracking) are scored, not asserted.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lifeline.broker import PrivateBroker
from simulators.alert_sources import activations_from_service
from simulators.city import generate_city, write_city
from simulators.fixtures import DEMO_FEED, DEMO_TRUTH
from simulators.replay import read_recording, replay
from simulators.scenarios import ALL_KINDS, SUITE_ITEMS, builtin_scenarios, parse_seconds, resolve
from simulators.scoring import format_score, read_truth, score
from tests.service import RunningService, wait_for

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
CITY_SENSORS = 100
SUITE_SPEED = 3000  # the suite's 6 simulated hours in about 7 s
FALSE_ALERT_BOUND = 1.0  # per 1,000 sensor-hours (a 100-sensor, 6 h run is 600 sensor-hours)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeline.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def _readings(service: RunningService) -> int:
    return service.get("/healthz", token=None)["readings"]


def test_scenario_suite_through_the_service(broker: PrivateBroker, tmp_path: Path) -> None:
    config = write_city(generate_city(CITY_SENSORS, seed=1), tmp_path / "city")
    service = RunningService(config, broker.url, tmp_path / "service").start()
    try:
        truth = tmp_path / "truth.jsonl"
        simulated = _cli("simulate", "--config", str(config), "--mqtt", broker.url, "--scenario", "suite",
                         "--speed", str(SUITE_SPEED), "--truth", str(truth), timeout=300)
        assert simulated.returncode == 0, simulated.stderr
        summary = json.loads(simulated.stdout.strip().splitlines()[-1].split("lifeline simulate: ", 1)[1])
        assert summary["acknowledged"] and summary["decimation"] > 1  # waveform blocks thinned for speed
        wait_for(lambda: _readings(service) >= summary["values"], timeout=60, message="the service to ingest the run")
        assert _readings(service) == summary["values"]  # nothing rejected: waveforms, backfill and all
        scored = _cli("score", "--truth", str(truth), "--alerts", service.url, "--token", service.token(), "--json")
        assert scored.returncode == 0, scored.stderr
        result = json.loads(scored.stdout)
        print(format_score(result))  # the scoring table of the suite, in the test log
    finally:
        service.stop()

    rows = result["incidents"]
    assert {r["kind"] for r in rows} == {kind for kind, *_ in SUITE_ITEMS}  # every kind happened
    assert not result["approximate_levels"]  # exact times from the websocket event log
    visible = [r for r in rows if r["hazard"] and "threshold" in r["detectors"]]
    assert len(visible) >= 8
    for row in visible:
        assert row["detected"], f"{row['id']} {row['kind']} missed"
        assert row["to_level_s"] is not None, f"{row['id']} {row['kind']} never reached {row['expected_level']}"
        assert row["first_alert_s"] <= (row["end"] - row["start"]) / 1000
    fast = {r["kind"]: r["first_alert_s"] for r in visible}
    assert fast["gas_leak"] < 120 and fast["water_main_burst"] < 60 and fast["elevator_entrapment"] <= 60
    traps = [r for r in rows if not r["hazard"]]
    assert {r["kind"] for r in traps} >= {"sewer_biogas", "sensor_stuck", "sensor_spikes", "sensor_drift",
                                          "sensor_dropout", "gateway_offline"}
    assert result["traps"]["violations"] == [], [r for r in traps if r["violation"]]
    for row in traps:
        assert row["peak_level"] in (None, "blue"), row
    rate = result["overall"]["false_per_1000_sensor_hours"]
    assert rate is not None and rate <= FALSE_ALERT_BOUND, result["false_alerts"]
    assert result["run"]["sensors"] == CITY_SENSORS and result["run"]["simulated_hours"] == pytest.approx(6.0, abs=0.01)
    leaks = [r for r in rows if r["kind"] in ("gas_leak", "slow_leak", "water_main_burst")]
    assert all(r["location_error_m"] is None for r in leaks)  # today's alerts carry no location


def test_scenario_files_and_combinations(tmp_path: Path) -> None:
    for path in sorted((ROOT / "scenarios").glob("*.yaml")):
        scenario = resolve(str(path))
        assert scenario.items and scenario.length_s, path
        assert all(item.kind in ALL_KINDS for item in scenario.items)
    drill = resolve(str(ROOT / "scenarios" / "gas-drill.yaml"))
    assert [i.kind for i in drill.items] == ["gas_leak", "sewer_biogas", "sensor_stuck"] and drill.length_s == 5400
    combined = resolve("gas_leak+sewer_biogas")
    assert [i.kind for i in combined.items] == ["gas_leak", "sewer_biogas"] and combined.repeat_s
    assert resolve(f"suite+{ROOT / 'scenarios' / 'gas-drill.yaml'}").length_s == parse_seconds("6h")
    assert builtin_scenarios()["default"].first_at_s == 15.0
    assert parse_seconds("1h30m") == 5400 and parse_seconds("90") == 90 and parse_seconds("45s") == 45
    bad = tmp_path / "bad.yaml"
    bad.write_text("incidents:\n  - {kind: earthquake}\n  - {kind: gas_leak, at: soon, level: purple}\n")
    with pytest.raises(ValueError) as error:
        resolve(str(bad))
    assert "earthquake" in str(error.value) and "soon" in str(error.value) and "purple" in str(error.value)
    with pytest.raises(ValueError, match="unknown scenario"):
        resolve("suite+flood")
    refused = _cli("simulate", "--mqtt", "mqtt://127.0.0.1:9", "--scenario", str(bad))
    assert refused.returncode == 2 and "earthquake" in refused.stderr


def test_demo_recording_replays_into_the_service(broker: PrivateBroker, tmp_path: Path) -> None:
    feed = DATA / DEMO_FEED
    assert feed.stat().st_size < 200 * 1024
    readings = 0
    for message in read_recording(feed):
        for value in json.loads(message.payload_bytes()).values():
            for reading in value if isinstance(value, list) else [value]:
                readings += len(reading["values"])
    demo = ROOT / "lifeline" / "demo" / "lifeline.yaml"
    service = RunningService(demo, broker.url, tmp_path / "service").start()
    try:
        result = replay(feed, broker.url, speed=0, shift_to_now=True)
        assert result["acknowledged"]
        wait_for(lambda: _readings(service) >= readings, timeout=30, message="the replayed readings")
        records = [json.loads(line) for line in (DATA / DEMO_TRUTH).read_text().splitlines()]
        for record in records:  # the truth moves with the readings
            for key in ("start", "end", "sim_start", "sim_end"):
                if key in record:
                    record[key] += result["offset_ms"]
        run, incidents = read_truth(records)
        activations, fetched = activations_from_service(service.url, service.token())
        assert fetched["events"]  # exact times from the websocket log
    finally:
        service.stop()
    rows = score(run, incidents, activations)["incidents"]
    assert [r["kind"] for r in rows] == ["gas_leak", "water_main_burst", "bridge_overload"]
    for row in rows:
        assert row["detected"] and row["to_level_s"] is not None, row


def test_demo_fixture_is_the_demo_at_speed_ten() -> None:
    with gzip.open(DATA / DEMO_FEED, "rt", encoding="utf-8") as handle:
        first, *rest = (json.loads(line) for line in handle)
    span_s = (rest[-1]["t"] - first["t"]) / 1000
    header = json.loads((DATA / DEMO_TRUTH).read_text().splitlines()[0])
    assert header["scenario"] == "default" and header["speed"] == 10.0
    assert 30 < span_s < 50 and first["topic"].startswith("lifeline/gw-")
    assert time.time() * 1000 - first["t"] > 0

"""Scenario suite: a generated city through a real Mosquitto and `lifeline up`, compressed,
scored against its ground truth; scenario files; replaying the recorded demo feed.

The suite runs twice on the same city: with the plain threshold rules a generic platform would
have (`--rules threshold`) and with the domain and early-warning detectors (the default). It
asserts:
* with thresholds only, every hazard incident a threshold rule can see (truth `detectors` has
  "threshold") is detected and reaches its expected level;
* with the domain detectors, every hazard incident is detected (stiffness loss included), none
  later than with thresholds only, most earlier, and every leak is located;
* in both, the sewer-biogas trap and the sensor faults are never reported as hazards at yellow or
  above, false alerts (matching no incident) stay at or under FALSE_ALERT_BOUND per 1,000
  sensor-hours, and the service accepted every reading the simulator published.
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
from simulators.score_compare import format_comparison
from simulators.scoring import read_truth, score
from tests.service import RunningService, wait_for

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"
CITY_SENSORS = 100
SUITE_SPEED = 3000  # the suite's 6 simulated hours in about 7 s
SAME_TIME_S = 10.0  # two runs may see the same crossing a reading apart (gauges report every 10 s)
FALSE_ALERT_BOUND = 1.0  # per 1,000 sensor-hours (a 100-sensor, 6 h run is 600 sensor-hours)


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeline.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


def _readings(service: RunningService) -> int:
    return service.get("/healthz", token=None)["readings"]


def _suite_score(rules: str, broker: PrivateBroker, folder: Path) -> dict:
    """The suite on the 100-sensor city with the given rule set, scored from the service's event log."""
    config = write_city(generate_city(CITY_SENSORS, seed=1), folder / "city", rules)
    service = RunningService(config, broker.url, folder / "service").start()
    try:
        truth = folder / "truth.jsonl"
        simulated = _cli("simulate", "--config", str(config), "--mqtt", broker.url, "--scenario", "suite",
                         "--speed", str(SUITE_SPEED), "--truth", str(truth), timeout=300)
        assert simulated.returncode == 0, simulated.stderr
        summary = json.loads(simulated.stdout.strip().splitlines()[-1].split("lifeline simulate: ", 1)[1])
        assert summary["acknowledged"] and summary["decimation"] > 1  # waveform blocks thinned for speed
        # `readings` counts what went through the detectors too, so the last alert is in when it is complete.
        wait_for(lambda: _readings(service) >= summary["values"], timeout=90, message="the service to ingest the run")
        assert _readings(service) == summary["values"]  # nothing rejected: waveforms, backfill and all
        scored = _cli("score", "--truth", str(truth), "--alerts", service.url, "--token", service.token(), "--json")
        assert scored.returncode == 0, scored.stderr
        result = json.loads(scored.stdout)
    finally:
        service.stop()
    assert not result["approximate_levels"]  # exact times from the websocket event log
    assert result["run"]["sensors"] == CITY_SENSORS and result["run"]["simulated_hours"] == pytest.approx(6.0, abs=0.01)
    assert {r["kind"] for r in result["incidents"]} == {kind for kind, *_ in SUITE_ITEMS}  # every kind happened
    traps = [r for r in result["incidents"] if not r["hazard"]]
    assert {r["kind"] for r in traps} >= {"sewer_biogas", "sensor_stuck", "sensor_spikes", "sensor_drift",
                                          "sensor_dropout", "gateway_offline"}
    assert result["traps"]["violations"] == [], [r for r in traps if r["violation"]]
    for row in traps:
        assert row["peak_level"] in (None, "blue"), row
    rate = result["overall"]["false_per_1000_sensor_hours"]
    assert rate is not None and rate <= FALSE_ALERT_BOUND, result["false_alerts"]
    return result


def test_scenario_suite_domain_detectors_against_thresholds_only(broker: PrivateBroker, tmp_path: Path) -> None:
    baseline = _suite_score("threshold", broker, tmp_path / "threshold")
    domain = _suite_score("domain", broker, tmp_path / "domain")
    print(format_comparison(domain, baseline))  # both tables, in the test log

    plain = {r["id"]: r for r in baseline["incidents"] if r["hazard"]}
    visible = [r for r in plain.values() if "threshold" in r["detectors"]]
    assert len(visible) >= 8
    for row in visible:
        assert row["detected"], f"{row['id']} {row['kind']} missed with thresholds only"
        assert row["to_level_s"] is not None, f"{row['id']} {row['kind']} never reached {row['expected_level']}"
    assert all(r["location_error_m"] is None for r in plain.values())  # plain thresholds cannot locate

    smart = {r["id"]: r for r in domain["incidents"] if r["hazard"]}
    assert smart.keys() == plain.keys()  # same city, seed and scenario: the same incidents
    for incident, row in smart.items():
        assert row["detected"], f"{incident} {row['kind']} missed by the domain detectors"
        assert row["to_level_s"] is not None, f"{incident} {row['kind']} never reached {row['expected_level']}"
        if plain[incident]["detected"]:  # never later, give or take a reading (the two runs' timing differs)
            assert row["first_alert_s"] <= plain[incident]["first_alert_s"] + SAME_TIME_S, (row, plain[incident])
    earlier = [i for i in smart if plain[i]["detected"] and smart[i]["first_alert_s"] < plain[i]["first_alert_s"]]
    assert len(earlier) >= len(smart) // 2
    assert domain["overall"]["detected"] > baseline["overall"]["detected"]  # stiffness loss: modal tracking
    assert domain["overall"]["false_alerts"] <= baseline["overall"]["false_alerts"]
    leaks = [r for r in smart.values() if r["kind"] in ("gas_leak", "slow_leak", "water_main_burst")]
    assert leaks and all(r["location_error_m"] is not None and r["location_error_m"] < 300 for r in leaks), leaks


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

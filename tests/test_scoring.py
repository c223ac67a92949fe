"""Scoring: hand-made truth and alerts, every number derived from the inputs in the test."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from lifeline.cli import main
from simulators.alert_sources import SourceError, activations_from_records, load_activations, read_truth_file
from simulators.scoring import (
    RunInfo,
    TruthIncident,
    activations_from_alerts,
    activations_from_events,
    format_score,
    haversine_m,
    read_truth,
    score,
)

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_763_798_400_000
MIN = 60_000
HOUR = 3_600_000


def alert(id_: str, sensor: str, raised: int, level: str = "red", *, peak: str | None = None, asset: str = "",
          domain: str = "gas", updated: int | None = None, condition: str = "active", **extra) -> dict:
    return {"id": id_, "rule": "r", "sensor": sensor, "metric": "ch4", "domain": domain, "asset": asset,
            "gateway": extra.pop("gateway", "gw-1"), "level": level, "peak_level": peak or level,
            "condition": condition, "workflow": "new", "raised_at": raised, "updated_at": updated or raised, **extra}


def event(seq: int, name: str, body: dict) -> dict:
    return {"type": "event", "seq": seq, "event": name, "alert": body}


def incident(id_: str, sensors: tuple[str, ...], start: int, end: int, **fields) -> TruthIncident:
    fields.setdefault("domain", "gas")
    fields.setdefault("kind", "gas_leak")
    return TruthIncident(id=id_, start=start, end=end, sensors=sensors, **fields)


RUN = RunInfo(sensors=100, sensors_by_domain={"gas": 60, "bridge": 40}, sim_start=T0, sim_end=T0 + 10 * HOUR)


def test_detection_time_and_false_alert_rate() -> None:
    leak = incident("inc-1", ("GAS-1",), T0 + HOUR, T0 + 2 * HOUR, expected_level="red")
    overload = incident("inc-2", ("BR-1",), T0 + 3 * HOUR, T0 + 3 * HOUR + 10 * MIN, domain="bridge",
                        kind="bridge_overload", assets=("SPAN-1",), expected_level="orange")
    missed = incident("inc-3", ("GAS-9",), T0 + 5 * HOUR, T0 + 6 * HOUR, expected_level="yellow")
    alerts = [
        alert("a-1", "GAS-1", T0 + HOUR + 30_000),
        alert("a-2", "BR-2", T0 + 3 * HOUR + 90_000, asset="SPAN-1", domain="bridge", level="orange"),  # same span
        alert("a-3", "GAS-5", T0 + 4 * HOUR),  # nothing happened there
        alert("a-4", "GAS-9", T0 + 7 * HOUR),  # after inc-3 and its tolerance: false too
        alert("a-5", "GAS-7", T0 + 20 * HOUR),  # outside the run: ignored
    ]
    result = score(RUN, [leak, overload, missed], activations_from_alerts(alerts), tolerance_s=60)
    rows = {r["id"]: r for r in result["incidents"]}
    assert rows["inc-1"]["detected"] and rows["inc-1"]["first_alert_s"] == 30.0
    assert rows["inc-2"]["detected"] and rows["inc-2"]["first_alert_s"] == 90.0 and rows["inc-2"]["alerts"] == ["a-2"]
    assert not rows["inc-3"]["detected"] and rows["inc-3"]["first_alert_s"] is None
    overall = result["overall"]
    assert (overall["incidents"], overall["detected"], overall["missed"]) == (3, 2, 1)
    assert overall["first_alert_s"] == {"median": 60.0, "max": 90.0}
    assert [f["alert"] for f in result["false_alerts"]] == ["a-3", "a-4"]
    # 100 sensors x 10 h = 1,000 sensor-hours; gas: 60 x 10 = 600
    assert overall["false_per_1000_sensor_hours"] == pytest.approx(2.0)
    assert result["domains"]["gas"]["false_per_1000_sensor_hours"] == pytest.approx(1000 * 2 / 600, abs=1e-3)
    assert result["domains"]["bridge"]["false_alerts"] == 0
    assert result["approximate_levels"]  # alert objects: level times are not exact


def test_tolerance_widens_the_window() -> None:
    leak = incident("inc-1", ("GAS-1",), T0 + HOUR, T0 + 2 * HOUR)
    early = [alert("a-1", "GAS-1", T0 + HOUR - 45_000)]
    assert score(RUN, [leak], activations_from_alerts(early), tolerance_s=60)["incidents"][0]["detected"]
    strict = score(RUN, [leak], activations_from_alerts(early), tolerance_s=30)
    assert not strict["incidents"][0]["detected"] and strict["overall"]["false_alerts"] == 1
    assert score(RUN, [leak], activations_from_alerts(early))["incidents"][0]["first_alert_s"] == 0.0


def test_time_to_the_correct_level_from_events() -> None:
    leak = incident("inc-1", ("GAS-1",), T0 + HOUR, T0 + 2 * HOUR, expected_level="orange")
    body = alert("a-1", "GAS-1", T0 + HOUR + 10_000, level="blue")
    messages = [
        event(1, "raised", {**body, "updated_at": T0 + HOUR + 20_000}),
        event(2, "escalated", {**body, "level": "yellow", "updated_at": T0 + HOUR + 50_000}),
        event(3, "acknowledged", {**body, "level": "yellow", "updated_at": T0 + HOUR + 50_000}),
        event(4, "escalated", {**body, "level": "red", "updated_at": T0 + HOUR + 80_000}),
        event(5, "cleared", {**body, "level": "red", "condition": "cleared", "updated_at": T0 + 2 * HOUR}),
    ]
    activations = activations_from_events(list(reversed(messages)))  # order comes from seq
    assert len(activations) == 1 and activations[0].end == T0 + 2 * HOUR and activations[0].exact
    row = score(RUN, [leak], activations)["incidents"][0]
    assert row["first_alert_s"] == 20.0  # when the alert was raised, after its hold
    assert row["to_level_s"] == 80.0 and row["peak_level"] == "red"  # red passes orange
    only_yellow = activations_from_events(messages[:3])
    row = score(RUN, [leak], only_yellow)["incidents"][0]
    assert row["detected"] and row["to_level_s"] is None and row["peak_level"] == "yellow"
    assert score(RUN, [leak], only_yellow)["overall"]["reached_level"] == 0


def test_reactivation_is_a_second_activation() -> None:
    first = incident("inc-1", ("GAS-1",), T0 + HOUR, T0 + HOUR + 10 * MIN)
    second = incident("inc-2", ("GAS-1",), T0 + 3 * HOUR, T0 + 3 * HOUR + 10 * MIN)
    body = alert("a-1", "GAS-1", T0 + HOUR + 5000)
    messages = [
        event(1, "raised", body),
        event(2, "cleared", {**body, "condition": "cleared", "updated_at": T0 + HOUR + 9 * MIN}),
        event(3, "reactivated", {**body, "updated_at": T0 + 3 * HOUR + 7000}),
    ]
    activations = activations_from_events(messages)
    assert [(a.begin, a.end) for a in activations] == [(T0 + HOUR + 5000, T0 + HOUR + 9 * MIN), (T0 + 3 * HOUR + 7000, None)]
    rows = score(RUN, [first, second], activations)["incidents"]
    assert [r["first_alert_s"] for r in rows] == [5.0, 7.0]
    # from the alert object alone only the first raise is known
    rows = score(RUN, [first, second], activations_from_alerts([body]))["incidents"]
    assert [r["detected"] for r in rows] == [True, False]


def test_traps_may_be_blue_but_not_above() -> None:
    biogas = incident("inc-1", ("GAS-2",), T0 + HOUR, T0 + 4 * HOUR, kind="sewer_biogas", hazard=False, max_level="blue")
    stuck = incident("inc-2", ("BR-3",), T0 + HOUR, T0 + 4 * HOUR, kind="sensor_stuck", domain="bridge",
                     hazard=False, max_level="blue")
    alerts = [alert("a-1", "GAS-2", T0 + 2 * HOUR, level="blue"),
              alert("a-2", "BR-3", T0 + 2 * HOUR, level="yellow", domain="bridge")]
    result = score(RUN, [biogas, stuck], activations_from_alerts(alerts))
    assert result["traps"] == {"incidents": 2, "alerts": 2, "by_level": {"blue": 1, "yellow": 1}, "violations": ["inc-2"]}
    assert result["overall"]["incidents"] == 0 and result["false_alerts"] == []  # matched: not false


def test_maintenance_alerts_neither_detect_nor_count_as_false() -> None:
    offline = incident("inc-1", ("DRN-1", "DRN-2"), T0 + HOUR, T0 + 2 * HOUR, kind="gateway_offline",
                       domain="pipeline", hazard=False, max_level="blue", gateway="gw-drain-01")
    leak = incident("inc-2", ("GAS-1",), T0 + 5 * HOUR, T0 + 6 * HOUR)
    alerts = [alert("a-1", "gw-drain-01", T0 + HOUR + 10 * MIN, level="orange", kind="gateway_silent",
                    gateway="gw-drain-01", domain="pipeline"),
              alert("a-2", "GAS-1", T0 + 5 * HOUR + MIN, level="yellow", kind="fault"),
              alert("a-3", "GAS-8", T0 + 8 * HOUR, level="yellow", kind="silent")]
    result = score(RUN, [offline, leak], activations_from_alerts(alerts))
    rows = {r["id"]: r for r in result["incidents"]}
    assert rows["inc-1"]["maintenance_alerts"] == ["a-1"] and not rows["inc-1"]["violation"]
    assert not rows["inc-2"]["detected"] and rows["inc-2"]["maintenance_alerts"] == ["a-2"]
    assert result["false_alerts"] == [] and result["maintenance"] == {"alerts": 3, "matching_incidents": 2}


def test_localisation_error_when_alerts_carry_a_location() -> None:
    assert haversine_m((117.27, 31.86), (117.27, 31.861)) == pytest.approx(111.2, abs=0.2)
    east = haversine_m((117.27, 31.86), (117.271, 31.86))
    assert east == pytest.approx(111.2 * math.cos(math.radians(31.86)), abs=0.2)
    leak = incident("inc-1", ("GAS-1",), T0 + HOUR, T0 + 2 * HOUR, leak_location=(117.27, 31.86))
    plain = [alert("a-1", "GAS-1", T0 + HOUR + 1000)]
    row = score(RUN, [leak], activations_from_alerts(plain))["incidents"][0]
    assert row["detected"] and row["location_error_m"] is None  # no location on the alert: not located
    located = plain + [alert("a-2", "GAS-1", T0 + HOUR + 5000, location={"lon": 117.27, "lat": 31.8605})]
    result = score(RUN, [leak], activations_from_alerts(located))
    assert result["incidents"][0]["location_error_m"] == pytest.approx(55.6, abs=0.2)
    assert result["overall"]["located"] == 1 and result["overall"]["leaks"] == 1


def test_truth_file_header_and_trailer_give_sensor_hours(tmp_path: Path) -> None:
    records = [{"type": "run", "sensors": 250, "sensors_by_domain": {"gas": 100}, "sim_start": T0},
               {"id": "inc-0001", "kind": "gas_leak", "domain": "gas", "sensors": ["GAS-1"], "assets": ["MH-1"],
                "related": [{"sensor": "GAS-2", "metric": "ch4"}], "start": T0 + MIN, "end": T0 + 5 * MIN,
                "expected_level": "red", "leak_location": {"lon": 117.2, "lat": 31.8, "main": "GM-1"}},
               {"type": "run_end", "sim_end": T0 + 4 * HOUR, "sensor_hours": 1000.0}]
    run, incidents = read_truth(records)
    assert run.sensors == 250 and run.simulated_hours == 4.0 and run.sensor_hours() == 1000.0
    assert run.sensor_hours("gas") == 400.0 and run.sensor_hours("bridge") is None
    assert incidents[0].related == ("GAS-2",) and incidents[0].leak_location == (117.2, 31.8)
    assert incidents[0].hazard  # records of older truth files are hazards
    neighbour = score(run, incidents, activations_from_alerts([alert("a-1", "GAS-2", T0 + 2 * MIN)]))
    assert neighbour["incidents"][0]["detected"]  # a related sensor's alert counts
    no_header, _ = read_truth(records[1:2])
    assert no_header.sensors is None and no_header.sensor_hours() is None
    assert (no_header.sim_start, no_header.sim_end) == (T0 + MIN, T0 + 5 * MIN)
    result = score(no_header, incidents, [])
    assert result["overall"]["false_per_1000_sensor_hours"] is None
    assert "sensor-h unknown" in format_score(result)


def test_events_win_over_alert_objects_and_files_of_both_shapes(tmp_path: Path) -> None:
    body = alert("a-1", "GAS-1", T0 + HOUR, level="blue")
    records = [event(1, "raised", body), event(2, "escalated", {**body, "level": "red", "updated_at": T0 + HOUR + 40_000}),
               {**body, "level": "red", "peak_level": "red"}, alert("a-2", "GAS-3", T0 + HOUR)]
    activations = activations_from_records(records)
    assert sorted((a.alert, a.exact) for a in activations) == [("a-1", True), ("a-2", False)]
    as_list, as_lines = tmp_path / "alerts.json", tmp_path / "events.jsonl"
    as_list.write_text(json.dumps(records))
    as_lines.write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    for path in (as_list, as_lines):
        loaded, _ = load_activations(str(path))
        assert sorted((a.alert, a.levels) for a in loaded) == sorted((a.alert, a.levels) for a in activations)
    (tmp_path / "bad.json").write_text("[{")
    with pytest.raises(SourceError, match="not valid JSON"):
        load_activations(str(tmp_path / "bad.json"))
    with pytest.raises(SourceError, match="cannot read"):
        read_truth_file(tmp_path / "missing.jsonl")


def test_score_command_prints_a_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    truth = tmp_path / "truth.jsonl"
    truth.write_text("\n".join(json.dumps(r) for r in [
        {"type": "run", "sensors": 10, "sensors_by_domain": {"gas": 10}, "sim_start": T0},
        {"id": "inc-0001", "kind": "gas_leak", "domain": "gas", "sensors": ["GAS-1"], "assets": ["MH-1"],
         "start": T0 + MIN, "end": T0 + 10 * MIN, "expected_level": "red", "hazard": True},
        {"type": "run_end", "sim_end": T0 + 10 * HOUR}]) + "\n")
    alerts = tmp_path / "alerts.json"
    alerts.write_text(json.dumps([alert("a-1", "GAS-1", T0 + MIN + 12_000), alert("a-2", "GAS-4", T0 + HOUR)]))
    run = [sys.executable, "-m", "lifeline.cli", "score", "--truth", str(truth), "--alerts", str(alerts)]
    table = subprocess.run(run, capture_output=True, text=True, cwd=ROOT)
    assert table.returncode == 0, table.stderr
    assert "gas_leak" in table.stdout and "overall" in table.stdout and "a-2" in table.stdout
    capsys.readouterr()
    assert main(run[3:] + ["--json", "--hours", "5"]) == 0
    as_json = json.loads(capsys.readouterr().out)
    assert as_json["overall"]["detected"] == 1 and as_json["overall"]["first_alert_s"]["max"] == 12.0
    assert as_json["overall"]["false_per_1000_sensor_hours"] == pytest.approx(1000 / 50)  # 10 sensors x 5 h
    assert main(["score", "--truth", str(truth), "--alerts", "http://127.0.0.1:9/"]) == 2
    assert "lifeline score:" in capsys.readouterr().err

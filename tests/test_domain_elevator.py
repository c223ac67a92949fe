"""Elevator events: the lift state machine against the simulator's lift incidents (in-process),
hand-made frames for the events the simulator does not stage, and an entrapment through a real
Mosquitto and `lifeline up`."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.domain.elevator import ElevatorDetector
from ingest.batch import Batch
from lifeline.broker import PrivateBroker
from lifeline.catalogue import Catalogue
from lifeline.config import Config, ConfigError, parse_config
from simulators.city import generate_city, write_city
from simulators.scenarios import ScenarioItem
from tests.domain_city import START, city, incidents, run
from tests.service import ROOT, RunningService, wait_for


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> Config:
    return city(tmp_path_factory.mktemp("lifts"), n=150, seed=4)


def test_lift_incidents_raise_their_events_and_quiet_lifts_none(town: Config) -> None:
    planned = {i.kind: i for i in incidents(town, [
        ScenarioItem("elevator_entrapment", at_s=600.0, duration_s=1800.0),
        ScenarioItem("elevator_door_fault", at_s=900.0, duration_s=1200.0),
        ScenarioItem("elevator_overspeed", at_s=3000.0, duration_s=180.0)])}
    rows = run(town, list(planned.values()), START, START + 2 * 3600_000, ("elevator",), step_ms=60_000)
    by_sensor = {i.sensor.id: i for i in planned.values()}
    assert {r.sensor for r in rows} <= set(by_sensor)  # the city's other lifts: nothing in two hours
    for row in rows:
        incident = by_sensor[row.sensor]
        assert incident.start_ms <= row.ts <= incident.end_ms + 60_000, row

    def first(kind: str, event: str):
        return next(r for r in rows if r.sensor == planned[kind].sensor.id and r.metric == event and r.after)
    trapped = first("elevator_entrapment", "entrapment")
    start = planned["elevator_entrapment"].start_ms
    assert trapped.after == 4 and trapped.ts - start < 30_000  # red, before the terminal's own 30 s flag
    assert trapped.details["event"] == {"code": "entrapment", "zh": "困人", "en": "Passenger entrapment"}
    sensor = planned["elevator_entrapment"].sensor
    assert sensor.extra["structure"] in trapped.message and "96333" in trapped.message
    assert trapped.details["building"] == sensor.extra["structure"]
    door = first("elevator_door_fault", "door_fault")
    assert door.after == 2 and door.ts - planned["elevator_door_fault"].start_ms <= 30_000
    assert door.details["event"]["zh"] == "反复开关门"
    overspeed = first("elevator_overspeed", "overspeed")
    assert overspeed.after == 3 and overspeed.ts - planned["elevator_overspeed"].start_ms <= 10_000  # orange
    assert 1.15 <= overspeed.value < 1.25 and "governor" in overspeed.message


LIFT = textwrap.dedent("""\
    gateways: [{id: g, owner: o}]
    sensors:
      - {id: L1, gateway: g, domain: elevator, asset: LIFT-1, location: {lon: 117.2, lat: 31.8}, interval: 15,
         structure: Tower A, district: Luyang,
         metrics: {speed: m/s, floor: floor, door: state, load: "%", leveling: flag}}
    rules:
      - id: lift
        match: {domain: elevator}
        elevator: {rated_speed: 1.75, confirm: 10}
    """)
ROLES = ("speed", "floor", "door", "load", "leveling")


def frames(rows: list[tuple[float, ...]], step_ms: int = 2000) -> Batch:
    """Frames of lift L1: one (speed, floor, door, load, leveling) per `step_ms`."""
    channel = np.tile(np.arange(len(ROLES)), len(rows))
    ts = np.repeat(START + step_ms * np.arange(len(rows)), len(ROLES))
    return Batch(channel.astype(np.int32), ts.astype(np.int64), np.array(rows, np.float64).ravel())


def events(rows: list[tuple[float, ...]]) -> list[tuple[str, int, int]]:
    config = parse_config(LIFT)
    detector = ElevatorDetector.from_rules(Catalogue(config), config.rules)
    found = detector.update(frames(rows))
    return [(detector.bindings[b].metric, int(ts - START) // 2000, int(after))
            for b, ts, after in zip(found.binding, found.ts, found.level_after, strict=True)]


def test_door_and_position_events_from_frames() -> None:
    at_floor = (0.0, 3, 0, 20, 1)
    # leaves the landing with the door still open: unintended movement (red), then stops
    assert events([at_floor, (0.0, 3, 1, 20, 1), (0.4, 3, 1, 20, 1), at_floor]) == [
        ("unintended_movement", 2, 4), ("unintended_movement", 3, 0)]
    # running with the door closed, then the door opens while it runs
    assert events([at_floor, (1.5, 4, 0, 20, 0), (1.5, 5, 1, 20, 0), (0.0, 6, 0, 20, 1)]) == [
        ("door_open_moving", 2, 4), ("door_open_moving", 3, 0)]
    # the floor jumps 15 floors in 2 s: position lost (orange)
    assert events([at_floor, (0.0, 18, 0, 20, 1), (0.0, 18, 0, 20, 1)]) == [
        ("position_lost", 1, 3), ("position_lost", 2, 0)]
    # stopped outside the door zone, empty: after `confirm` (10 s) a stop event, not an entrapment
    stopped = (0.0, 3, 0, 0, 0)
    assert events([at_floor, *[stopped] * 7, at_floor]) == [("stop_outside_zone", 6, 3), ("stop_outside_zone", 8, 0)]
    # the same with people inside is an entrapment, raised at the start of the stop
    config = parse_config(LIFT)
    detector = ElevatorDetector.from_rules(Catalogue(config), config.rules)
    found = detector.update(frames([at_floor, *[(0.0, 3, 0, 30, 0)] * 7]))
    assert [detector.bindings[b].metric for b in found.binding] == ["entrapment"]
    assert int(found.ts[0] - START) == 6 * 2000 and int(found.started_at[0] - START) == 1 * 2000
    # a normal trip with door cycles at floors raises nothing
    trip = [at_floor, (0.0, 3, 1, 20, 1), at_floor, (1.0, 4, 0, 20, 0), (1.75, 6, 0, 20, 0), (0.0, 8, 0, 20, 1),
            (0.0, 8, 1, 5, 1), (0.0, 8, 0, 0, 1)]
    assert events(trip) == []


FRAME = st.tuples(st.sampled_from([0.0, 0.0, 0.3, 1.75, 2.3]), st.integers(1, 12), st.integers(0, 1),
                  st.sampled_from([0, 30]), st.integers(0, 1))


@settings(max_examples=40, deadline=None)
@given(st.lists(FRAME, min_size=1, max_size=40), st.integers(1, 7))
def test_a_feed_gives_the_same_events_whatever_its_batches(rows: list[tuple], size: int) -> None:
    """All frames of a batch are evaluated at once: the result must not depend on how the feed
    was cut into batches (one frame at a time is the plain sequential state machine)."""
    config = parse_config(LIFT)
    whole = ElevatorDetector.from_rules(Catalogue(config), config.rules)
    pieces = ElevatorDetector.from_rules(Catalogue(config), config.rules)
    batch = frames(rows)
    found = whole.update(batch)
    expected = sorted(zip(found.binding.tolist(), found.ts.tolist(), found.level_after.tolist(),
                          found.started_at.tolist(), strict=True))
    got = []
    per = size * len(ROLES)
    for start in range(0, len(batch), per):
        part = pieces.update(Batch(batch.channel[start:start + per], batch.ts[start:start + per],
                                   batch.value[start:start + per]))
        got += zip(part.binding.tolist(), part.ts.tolist(), part.level_after.tolist(), part.started_at.tolist(),
                   strict=True)
    assert sorted(got) == expected
    np.testing.assert_array_equal(whole.state, pieces.state)


def test_bad_elevator_rules_fail_with_their_line() -> None:
    text = LIFT.replace("elevator: {rated_speed: 1.75, confirm: 10}",
                        "elevator: {rated_speed: -1, events: {entrapment: purple, fire: red}, metrics: {door: 3}}")
    with pytest.raises(ConfigError) as error:
        parse_config(text, "lifts.yaml")
    problems = [str(p) for p in error.value.problems]
    assert any("lifts.yaml:9" in p and "rated_speed" in p for p in problems)
    assert any("entrapment" in p and "purple" in p for p in problems)
    assert any("fire" in p and "unknown event" in p for p in problems)


def test_entrapment_reaches_the_alert_board_through_the_service(broker: PrivateBroker, tmp_path: Path) -> None:
    config = write_city(generate_city(60, seed=2), tmp_path / "city")
    service = RunningService(config, broker.url, tmp_path / "service").start()
    try:
        simulated = subprocess.run(
            [sys.executable, "-m", "lifeline.cli", "simulate", "--config", str(config), "--mqtt", broker.url,
             "--scenario", "elevator_entrapment", "--speed", "30", "--duration", "4"],
            capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert simulated.returncode == 0, simulated.stderr

        def both() -> tuple[dict, dict] | None:
            alerts = service.get("/api/alerts?open=true&domain=elevator")
            inferred = [a for a in alerts if a["rule"] == "elevator-events" and a["metric"] == "entrapment"]
            flagged = [a for a in alerts if a["rule"] == "elevator-trapped"]
            return (inferred[0], flagged[0]) if inferred and flagged else None
        alert, flag = wait_for(both, timeout=30, message="the entrapment alerts")
    finally:
        service.stop()
    assert alert["level"] == "red" and alert["kind"] == "elevator" and alert["sensor"] == flag["sensor"]
    assert alert["event"] == {"code": "entrapment", "zh": "困人", "en": "Passenger entrapment"}
    assert "96333" in alert["message"] and alert["building"] in alert["message"]
    assert alert["raised_at"] < flag["raised_at"]  # seen before the terminal raised its own flag

"""Major hazard sources: the runaway warning (temperature and pressure rising together) against the
simulator's tank runaway, one channel rising alone, the joint slope against a scalar reference,
and the hazard grade R (GB 18218-2018)."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.domain.hazard_runaway import RunawayDetector, window_slopes
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Config, ConfigError, parse_config
from lifeline.domain_rules.hazard import grade_of
from simulators.scenarios import ScenarioItem
from tests.domain_city import START, city, incidents, run


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> Config:
    return city(tmp_path_factory.mktemp("plants"), n=150, seed=4)


def test_runaway_warns_before_either_limit_and_quiet_tanks_stay_quiet(town: Config) -> None:
    runaway, = incidents(town, [ScenarioItem("tank_runaway", at_s=1800.0, duration_s=3000.0,
                                             where={"type": ("storage_tank",)})])
    rows = run(town, [runaway], START, START + 4 * 3600_000, ("runaway", "threshold"), step_ms=60_000)
    domain = [r for r in rows if r.kind == "runaway"]
    assert domain and {r.sensor for r in domain} == {runaway.sensor.id}  # the other tanks: nothing in 4 h
    limits = [r for r in rows if r.kind == "threshold" and r.sensor == runaway.sensor.id and r.after]
    first_limit = min(r.ts for r in limits)  # high (yellow) of pressure or temperature
    red_limit = min(r.ts for r in limits if r.after == 4)  # high-high
    warned = domain[0]
    assert runaway.start_ms < warned.ts < first_limit and warned.after >= 2
    red = next(r for r in domain if r.after == 4)
    assert red.ts < red_limit  # the combined indicator reaches red before either high-high
    assert red.details["hazard_grade"]["level"] in ("I", "II", "III", "IV")
    assert red.details["slopes_per_min"]["temp"] > 0 and red.details["slopes_per_min"]["pressure"] > 0
    assert "rising together" in red.message and runaway.sensor.extra["structure"] in red.message
    assert domain[-1].after == 0 and domain[-1].ts <= runaway.end_ms + 60_000  # cleared once cooled


TANK = textwrap.dedent("""\
    gateways: [{id: g, owner: o}]
    sensors:
      - {id: T1, gateway: g, domain: hazard, asset: T-01, metrics: {pressure: MPa, temp: degC}, interval: 10,
         structure: Depot}
    rules:
      - id: runaway
        match: {domain: hazard}
        runaway: {window: 600, rates: {temp: 0.1, pressure: 0.002}, levels: {yellow: 1, red: 6},
                  grade: {by: structure, sources: {Depot: {alpha: 2, substances: [{name: LPG, q: 400, Q: 50, beta: 1.5}]}}}}
    """)


def _feed(temp_per_min: float, pressure_per_min: float, minutes: int = 30) -> list[int]:
    config = parse_config(TANK)
    detector = RunawayDetector.from_rules(Catalogue(config), config.rules)
    t = np.arange(0, minutes * 60, 10.0)
    ts = START + (t * 1000).astype(np.int64)
    pressure = 0.8 + pressure_per_min * t / 60
    temp = 20 + temp_per_min * t / 60
    batch = Batch(np.tile([0, 1], t.size).astype(np.int32), np.repeat(ts, 2),
                  np.column_stack([pressure, temp]).ravel())
    found = detector.update(batch)
    assert detector.details(0)["hazard_grade"] == {"r": 24.0, "level": "III"}
    return found.level_after.tolist()


def test_one_channel_rising_alone_is_not_a_runaway() -> None:
    assert _feed(0.5, 0.0) == []  # the temperature alone (a drifting probe, the sun)
    assert _feed(0.0, 0.05) == []  # the pressure alone (filling)
    assert _feed(0.5, 0.01) == [2]  # both, 5 x the rates: yellow, not yet red
    assert _feed(0.8, 0.02) == [4]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3_000_000), st.floats(-50, 50)), max_size=40),
       st.lists(st.tuples(st.integers(0, 2), st.integers(-100_000, 3_100_000)), min_size=1, max_size=10))
def test_window_slopes_are_least_squares_over_each_window(readings, queries) -> None:
    readings = sorted(readings, key=lambda r: (r[0], r[1]))
    series = np.array([r[0] for r in readings], np.int64)
    ts = np.array([r[1] for r in readings], np.int64)
    value = np.array([r[2] for r in readings], np.float64)
    window_ms = np.array([600_000, 60_000, 1_800_000], np.int64)
    wanted = np.array([q[0] for q in queries], np.int64)
    at = np.array([q[1] for q in queries], np.int64)
    slope, points, covered = window_slopes(series, ts, value, window_ms, wanted, at)
    for i, (s, t_at) in enumerate(queries):  # scalar reference: select the window, fit a line
        inside = [(t, v) for (rs, t, v) in readings if rs == s and t_at - window_ms[s] <= t <= t_at]
        assert points[i] == len(inside)
        times = np.array([t for t, _ in inside], np.float64) / 1000.0
        if len(inside) < 2 or np.ptp(times) == 0:
            assert np.isnan(slope[i])
            continue
        expected = np.polyfit(times - times.min(), [v for _, v in inside], 1)[0]
        assert slope[i] == pytest.approx(expected, rel=1e-6, abs=1e-9)
        assert covered[i] == (min(t for t, _ in inside) <= t_at - window_ms[s] // 2)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.floats(-1.0, 2.0), st.floats(-0.01, 0.05)), min_size=10, max_size=150),
       st.integers(1, 40))
def test_runaway_gives_the_same_levels_whatever_its_batches(rates: list[tuple[float, float]], size: int) -> None:
    """Temperature and pressure following piecewise rates (per minute), every 10 s; fed whole or
    cut into batches of `size` readings, the findings are the same."""
    temp = 20 + np.cumsum([r[0] / 6 for r in rates])
    pressure = 0.8 + np.cumsum([r[1] / 6 for r in rates])
    ts = START + 10_000 * np.arange(len(rates), dtype=np.int64)
    batch = Batch(np.tile([0, 1], len(rates)).astype(np.int32), np.repeat(ts, 2),
                  np.column_stack([pressure, temp]).ravel())
    config = parse_config(TANK)
    whole = RunawayDetector.from_rules(Catalogue(config), config.rules)
    pieces = RunawayDetector.from_rules(Catalogue(config), config.rules)
    found = whole.update(batch)
    got = []
    for start in range(0, len(batch), size):
        part = pieces.update(Batch(batch.channel[start:start + size], batch.ts[start:start + size],
                                   batch.value[start:start + size]))
        got += zip(part.ts.tolist(), part.level_after.tolist(), strict=True)
    assert got == list(zip(found.ts.tolist(), found.level_after.tolist(), strict=True))


def test_hazard_grade_r_and_levels() -> None:
    bounds = {"I": 100.0, "II": 50.0, "III": 10.0}
    ammonia = grade_of(2.0, [(2.0, 300.0, 10.0)], bounds)  # liquid ammonia 300 t, Q 10 t, >100 people near
    assert ammonia.r == pytest.approx(120.0) and ammonia.level == "I"
    assert grade_of(1.0, [(1.5, 50.0, 50.0), (1.0, 10.0, 20.0)], bounds).level == "IV"  # R = 2.0
    assert grade_of(1.2, [(1.5, 400.0, 50.0)], bounds).level == "III"  # R = 14.4
    assert grade_of(1.5, [(2.0, 200.0, 10.0)], bounds).level == "II"  # R = 60


def test_bad_runaway_rules_fail_with_their_line() -> None:
    text = TANK.replace("rates: {temp: 0.1, pressure: 0.002}", "rates: {temp: 0.1}").replace("Q: 50", "Q: 0")
    with pytest.raises(ConfigError) as error:
        parse_config(text, "plant.yaml")
    problems = [str(p) for p in error.value.problems]
    assert any("plant.yaml:8" in p and "pressure" in p for p in problems)
    assert any(".Q" in p and "greater than 0" in p for p in problems)


def test_every_alert_of_a_graded_source_carries_its_grade(tmp_path) -> None:
    """The grade weighs every alert of the plant (toxic gas, process limits), not only the runaway."""
    from detectors.registry import build_detectors
    from simulators.city import city_config

    config = city_config(100)
    catalogue = Catalogue(config)
    grades = build_detectors(catalogue, config.rules).grades
    plants = {s.id: s.extra["structure"] for s in catalogue.sensors if s.domain == "hazard"}
    assert set(grades) == set(plants)  # tanks and gas detectors of every plant
    by_plant = {plants[sensor]: grade for sensor, grade in grades.items()}
    assert by_plant["Anhui Jinhe LPG Depot"] == {"r": 24.0, "level": "III"}  # named in the rule: 2 x 1.5 x 400/50
    assert by_plant["Hefei Tianyuan Chemical Co."] == {"r": 5.4, "level": "IV"}  # the rule's default
    gas_detector = next(s for s in plants if "NH3" in s and plants[s] == "Hefei Tianyuan Chemical Co.")
    assert grades[gas_detector] == {"r": 5.4, "level": "IV"}
    assert not build_detectors(catalogue, [r for r in config.rules if r.kind != "runaway"]).grades

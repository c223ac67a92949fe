"""Pipeline bursts (rule key `pipe_burst`) and district mass balance (`mass_balance`) against the
generated city's bursts with ground truth; the wave kernels against scalar references; and the
gas and pipeline detectors end to end through Mosquitto and `lifeline up`.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.domain.pipeline_balance import MassBalanceDetector
from detectors.domain.pipeline_burst import PipeBurstDetector
from detectors.domain.pipeline_wave import POST_SAMPLES, arrival_difference_ms, burst_position, front_drops
from lifeline.broker import PrivateBroker
from lifeline.catalogue import Catalogue
from lifeline.config import Config, ConfigError, load_config, parse_config
from lifeline.levels import LEVEL_NUMBER
from simulators.city import city_config, generate_city, write_city
from simulators.incidents import Incident
from simulators.run import ReadingSchedule, decimation_for
from simulators.scenarios import Scenario, ScenarioItem, plan
from simulators.scoring import haversine_m
from simulators.signals import Baseline
from tests.service import Gateway, RunningService, wait_for
from tests.test_domain_gas import Change, drive

ROOT = Path(__file__).resolve().parent.parent
START = 1763798400000  # 2025-11-22 08:00 Hefei
HOUR = 3600_000


def _pipelines_only(config: Config) -> Config:
    sensors = tuple(s for s in config.sensors if s.domain == "pipeline")
    gateways = tuple(g for g in config.gateways if any(s.gateway == g.id for s in sensors))
    return dataclasses.replace(config, sensors=sensors, gateways=gateways)


@pytest.fixture(scope="module")
def water() -> Config:
    return _pipelines_only(city_config(300, seed=4))


def _burst(config: Config, at_s: float = 0.0, duration_s: float = 1800.0) -> Incident:
    baseline = Baseline(config.sensors, seed=1, rules=config.rules)
    item = ScenarioItem("water_main_burst", at_s=at_s, duration_s=duration_s, where={"type": ("transient_pressure",)})
    (burst,) = plan(config, baseline, Scenario("burst", (item,)), START, seed=1)
    return burst


def _detectors(config: Config) -> list:
    catalogue = Catalogue(config)
    return [PipeBurstDetector.from_rules(catalogue, config.rules), MassBalanceDetector.from_rules(catalogue, config.rules)]


def _error_m(change: Change, burst: Incident) -> float:
    truth, where = burst.truth()["leak_location"], change.details["location"]
    return haversine_m((where["lon"], where["lat"]), (truth["lon"], truth["lat"]))


@pytest.fixture(scope="module")
def burst_run(water: Config) -> tuple[Incident, list[Change]]:
    """Three quiet hours (the mass balance learns its district), then a burst lasting 40 minutes."""
    burst = _burst(water, duration_s=2400.0)
    return burst, drive(water, [burst], _detectors(water), START - 3 * HOUR, START + HOUR, step_ms=30_000)


def test_burst_is_detected_at_once_and_located_between_its_loggers(burst_run) -> None:
    burst, changes = burst_run
    truth = burst.truth()
    raised = [c for c in changes if c.rule == "water-main-burst" and c.after > 0]
    assert len(raised) == 1
    alert = raised[0]
    assert alert.ts - burst.start_ms < 2000  # the wave front itself
    assert alert.sensor == truth["upstream"] and alert.details["downstream"] == truth["downstream"]
    assert alert.details["segment"] == truth["leak_location"]["segment"]
    assert alert.after == LEVEL_NUMBER["red"]  # the pressure fell more than 0.15 MPa at the nearest logger
    assert _error_m(alert, burst) < 50.0
    true_dt = truth["arrivals"][truth["upstream"]] - truth["arrivals"][truth["downstream"]]
    assert abs(alert.details["arrival_difference_ms"] - true_dt) < 40  # two samples at 50 Hz
    assert f"between {truth['upstream']} and {truth['downstream']}" in alert.message
    cleared = [c for c in changes if c.rule == "water-main-burst" and c.after == 0]
    assert cleared and burst.end_ms - 60_000 <= cleared[0].ts <= burst.end_ms + 120_000  # after the repair


def test_mass_balance_sees_the_burst_flow_and_nothing_before(burst_run) -> None:
    burst, changes = burst_run
    balance = [c for c in changes if c.rule == "water-district-balance"]
    main = burst.truth()["leak_location"]["main"]
    assert balance and {c.details["main"] for c in balance} == {main}
    first = balance[0]
    assert burst.start_ms < first.ts <= burst.start_ms + 20 * 60_000
    assert max(c.after for c in balance) >= LEVEL_NUMBER["orange"]  # 150-400 m3/h burst flow
    assert balance[-1].after == 0 and balance[-1].ts <= burst.end_ms + 20 * 60_000
    assert all(c.ts >= burst.start_ms for c in changes)  # three quiet hours without a single alert


def test_burst_found_in_real_time_and_thinned_feeds(water: Config) -> None:
    """Live (windows of 2 s: a capture often arrives after a periodic block it overlaps) and as
    compressed for the scenario suite (periodic blocks thinned; captures always sent)."""
    burst = _burst(water, at_s=0.0, duration_s=600.0)
    truth = burst.truth()
    schedule = ReadingSchedule(water.sensors, 1)
    for step_ms, decimation in ((2000, 1), (600_000, decimation_for(schedule, 3000.0))):
        detectors = _detectors(water)[:1]
        changes = drive(water, [burst], detectors, burst.start_ms - 300_000, burst.start_ms + 300_000,
                        step_ms=step_ms, decimation=decimation)
        raised = [c for c in changes if c.after > 0]
        assert len(raised) == 1 and raised[0].sensor == truth["upstream"], (step_ms, decimation)
        assert _error_m(raised[0], burst) < 50.0, (step_ms, decimation)


# ----------------------------------------------------------------------------------------------
# Kernels against scalar references
# ----------------------------------------------------------------------------------------------

@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.floats(-1.0, 1.0), min_size=1, max_size=40), min_size=1, max_size=5),
       st.integers(1, 10), st.integers(2, 25))
def test_front_drops_match_the_scalar_reference(runs: list[list[float]], front: int, pre: int) -> None:
    values = np.concatenate([np.array(r) for r in runs])
    run_start = np.concatenate([np.full(len(r), sum(len(x) for x in runs[:i])) for i, r in enumerate(runs)])
    got = front_drops(values, run_start, np.full(values.size, front), np.full(values.size, pre))
    for j in range(values.size):
        first = j - front - pre + 1
        if first < run_start[j]:
            assert np.isnan(got[j])
            continue
        want = np.mean(values[first:j - front + 1]) - np.mean(values[j - POST_SAMPLES + 1:j + 1])
        assert got[j] == pytest.approx(want, abs=1e-9)


@settings(max_examples=60, deadline=None)
@given(st.floats(-2000.0, 2000.0), st.floats(0.05, 0.3), st.floats(0.03, 1.0), st.integers(0, 2**32 - 1))
def test_cross_correlation_finds_the_arrival_difference(shift_ms: float, drop: float, share: float,
                                                        seed: int) -> None:
    """Fronts of 0.05-0.3 MPa and, farther from the burst, at least 0.03 MPa (the city's loggers
    within 2 km of a burst), 0.1 s rise, 1.5 kPa noise, 1 kPa resolution; records from 1 s
    before to 5 s after each logger's own front, as the detector keeps them."""
    rng = np.random.default_rng(seed)

    def record(arrival: float, size: float) -> tuple[np.ndarray, np.ndarray]:
        t = np.arange(arrival - 1000.0, arrival + 5000.0, 20.0)
        noisy = 0.3 - size * np.clip((t - arrival) / 100.0, 0.0, 1.0) + rng.normal(0, 0.0015, t.size)
        return t, np.round(noisy, 3)  # the loggers resolve 0.001 MPa
    (ta, a), (tb, b) = record(4000.0 + shift_ms, drop), record(4000.0, max(0.03, share * drop))
    dt = arrival_difference_ms(ta, a, tb, b, 20.0, 2500.0)
    assert dt is not None and abs(dt - shift_ms) <= 30.0


def test_burst_position_formula() -> None:
    # DOMAIN.md: x = (L + a * dt) / 2 from the upstream logger, dt = upstream minus downstream
    assert burst_position(2000.0, 1000.0, -1.0) == 500.0
    assert burst_position(2000.0, 1000.0, 0.0) == 1000.0
    assert burst_position(2000.0, 1000.0, 5.0) == 2000.0  # never beyond the segment


CONFIG = """
gateways: [{id: gw, owner: Water}]
sensors:
  - {id: WP-1, gateway: gw, domain: pipeline, type: transient_pressure, asset: S1, location: {lon: 117.2, lat: 31.8},
     metrics: {pressure: MPa}, interval: 60, main: M, position_m: 0, rate_hz: 50}
rules:
  - id: burst
    match: {domain: pipeline}
    pipe_burst: {BURST}
  - id: balance
    match: {domain: pipeline}
    mass_balance: {BALANCE}
"""


def test_pipeline_rules_defaults_and_errors() -> None:
    config = parse_config(CONFIG.replace("BURST", "wave_speed: 1100").replace("BALANCE", "warmup: 6"), "p.yaml")
    burst, balance = (r.spec for r in config.rules)
    assert burst.wave_speed == 1100 and burst.levels["red"] == 0.15 and burst.metric == "pressure"
    assert balance.warmup == 6 and balance.metric == "flow" and balance.hold_s == 600
    with pytest.raises(ConfigError) as bad:
        parse_config(CONFIG.replace("BURST", "wave_speed: -3, front: fast").replace(
            "BALANCE", "learn: 1.5, warmup: 0, levels: {red: 1, blue: 5}"), "p.yaml")
    problems = [str(p) for p in bad.value.problems]
    for field in ("pipe_burst.wave_speed", "pipe_burst.front", "mass_balance.learn", "mass_balance.warmup",
                  "mass_balance.levels"):
        assert any(f"p.yaml:9: rules[burst].{field}" in p or f"p.yaml:12: rules[balance].{field}" in p
                   for p in problems), (field, problems)


# ----------------------------------------------------------------------------------------------
# End to end: simulator -> Mosquitto -> lifeline up -> API, scored against the truth
# ----------------------------------------------------------------------------------------------

SCENARIO = """name: gas-and-water
length: 2h
incidents:
  - {kind: gas_leak, at: 10m, duration: 20m, where: {type: manhole_methane}}
  - {kind: sewer_biogas, at: 5m, duration: 100m, where: {type: manhole_methane}}
  - {kind: water_main_burst, at: 30m, duration: 40m, where: {type: transient_pressure}}
"""


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeline.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_gas_and_pipeline_detectors_through_the_service(broker: PrivateBroker, tmp_path: Path) -> None:
    config_path = write_city(generate_city(100, seed=1), tmp_path / "city")
    scenario = tmp_path / "gas-and-water.yaml"
    scenario.write_text(SCENARIO)
    service = RunningService(config_path, broker.url, tmp_path / "service").start()
    try:
        truth_path = tmp_path / "truth.jsonl"
        simulated = _cli("simulate", "--config", str(config_path), "--mqtt", broker.url, "--scenario", str(scenario),
                         "--speed", "3000", "--truth", str(truth_path))
        assert simulated.returncode == 0, simulated.stderr
        summary = json.loads(simulated.stdout.strip().splitlines()[-1].split("lifeline simulate: ", 1)[1])
        # Batches are evaluated in order: once a last reading, sent after the run, has raised its
        # alert, every reading of the run has been through the detectors.
        lift = next(s for s in load_config(config_path).sensors if s.domain == "elevator")
        gateway = Gateway(broker.url, lift.gateway)
        gateway.send({lift.id: {"ts": summary["sim_end"], "values": {"trapped": 1}}})
        gateway.close()
        wait_for(lambda: any(a["sensor"] == lift.id for a in service.get("/api/alerts")), timeout=120,
                 message="the run to be through the detectors")
        alerts = service.get("/api/alerts?open=true") + service.get("/api/alerts?open=false")
        scored = _cli("score", "--truth", str(truth_path), "--alerts", service.url, "--token", service.token(), "--json")
        assert scored.returncode == 0, scored.stderr
    finally:
        service.stop()
    rows = {r["kind"]: r for r in json.loads(scored.stdout)["incidents"]}
    incidents = {r["kind"]: r for r in map(json.loads, truth_path.read_text().splitlines()) if "kind" in r}
    mine = [a for a in alerts if a["rule"] in ("gas-main-leak", "water-main-burst", "water-district-balance")]
    leak, burst, biogas = incidents["gas_leak"], incidents["water_main_burst"], incidents["sewer_biogas"]

    gas_alert = next(a for a in mine if a["rule"] == "gas-main-leak" and a["sensor"] == leak["sensors"][0])
    assert gas_alert["peak_level"] == "red" and gas_alert["metric"] == "leak" and gas_alert["kind"] == "gas_leak"
    assert gas_alert["main"] == leak["leak_location"]["main"] and "location" in gas_alert
    burst_alert = next(a for a in mine if a["rule"] == "water-main-burst")
    assert burst_alert["sensor"] == burst["upstream"] and burst_alert["peak_level"] == "red"
    assert burst_alert["raised_at"] - burst["start"] < 2000
    assert rows["gas_leak"]["detected"] and rows["gas_leak"]["location_error_m"] < 150
    assert rows["water_main_burst"]["detected"] and rows["water_main_burst"]["location_error_m"] < 50
    # the biogas trap: the leak detector stays silent on it; nothing at yellow or above
    assert not [a for a in mine if a["sensor"] == biogas["sensors"][0]]
    assert rows["sewer_biogas"]["violation"] is False
    involved = {s for r in incidents.values() for s in r["sensors"] + [x["sensor"] for x in r["related"]]}
    assert [a["sensor"] for a in mine if a["sensor"] not in involved] == []  # no false alerts of these rules


def test_burst_alert_restored_after_a_restart_clears_on_recovery(water: Config) -> None:
    from ingest.batch import Batch
    detector = PipeBurstDetector.from_rules(Catalogue(water), water.rules)
    binding = detector.bindings[0]
    red = LEVEL_NUMBER["red"]
    detector.restore(0, red, START - 60_000, START)

    def block(first_ms: int, level: float) -> Batch:
        ts = first_ms + 20 * np.arange(50, dtype=np.int64)
        return Batch(np.full(50, binding.channel.index, np.int32), ts, np.full(50, level))
    assert len(detector.update(block(START + 60_000, 0.12))) == 0  # still down: the burst goes on
    found = detector.update(block(START + 120_000, 0.30))  # repaired
    assert found.level_before.tolist() == [red] and found.level_after.tolist() == [0]
    assert "cleared" in detector.message(0, red, 0, float(found.value[0]), float(found.limit[0]))

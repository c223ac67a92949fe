"""Gas leak detection (rule key `gas_leak`) against the generated city's incidents with ground truth.

The city's own feed (simulator signals, incidents, the service's decoder) is driven in-process
through the detectors, without a broker: a leak, the sewer-biogas trap and a slow leak happen
at once on different mains of a 300-sensor city. The end-to-end run through Mosquitto and
`lifeline up` is in test_domain_pipeline.py (it covers both domains).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.domain.gas import GasLeakDetector, leak_log_odds
from detectors.threshold import ThresholdDetector
from ingest.decode import TelemetryDecoder
from lifeline.catalogue import Catalogue
from lifeline.config import Config, ConfigError, parse_config
from lifeline.domain_rules.gas import DEFAULT_WEIGHTS
from lifeline.levels import LEVEL_NUMBER
from simulators.city import city_config
from simulators.incidents import Incident
from simulators.run import ReadingSchedule, TelemetryBatcher
from simulators.scenarios import Scenario, ScenarioItem, plan
from simulators.scoring import haversine_m
from simulators.signals import Baseline

START = 1763798400000  # 2025-11-22 08:00 Hefei
YELLOW = LEVEL_NUMBER["yellow"]
RED = LEVEL_NUMBER["red"]


@dataclasses.dataclass(frozen=True)
class Change:
    """One level change of a detector, as the pipeline would turn it into an alert event."""

    rule: str
    sensor: str
    ts: int
    before: int
    after: int
    message: str
    details: dict


def _gas_only(config: Config) -> Config:
    """The city's gas network alone (same sensors, signals and rules; a faster test)."""
    sensors = tuple(s for s in config.sensors if s.domain == "gas")
    gateways = tuple(g for g in config.gateways if any(s.gateway == g.id for s in sensors))
    return dataclasses.replace(config, sensors=sensors, gateways=gateways)


def drive(config: Config, incidents: list[Incident], detectors: list, after_ms: int, until_ms: int,
          step_ms: int = 60_000, decimation: int = 1) -> list[Change]:
    """The simulator's messages for (after_ms, until_ms], in windows of `step_ms` as a gateway
    would publish them, decoded by the service's decoder and evaluated window by window."""
    baseline = Baseline(config.sensors, seed=1, rules=config.rules, owners={g.id: g.owner for g in config.gateways})
    batcher = TelemetryBatcher(config, baseline, ReadingSchedule(config.sensors, 1), decimation)
    decoder = TelemetryDecoder(Catalogue(config), 100_000)
    changes: list[Change] = []
    t = after_ms
    while t < until_ms:
        until = min(until_ms, t + step_ms)
        for gateway, payload, _, _ in batcher.messages(t, until, incidents):
            decoded = decoder.decode(gateway, payload, until + 1000)
            assert not decoded.rejections
            for detector in detectors:
                found = detector.update(decoded.batch)
                for i in range(len(found)):
                    b = int(found.binding[i])
                    binding = detector.bindings[b]
                    before, after = int(found.level_before[i]), int(found.level_after[i])
                    changes.append(Change(binding.rule.id, binding.channel.sensor.id, int(found.ts[i]), before, after,
                                          detector.message(b, before, after, float(found.value[i]),
                                                           float(found.limit[i])), detector.details(b)))
        t = until
    return changes


@pytest.fixture(scope="module")
def gas_city() -> Config:
    return _gas_only(city_config(300, seed=4))


@pytest.fixture(scope="module")
def incidents(gas_city: Config) -> dict[str, Incident]:
    baseline = Baseline(gas_city.sensors, seed=1, rules=gas_city.rules)
    items = (ScenarioItem("gas_leak", at_s=600.0, duration_s=1200.0),
             ScenarioItem("sewer_biogas", at_s=600.0, duration_s=4 * 3600.0),
             ScenarioItem("slow_leak", at_s=600.0, duration_s=3 * 3600.0))
    planned = list(plan(gas_city, baseline, Scenario("gas", items), START, seed=1))
    assert len({i.sensor.extra["main"] for i in planned}) == 3  # three different mains
    return {i.kind: i for i in planned}


@pytest.fixture(scope="module")
def changes(gas_city: Config, incidents: dict[str, Incident]) -> list[Change]:
    catalogue = Catalogue(gas_city)
    detectors = [GasLeakDetector.from_rules(catalogue, gas_city.rules),
                 ThresholdDetector.from_rules(catalogue, [r for r in gas_city.rules if r.id == "gas-manhole-ch4"])]
    return drive(gas_city, list(incidents.values()), detectors, START - 1_800_000, START + 4 * 3600_000)


def _leak(changes: list[Change], sensor: str | None = None) -> list[Change]:
    return [c for c in changes if c.rule == "gas-main-leak" and (sensor is None or c.sensor == sensor)]


def _first(changes: list[Change], rule: str, sensor: str, level: int) -> int:
    return min(c.ts for c in changes if c.rule == rule and c.sensor == sensor and c.after >= level)


def _located_error_m(change: Change, incident: Incident) -> float:
    truth = incident.truth()["leak_location"]
    where = change.details["location"]
    return haversine_m((where["lon"], where["lat"]), (truth["lon"], truth["lat"]))


def test_gas_leak_is_red_before_the_threshold_and_located(changes: list[Change], incidents: dict) -> None:
    leak = incidents["gas_leak"]
    mine = _leak(changes, leak.sensor.id)
    assert mine and mine[0].ts - leak.start_ms <= 30_000
    red = _first(changes, "gas-main-leak", leak.sensor.id, RED)
    assert red - leak.start_ms <= 60_000
    assert red < _first(changes, "gas-manhole-ch4", leak.sensor.id, RED)  # the plain threshold is later
    raised = next(c for c in mine if c.after == RED)
    assert raised.details["kind"] == "gas_leak" and raised.details["likelihood"] > 0.9 and raised.details["ethane"]
    assert _located_error_m(raised, leak) < 150.0
    main, asset = leak.sensor.extra["main"], leak.sensor.asset
    assert "ethane present" in raised.message and f"likely gas leak near {asset}" in raised.message
    assert raised.details["main"] == main and raised.details["position_m"] >= 0


def test_one_alert_per_leak_on_the_most_likely_manhole(changes: list[Change], incidents: dict) -> None:
    leak = incidents["gas_leak"]
    neighbours = {sensor for sensor, _ in leak.related}
    assert neighbours, "the leak reaches the neighbouring manholes"
    during = [c for c in _leak(changes) if c.sensor in neighbours and leak.start_ms <= c.ts <= leak.end_ms]
    assert during == []


def test_sewer_biogas_trap_stays_below_yellow(changes: list[Change], incidents: dict) -> None:
    biogas = incidents["sewer_biogas"]
    # the trap is real: the plain CH4 threshold sees it (blue) ...
    assert any(c.sensor == biogas.sensor.id and c.after >= 1 for c in changes if c.rule == "gas-manhole-ch4")
    # ... but without ethane the leak detector does not call it a leak
    assert max((c.after for c in _leak(changes, biogas.sensor.id)), default=0) < YELLOW


def test_slow_leak_warned_long_before_the_threshold(changes: list[Change], incidents: dict) -> None:
    slow = incidents["slow_leak"]
    mine = _first(changes, "gas-main-leak", slow.sensor.id, YELLOW)
    plain = _first(changes, "gas-manhole-ch4", slow.sensor.id, YELLOW)
    assert plain - mine >= 20 * 60_000, f"only {(plain - mine) / 60_000:.0f} min earlier"
    raised = next(c for c in _leak(changes, slow.sensor.id) if c.after >= YELLOW)
    assert _located_error_m(raised, slow) < 150.0


def test_quiet_manholes_raise_nothing(changes: list[Change], incidents: dict) -> None:
    involved = {s for i in incidents.values() for s in (i.sensor.id, *(r for r, _ in i.related))}
    assert [c for c in _leak(changes) if c.sensor not in involved] == []


# ----------------------------------------------------------------------------------------------
# The evidence model and the configuration
# ----------------------------------------------------------------------------------------------

def _scalar_log_odds(w: dict[str, float], ethane: int, ch4: float, level_ref: float, fluctuation: float,
                     trend: float, tracking: float, corroborating: int) -> float:
    """The documented sum of evidence, one manhole at a time (reference for the kernel)."""
    odds = w["bias"]
    if ethane > 0:
        odds += w["ethane"]
    elif ethane < 0:
        odds += w["no_ethane"]
    odds += w["level"] * min(max(ch4, 0.0) / level_ref, 2.0)
    odds += w["fluctuation"] * fluctuation + w["trend"] * trend + w["neighbour"] * corroborating
    odds -= w["temperature"] * tracking * (1.0 - fluctuation)
    return odds


unit = st.floats(0.0, 1.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([-1, 0, 1]), st.floats(-5.0, 120.0), st.floats(0.5, 20.0), unit, unit,
                          unit, st.integers(0, 4)), min_size=1, max_size=20),
       st.dictionaries(st.sampled_from(list(DEFAULT_WEIGHTS)), st.floats(-5.0, 5.0)))
def test_log_odds_kernel_matches_the_scalar_reference(rows: list, overrides: dict) -> None:
    weights = {**DEFAULT_WEIGHTS, **overrides}
    table = np.tile(np.array(list(weights.values())), (len(rows), 1))
    columns = [np.array(c) for c in zip(*rows, strict=True)]
    got = leak_log_odds(table, columns[0].astype(np.int8), *columns[1:])
    want = [_scalar_log_odds(weights, *row) for row in rows]
    assert np.allclose(got, want, rtol=1e-12, atol=1e-12)


CONFIG = """
gateways: [{id: gw, owner: Gas Co}]
sensors:
  - {id: GAS-1, gateway: gw, domain: gas, type: manhole_methane, asset: MH-1, location: {lon: 117.2, lat: 31.8},
     metrics: {ch4: "%LEL", c2h6: ppm, temp: degC}, interval: 120, main: G-1, seq: 1, position_m: 0}
rules:
  - id: leak
    match: {domain: gas}
    gas_leak:
RULE
"""


def test_gas_leak_rule_defaults_and_errors(tmp_path: Path) -> None:
    config = parse_config(CONFIG.replace("RULE", "      levels: {yellow: 3, red: 20}\n      window: 600"), "c.yaml")
    spec = config.rules[0].spec
    assert spec.levels == {"yellow": 3, "red": 20} and spec.window_s == 600 and spec.ethane == "c2h6"
    assert spec.weights == DEFAULT_WEIGHTS and spec.neighbours == 2
    with pytest.raises(ConfigError) as bad:
        parse_config(CONFIG.replace("RULE", "      levels: {yellow: 20, red: 3}\n      clear: 1.5\n"
                                            "      weights: {ethane: high, colour: 1}\n      smell: 3"), "c.yaml")
    problems = [str(p) for p in bad.value.problems]
    assert any("c.yaml:10: rules[leak].gas_leak.levels" in p and "increase" in p for p in problems)
    assert any("c.yaml:11: rules[leak].gas_leak.clear" in p for p in problems)
    assert any("c.yaml:12: rules[leak].gas_leak.weights.ethane" in p for p in problems)
    assert any("rules[leak].gas_leak.weights.colour" in p for p in problems)
    assert any("c.yaml:13: rules[leak].gas_leak.smell" in p for p in problems)


def test_manhole_without_main_or_ethane_still_works(tmp_path: Path) -> None:
    text = CONFIG.replace("main: G-1, seq: 1, position_m: 0", "x: 1").replace("c2h6: ppm, ", "").replace("RULE", "")
    config = parse_config(text, "c.yaml")
    detector = GasLeakDetector.from_rules(Catalogue(config), config.rules)
    (binding,) = detector.bindings
    assert binding.ethane == -1 and binding.main is None and math.isnan(binding.position_m)
    from ingest.batch import Batch
    channels = Catalogue(config).channels_of["GAS-1"]
    ts = START + np.arange(0, 120_000, 5000, dtype=np.int64)
    ch4 = 30.0 + 8.0 * np.sin(np.arange(ts.size))  # strongly fluctuating, high: no ethane channel to tell
    found = detector.update(Batch(np.full(ts.size, channels["ch4"], np.int32), ts, ch4))
    assert len(found) and int(found.level_after.max()) >= YELLOW
    assert detector.details(0).get("location") is None
    assert "no ethane channel" in detector.message(0, 0, int(found.level_after[-1]), float(found.value[-1]),
                                                   float(found.limit[-1]))

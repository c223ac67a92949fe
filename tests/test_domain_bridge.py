"""Bridge domain detectors: natural-frequency tracking and span overload, against the simulator's
incidents with ground truth (in-process: simulator batcher -> service decoder -> detectors)."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors.domain.bridge_modal import mode_frequency
from lifeline.config import Config, ConfigError, parse_config
from simulators.run import ReadingSchedule, decimation_for
from simulators.scenarios import ScenarioItem
from tests.domain_city import START, city, incidents, run

KINDS = ("bridge_modal", "bridge_overload")


@pytest.fixture(scope="module")
def town(tmp_path_factory) -> Config:
    return city(tmp_path_factory.mktemp("bridges"), n=150, seed=4)


def test_stiffness_loss_is_seen_at_its_level_even_with_thinned_blocks(town: Config) -> None:
    # the scenario suite at speed 3000 sends only every k-th periodic block; modal tracking must
    # still learn its baseline and see the drop from the triggered capture and the blocks left
    k = decimation_for(ReadingSchedule(town.sensors, 1), 3000.0)
    assert k > 1
    loss, = incidents(town, [ScenarioItem("bridge_stiffness_loss", at_s=3600.0, duration_s=3 * 3600.0,
                                          params={"drop": 0.12})])
    rows = run(town, [loss], START, loss.end_ms - 600_000, KINDS, step_ms=600_000, decimation=k)
    modal = [r for r in rows if r.kind == "bridge_modal"]
    assert modal and {r.asset for r in modal} == {loss.sensor.asset}  # no other span, no overload
    raised = modal[0]
    assert raised.ts >= loss.start_ms and raised.after >= 2  # yellow (10 %) or more, after the damage
    assert 10.0 <= raised.value < 15.0  # the drop in percent, 12 % injected
    assert raised.details["kind"] == "modal" and 0.86 < raised.details["corrected_hz"] / \
        raised.details["baseline_hz"] < 0.90
    assert "stiffness loss" in raised.message and loss.sensor.extra["structure"] in raised.message
    assert all(r.after > 0 for r in modal)  # it stays raised while the span is damaged


def test_overload_needs_several_gauges_of_one_span(town: Config) -> None:
    planned = {i.kind: i for i in incidents(town, [
        ScenarioItem("bridge_overload", at_s=1800.0, duration_s=900.0, where={"type": ("strain_gauge",)}),
        ScenarioItem("sensor_spikes", at_s=600.0, duration_s=2 * 3600.0, where={"type": ("strain_gauge",)})])}
    overload, spikes = planned["bridge_overload"], planned["sensor_spikes"]
    assert overload.sensor.asset != spikes.sensor.asset
    rows = run(town, [overload, spikes], START, START + 3 * 3600_000, KINDS, step_ms=300_000)
    assert rows and {(r.kind, r.asset) for r in rows} == {("bridge_overload", overload.sensor.asset)}
    raised = rows[0]
    assert overload.start_ms <= raised.ts <= overload.start_ms + 60_000
    assert max(r.after for r in rows) >= 2 and rows[-1].after == 0  # yellow at least, cleared after
    assert rows[-1].ts <= overload.end_ms + 60_000
    loaded = raised.details["loaded"]
    assert len([s for s in loaded if s["share_pct"] >= 30]) >= 2  # the isolated spikes never count


@settings(max_examples=60, deadline=None)
@given(frequency=st.floats(1.5, 5.5), noise=st.floats(0.0, 0.5), phase=st.floats(0, 6.28))
def test_mode_frequency_finds_a_damped_mode(frequency: float, noise: float, phase: float) -> None:
    rate = 100.0
    t = np.arange(2000) / rate
    rng = np.random.default_rng(int(frequency * 1000))
    # a narrow band around the mode (+-1 %), like ambient vibration, plus white noise
    wave = sum(np.cos(2 * math.pi * frequency * (1 + d) * t + phase + i) for i, d in enumerate((-0.01, 0, 0.01)))
    block = wave + noise * rng.standard_normal(t.size)
    estimate = mode_frequency(block[None, :], rate, 1024, (1.0, 6.0))[0]
    assert abs(estimate / frequency - 1) < 0.01


def test_bad_bridge_rules_fail_with_their_line() -> None:
    text = textwrap.dedent("""\
        gateways: [{id: g, owner: o}]
        sensors:
          - {id: A, gateway: g, domain: bridge, asset: S1, metrics: {acc_z: m/s2}, interval: 600}
        rules:
          - id: modal
            match: {domain: bridge}
            bridge_modal: {band: [6, 1], drop: {yellow: 10, blue: 12}}
          - id: overload
            match: {domain: bridge}
            bridge_overload: {sensors: 0, levels: {red: 0.8}}
        """)
    with pytest.raises(ConfigError) as error:
        parse_config(text, "city.yaml")
    problems = [str(p) for p in error.value.problems]
    assert any("city.yaml:7" in p and "band" in p for p in problems)
    assert any("city.yaml:7" in p and "strictly increase" in p for p in problems)
    assert any("city.yaml:10" in p and "design" in p for p in problems)
    assert any("city.yaml:10" in p and "sensors" in p for p in problems)


def test_generated_city_rules_parse(town: Config) -> None:
    kinds = {r.kind for r in town.rules}
    assert {"bridge_modal", "bridge_overload", "elevator", "runaway"} <= kinds

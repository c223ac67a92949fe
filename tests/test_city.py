"""The generated city: its catalogue, its signals, waveform blocks and the physics of incidents.

Everything here runs the simulator's own code without a broker, except the gateway backfill,
which goes through a real Mosquitto. Payloads are checked with the service's own decoder.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.signal import welch

from ingest.decode import TelemetryDecoder
from lifeline.broker import PrivateBroker
from lifeline.catalogue import Catalogue
from lifeline.config import Config, load_config
from lifeline.levels import LEVELS
from simulators.city import MIN_SENSORS, generate_city, write_city
from simulators.incidents import Incident
from simulators.run import ReadingSchedule, TelemetryBatcher, decimation_for, simulate
from simulators.scenarios import ALL_KINDS, Scenario, ScenarioItem, plan
from simulators.signals import Baseline

ROOT = Path(__file__).resolve().parent.parent
START = 1763798400000  # 2025-11-22 08:00 Hefei
BACKFILL_SPEED = 2000


@pytest.fixture(scope="module")
def city_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("city")
    write_city(generate_city(300, seed=4), folder)
    return folder


@pytest.fixture(scope="module")
def city(city_dir: Path) -> Config:
    return load_config(city_dir / "lifeline.yaml")


def _baseline(config: Config, seed: int = 1) -> Baseline:
    return Baseline(config.sensors, seed=seed, rules=config.rules, owners={g.id: g.owner for g in config.gateways})


def _one(config: Config, kind: str, at_s: float = 60.0, duration_s: float = 1800.0, seed: int = 1,
         **item: Any) -> Incident:
    scenario = Scenario("t", (ScenarioItem(kind, at_s=at_s, duration_s=duration_s, **item),))
    incidents = list(plan(config, _baseline(config, seed), scenario, START, seed=seed))
    assert len(incidents) == 1, kind
    return incidents[0]


def _plan(config: Config, items: list[ScenarioItem], seed: int = 1) -> list[Incident]:
    """Incidents planned together (never two on one sensor at once)."""
    return list(plan(config, _baseline(config, seed), Scenario("t", tuple(items)), START, seed=seed))


def _channel(config: Config, incidents: list[Incident], sensor: str, metric: str, ts: np.ndarray) -> np.ndarray:
    """The values one channel publishes at times `ts` (any times, not only its schedule)."""
    batcher = TelemetryBatcher(config, _baseline(config), ReadingSchedule(config.sensors, 1))
    index = next(i for i, s in enumerate(config.sensors) if s.id == sensor)
    channel, value = batcher.values(np.full(len(ts), index), np.asarray(ts, dtype=np.int64), incidents)
    return value[channel == Catalogue(config).channels_of[sensor][metric]]


class Feed:
    """Decoded simulator output of a window: the payloads and every accepted reading."""

    def __init__(self, config: Config, incidents: list[Incident], after_ms: int, until_ms: int,
                 decimation: int = 1, step_ms: int = 600_000):
        schedule = ReadingSchedule(config.sensors, 1)
        batcher = TelemetryBatcher(config, _baseline(config), schedule, decimation)
        self.catalogue = Catalogue(config)
        decoder = TelemetryDecoder(self.catalogue, 100_000)
        self.payloads: list[tuple[str, dict]] = []
        self.rejections: list = []
        parts = []
        t = after_ms
        while t < until_ms:
            until = min(until_ms, t + step_ms)
            for gateway, payload, _, _ in batcher.messages(t, until, incidents):
                decoded = decoder.decode(gateway, payload, until_ms + 1000)
                self.rejections += decoded.rejections
                self.payloads.append((gateway, json.loads(payload)))
                parts.append((decoded.batch.channel, decoded.batch.ts, decoded.batch.value))
            t = until
        self.channel = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
        self.ts = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
        self.value = np.concatenate([p[2] for p in parts]) if parts else np.zeros(0)

    def values(self, sensor: str, metric: str, lo: int = 0, hi: int = 2**62) -> np.ndarray:
        """(n, 2) [ts, value] of one channel within [lo, hi], in time order."""
        channel = self.catalogue.channels_of[sensor][metric]
        mask = (self.channel == channel) & (self.ts >= lo) & (self.ts <= hi)
        order = np.argsort(self.ts[mask], kind="stable")
        return np.stack([self.ts[mask][order].astype(np.float64), self.value[mask][order]], axis=1)

    def blocks(self) -> list[tuple[str, dict]]:
        """(sensor id, reading object) of every waveform block sent."""
        return [(sid, o) for _, p in self.payloads for sid, v in p.items()
                for o in (v if isinstance(v, list) else [v]) if "dt" in o]


# ----------------------------------------------------------------------------------------------
# The catalogue
# ----------------------------------------------------------------------------------------------

def test_city_has_the_structure_of_real_networks(city: Config) -> None:
    sensors = city.sensors
    assert len(sensors) == 300 and len({s.id for s in sensors}) == 300
    assert {s.domain for s in sensors} == {"gas", "pipeline", "bridge", "elevator", "hazard"}
    assert city.warnings == ()
    for s in sensors:  # around Hefei's centre, 117.27 E 31.86 N
        assert abs(s.location.lon - 117.27) < 0.3 and abs(s.location.lat - 31.86) < 0.3, s.id
    owners = {g.owner for g in city.gateways}
    assert len(owners) >= 6 and {s.gateway for s in sensors} == {g.id for g in city.gateways}
    # gas mains: manholes in neighbour order, positions increasing along the main
    mains: dict[str, list] = {}
    for s in sensors:
        if s.type == "manhole_methane":
            assert set(s.metrics) == {"ch4", "c2h6", "temp"} and 60 <= s.interval <= 300
            mains.setdefault(s.extra["main"], []).append(s)
    assert len(mains) >= 2
    for manholes in mains.values():
        ordered = sorted(manholes, key=lambda s: int(s.extra["seq"]))
        positions = [float(s.extra["position_m"]) for s in ordered]
        assert positions[0] == 0 and all(100 < b - a < 500 for a, b in zip(positions, positions[1:], strict=False))
    # water mains: transient pressure loggers bound segments of known length
    loggers = [s for s in sensors if s.type == "transient_pressure"]
    assert loggers and all({"main", "segment", "position_m", "wave_speed_mps", "rate_hz", "block_s"} <= set(s.extra)
                           for s in loggers)
    assert all(s.extra["segment"].startswith(s.extra["main"]) for s in loggers)
    # bridges: several sensors per span, an accelerometer sending 100 Hz blocks
    spans: dict[str, list] = {}
    for s in sensors:
        if s.domain == "bridge":
            spans.setdefault(s.asset, []).append(s)
    full = [group for group in spans.values() if len(group) == 4]
    assert full and all({s.type for s in group} == {"strain_gauge", "deflection_gauge", "accelerometer"} for group in full)
    assert all(s.extra["rate_hz"] == "100" for group in full for s in group if s.type == "accelerometer")
    # elevators in buildings, tanks in plants
    buildings = {s.extra["structure"] for s in sensors if s.domain == "elevator"}
    plants = {s.extra["structure"] for s in sensors if s.type == "storage_tank"}
    assert len(buildings) >= 3 and plants


def test_city_is_a_function_of_size_and_seed(tmp_path: Path) -> None:
    one, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_city(generate_city(120, 7), one)
    write_city(generate_city(120, 7), again)
    write_city(generate_city(120, 8), other)
    assert (one / "sensors.csv").read_bytes() == (again / "sensors.csv").read_bytes()
    assert (one / "sensors.csv").read_bytes() != (other / "sensors.csv").read_bytes()
    for n in (MIN_SENSORS, 57, 2000):
        assert len(generate_city(n).sensors) == n
    with pytest.raises(ValueError, match="at least"):
        generate_city(MIN_SENSORS - 1)


def test_write_config_validates_with_lifeline_check(tmp_path: Path) -> None:
    written = subprocess.run([sys.executable, "-m", "lifeline.cli", "simulate", "--city", "80", "--write-config",
                              str(tmp_path / "city")], capture_output=True, text=True, cwd=ROOT)
    assert written.returncode == 0, written.stderr
    assert "80 sensors" in written.stdout
    checked = subprocess.run([sys.executable, "-m", "lifeline.cli", "check", str(tmp_path / "city" / "lifeline.yaml")],
                             capture_output=True, text=True, cwd=ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "OK" in checked.stdout and "sensors:  80" in checked.stdout and "warning" not in checked.stdout


# ----------------------------------------------------------------------------------------------
# Signals
# ----------------------------------------------------------------------------------------------

def test_quiet_city_stays_below_every_rule_all_year(city: Config) -> None:
    baseline = _baseline(city)
    rng = np.random.default_rng(3)
    n = len(baseline.channel_metric)
    samples = 300
    channels = np.repeat(np.arange(n), samples)
    ts = 1735689600000 + rng.integers(0, 365 * 86400 * 1000, n * samples)
    values = baseline.round(channels, baseline.values(channels, ts))
    assert np.isfinite(values).all()
    for c in range(n):
        sensor = city.sensors[baseline.channel_sensor[c]]
        metric = baseline.channel_metric[c]
        mine = values[channels == c]
        for rule in city.rules:
            if rule.threshold is None or not rule.matches(sensor, city.owner_of(sensor.gateway), metric):
                continue
            lowest = min(rule.threshold.levels.values()) if rule.threshold.direction == "above" \
                else max(rule.threshold.levels.values())
            worst = mine.max() if rule.threshold.direction == "above" else mine.min()
            crossed = worst >= lowest if rule.threshold.direction == "above" else worst <= lowest
            assert not crossed, f"{sensor.id} {metric} reaches {worst} (rule {rule.id} at {lowest})"
    ethane = [c for c in range(n) if baseline.channel_metric[c] == "c2h6"]
    assert values[np.isin(channels, ethane)].max() < 2.0  # no ethane without a leak


def test_waveform_blocks_follow_the_contract_and_the_catalogue(city: Config) -> None:
    feed = Feed(city, [], START, START + 1_200_000)
    assert feed.rejections == []  # the service's decoder accepts every reading object
    by_type: dict[str, list] = {}
    sensors = {s.id: s for s in city.sensors}
    for sid, obj in feed.blocks():
        by_type.setdefault(sensors[sid].type, []).append(obj)
    acc, pressure = by_type["accelerometer"], by_type["transient_pressure"]
    assert all(b["dt"] == 10 and len(b["values"]["acc_z"]) == 2000 for b in acc)  # 20 s at 100 Hz
    assert all(b["dt"] == 20 and len(b["values"]["pressure"]) == 50 for b in pressure)  # 1 s at 50 Hz
    accelerometers = [s for s in city.sensors if s.type == "accelerometer"]
    assert len(acc) == 2 * len(accelerometers)  # one block every 10 minutes each
    # ambient vibration: the first bending mode shows in the spectrum, 2.2-4.7 Hz
    f, psd = welch(np.array(acc[0]["values"]["acc_z"]), fs=100, nperseg=1024)
    assert 2.0 < f[np.argmax(psd)] < 4.8
    scalar = feed.values("GAS-01-01", "ch4")
    assert len(scalar) == 1_200_000 // int(sensors["GAS-01-01"].interval * 1000)


def test_compressed_runs_thin_periodic_blocks_but_keep_captures(city: Config) -> None:
    schedule = ReadingSchedule(city.sensors, 1)
    assert decimation_for(schedule, 1.0) == 1
    k = decimation_for(schedule, 1440.0)
    assert k > 1 and schedule.waveform_samples_per_second() * 1440 / k <= 20_000
    burst = _one(city, "water_main_burst", duration_s=600.0, where={"type": ("transient_pressure",)})
    count = {}
    for name, decimation in (("full", 1), ("thin", k)):
        batcher = TelemetryBatcher(city, _baseline(city), schedule, decimation)
        count[name] = sum(len(batcher.blocks(t, t + 300_000, [burst])[0]) for t in range(START, START + 1_800_000, 300_000))
    captures = len(burst.captures)
    assert captures >= 2
    assert count["thin"] < count["full"] / 2 and count["thin"] >= captures


# ----------------------------------------------------------------------------------------------
# Incidents: their signatures
# ----------------------------------------------------------------------------------------------

def test_burst_sends_a_negative_pressure_wave_that_locates_it(city: Config) -> None:
    burst = _one(city, "water_main_burst", duration_s=3600.0, where={"type": ("transient_pressure",)})
    truth = burst.truth()
    details = truth["arrivals"]
    up, down = truth["upstream"], truth["downstream"]
    assert truth["hazard"] and truth["expected_level"] in LEVELS and set(truth["sensors"]) == {up, down}
    feed = Feed(city, [burst], burst.start_ms - 60_000, burst.start_ms + 120_000, step_ms=30_000)
    arrival = {}
    for sensor in (up, down):
        series = feed.values(sensor, "pressure", burst.start_ms - 5000, burst.start_ms + 25_000)
        assert len(series) >= 1400  # the triggered 30 s capture at 50 Hz
        before = np.median(series[series[:, 0] < burst.start_ms, 1])
        after = np.median(series[-200:, 1])
        assert after < before - 0.02  # a lower settled pressure
        dropped = series[series[:, 1] < before - 0.5 * (before - after)]
        arrival[sensor] = dropped[0, 0]
        assert abs(arrival[sensor] - details[sensor]) <= 100  # the front, half-way down
    # the difference of arrival times is what locates the burst: exact to a sample or two
    assert abs((arrival[up] - arrival[down]) - (details[up] - details[down])) <= 40
    sensors = {s.id: s for s in city.sensors}
    length = float(sensors[down].extra["position_m"]) - float(sensors[up].extra["position_m"])
    a = truth["wave_speed_mps"]
    dt_s = (arrival[up] - arrival[down]) / 1000.0  # upstream minus downstream
    x = (length + a * dt_s) / 2.0  # DOMAIN.md: from the upstream sensor
    true_x = truth["leak_location"]["position_m"] - float(sensors[up].extra["position_m"])
    assert abs(x - true_x) < 40.0
    # the district's inlet flow rises: a higher minimum night flow while the burst lasts
    inlet = next(s.id for s in city.sensors if s.extra.get("main") == truth["leak_location"]["main"]
                 and s.type == "water_flow" and s.id.endswith("IN"))
    hours = np.arange(burst.start_ms + 120_000, burst.end_ms - 60_000, 300_000)
    extra = _channel(city, [burst], inlet, "flow", hours) - _channel(city, [], inlet, "flow", hours)
    assert extra.min() > 100 and np.ptp(extra) < 20  # m3/h, around the clock


def test_gas_leak_brings_ethane_and_biogas_does_not(city: Config) -> None:
    leak, biogas = _plan(city, [ScenarioItem("gas_leak", at_s=60.0, duration_s=1200.0),
                                ScenarioItem("sewer_biogas", at_s=60.0, duration_s=4 * 3600.0)])
    every_5s = np.arange(leak.start_ms + 300_000, leak.end_ms - 120_000, 5000)
    ch4 = _channel(city, [leak], leak.sensor.id, "ch4", every_5s)
    c2h6 = _channel(city, [leak], leak.sensor.id, "c2h6", every_5s)
    assert ch4.min() > 25 and c2h6.min() > 300  # red, with ethane
    assert np.std(np.diff(ch4)) > 1.0  # strongly fluctuating
    assert leak.truth()["leak_location"]["main"] == leak.sensor.extra["main"]
    neighbours = [r["sensor"] for r in leak.truth()["related"]]
    assert neighbours and all(_channel(city, [leak], n, "c2h6", every_5s[-10:]).min() > 10 for n in neighbours)
    every_2min = np.arange(biogas.start_ms + 3600_000, biogas.end_ms - 1800_000, 120_000)
    ch4 = _channel(city, [biogas], biogas.sensor.id, "ch4", every_2min)
    assert ch4.min() >= 5.0 and ch4.max() < 10.0  # blue at most, never yellow
    assert np.std(np.diff(ch4)) < 0.5  # stable
    assert _channel(city, [biogas], biogas.sensor.id, "c2h6", every_2min).max() < 2.0  # no ethane
    assert not biogas.hazard and biogas.truth()["max_level"] == "blue"


def test_stiffness_loss_lowers_the_natural_frequency(city: Config) -> None:
    loss = _one(city, "bridge_stiffness_loss", duration_s=7200.0, params={"drop": 0.12})

    def peak(incidents: list[Incident]) -> float:
        peaks = []
        for minute in (20, 40, 60):  # 20 s blocks at 100 Hz in three 10-minute epochs
            ts = loss.start_ms + minute * 60_000 + np.arange(2000) * 10
            f, psd = welch(_channel(city, incidents, loss.sensor.id, "acc_z", ts), fs=100, nperseg=1024)
            band = (f > 1.5) & (f < 5.5)
            peaks.append(f[band][np.argmax(psd[band])])
        return float(np.median(peaks))
    healthy, damaged = peak([]), peak([loss])
    assert 0.82 < damaged / healthy < 0.94
    assert loss.truth()["expected_level"] == "yellow" and loss.truth()["detectors"] == ["modal"]


def test_tank_runaway_raises_temperature_and_pressure_together(city: Config) -> None:
    runaway = _one(city, "tank_runaway", duration_s=3000.0)
    every_10s = np.arange(runaway.start_ms, runaway.start_ms + 1_800_000, 10_000)
    pressure = _channel(city, [runaway], runaway.sensor.id, "pressure", every_10s)
    temp = _channel(city, [runaway], runaway.sensor.id, "temp", every_10s)
    assert np.corrcoef(pressure, temp)[0, 1] > 0.95
    assert pressure[-1] > 1.6 and temp[-1] - temp[0] > 10  # red by the end of the rise
    early = pressure[: len(pressure) // 2]
    assert early.max() < 1.4 and early[-1] > early[0]  # rising well before the high limit


def test_entrapment_and_door_fault_show_in_every_lift_channel(city: Config) -> None:
    trapped, door = _plan(city, [ScenarioItem("elevator_entrapment", at_s=60.0, duration_s=900.0),
                                 ScenarioItem("elevator_door_fault", at_s=60.0, duration_s=600.0)])
    every_5s = np.arange(trapped.start_ms, trapped.end_ms, 5000)

    def lift(incident: Incident, metric: str) -> np.ndarray:
        return _channel(city, [incident], incident.sensor.id, metric, every_5s)
    assert lift(trapped, "speed").max() == 0 and lift(trapped, "door").max() == 0
    assert lift(trapped, "leveling").max() == 0 and lift(trapped, "load").min() > 0
    flag = lift(trapped, "trapped")
    assert flag[every_5s >= trapped.start_ms + 30_000].min() == 1 and flag[every_5s < trapped.start_ms + 30_000].max() == 0
    within = every_5s < door.end_ms
    assert 0 < lift(door, "door")[within].mean() < 1  # opening again and again
    assert lift(door, "door_fault")[within][-5:].min() == 1 and lift(door, "speed")[within].max() == 0


def test_sensor_faults_are_realistic_but_never_hazards(city: Config) -> None:
    manhole = {"type": ("manhole_methane",)}
    faults = _plan(city, [ScenarioItem("sensor_stuck", at_s=60.0, duration_s=7200.0, where=manhole),
                          ScenarioItem("sensor_spikes", at_s=60.0, duration_s=7200.0, where={"type": ("strain_gauge",)}),
                          ScenarioItem("sensor_drift", at_s=60.0, duration_s=4 * 3600.0, where=manhole),
                          ScenarioItem("sensor_dropout", at_s=60.0, duration_s=3600.0, where=manhole)])
    stuck, spikes, drift, dropout = faults
    assert len({f.sensor.id for f in faults}) == 4
    schedule = ReadingSchedule(city.sensors, 1)
    sensor, ts = schedule.due(START, START + 4 * 3600_000)

    def scheduled(fault: Incident, metric: str) -> np.ndarray:
        mine = ts[(sensor == fault.sensor_index) & (ts >= fault.start_ms) & (ts <= fault.end_ms)]
        return _channel(city, faults, fault.sensor.id, metric, mine)
    values = scheduled(stuck, "ch4")
    assert len(values) > 10 and len(set(values)) == 1
    strain = scheduled(spikes, "strain")
    wild = strain > 300
    assert 0.03 < wild.mean() < 0.2 and wild.any() and strain.max() > 400  # past red, but alone:
    assert not (wild[1:] & wild[:-1]).any()  # never two in a row, so a rule's hold never completes
    drifting = scheduled(drift, "ch4")
    assert drifting[-5:].mean() > drifting[:5].mean() + 1.5 and drifting.max() < 5.0  # short of blue
    batcher = TelemetryBatcher(city, _baseline(city), schedule)
    reported, when = batcher.readings(dropout.start_ms - 1_200_000, dropout.end_ms + 1_200_000, faults)
    silent = when[reported == dropout.sensor_index]
    assert len(silent) >= 2 and not ((silent >= dropout.start_ms) & (silent <= dropout.end_ms)).any()
    for fault in faults:
        assert not fault.hazard and fault.expected_level is None and fault.truth()["max_level"] == "blue"


def test_every_kind_builds_on_the_city(city: Config) -> None:
    for name in ALL_KINDS:
        incident = _one(city, name, duration_s=1200.0)
        truth = incident.truth()
        assert truth["kind"] == name and truth["sensors"][0] == incident.sensor.id
        assert json.loads(json.dumps(truth)) == truth  # plain JSON (no NaN)
        if truth["hazard"]:
            assert truth["expected_level"] in LEVELS, name


def test_offline_gateway_backfills_its_readings(city: Config, tmp_path: Path) -> None:
    scenario = tmp_path / "offline.yaml"
    scenario.write_text("name: offline\nlength: 40m\nincidents:\n"
                        "  - {kind: gateway_offline, at: 10m, duration: 15m, where: {type: drainage_level}}\n")
    with PrivateBroker(tmp_path / "broker") as broker:
        received: list[tuple[float, str, bytes]] = []
        import paho.mqtt.client as paho
        client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        subscribed = threading.Event()
        client.on_subscribe = lambda *a: subscribed.set()
        client.on_message = lambda c, u, m: received.append((time.time() * 1000, m.topic, m.payload))
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        client.subscribe("lifeline/+/telemetry", qos=1)
        assert subscribed.wait(5)
        summary = simulate(city, broker.url, scenario=str(scenario), speed=BACKFILL_SPEED, log=lambda _: None)
        deadline = time.monotonic() + 10
        while len(received) < summary["messages"] and time.monotonic() < deadline:
            time.sleep(0.02)
        client.disconnect()
        client.loop_stop()
    offline = summary["incidents"][0]
    gateway = offline["gateway"]
    # (arrival ms, message number, sensor, reading ts) of every reading the gateway sent
    readings = [(t, n, sid, r["ts"]) for n, (t, topic, p) in enumerate(received) if topic == f"lifeline/{gateway}/telemetry"
                for sid, v in json.loads(p).items() for r in (v if isinstance(v, list) else [v])]
    taken_offline = [r for r in readings if offline["start"] <= r[3] < offline["end"]]
    assert len(taken_offline) >= 5, "the readings taken while offline arrive"
    # they all come in one burst when the gateway returns...
    burst = [r[0] for r in taken_offline]
    assert max(burst) - min(burst) < 500
    # ...after a silence as long as the outage (in wall time at this speed)...
    earlier = [r[0] for r in readings if r[0] < min(burst) - 1]
    assert earlier and (min(burst) - max(earlier)) / 1000 > 0.5 * (offline["end"] - offline["start"]) / 1000 / BACKFILL_SPEED
    # ...each sensor's readings in the order they were taken, none lost
    for sensor in {r[2] for r in readings}:
        stamps = [r[3] for r in sorted(readings, key=lambda r: (r[1], r[3])) if r[2] == sensor]
        assert stamps == sorted(stamps) and len(stamps) == len(set(stamps))
    sensor, _ = ReadingSchedule(city.sensors, 1).due(summary["sim_start"] - 1, summary["sim_end"])
    assert len(readings) == sum(1 for i in sensor.tolist() if city.sensors[i].gateway == gateway)

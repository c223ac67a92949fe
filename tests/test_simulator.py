"""The simulator, its incidents' ground truth, record/replay, against a real Mosquitto."""

from __future__ import annotations

import gzip
import json
import math
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as paho
import pytest

from lifeline.broker import PrivateBroker
from lifeline.config import Config, Sensor, load_config
from lifeline.levels import LEVELS
from simulators.incidents import KINDS, plan_incidents, rule_for
from simulators.replay import record, replay
from simulators.run import ReadingSchedule, simulate
from simulators.signals import Baseline

DEMO = Path(__file__).resolve().parent.parent / "lifeline" / "demo" / "lifeline.yaml"
TRUTH_FIELDS = {"id", "kind", "domain", "sensors", "assets", "metric", "start", "end", "expected_level", "location"}


@pytest.fixture(scope="module")
def demo() -> Config:
    return load_config(DEMO)


class Collector:
    """A paho subscriber that keeps every message with its receive time (epoch ms)."""

    def __init__(self, url: str, topic: str = "lifeline/+/telemetry", client_id: str = "", clean: bool = True):
        self.messages: list[tuple[float, str, bytes]] = []
        self._subscribed = threading.Event()
        self._connected = threading.Event()
        host, port = url.removeprefix("mqtt://").split(":")
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
        self.client.on_connect = lambda c, u, f, rc, p: self._connected.set()
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self._subscribed.set()
        self.client.on_message = lambda c, u, m: self.messages.append((time.time() * 1000.0, m.topic, m.payload))
        self.client.connect(host, int(port))
        self.client.loop_start()
        assert self._connected.wait(5)
        if topic:
            self.client.subscribe(topic, qos=1)
            assert self._subscribed.wait(5)

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return len(self.messages) >= count

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _readings(payload: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(sid, r) for sid, value in payload.items() for r in (value if isinstance(value, list) else [value])]


def _peak_level(rule_levels: dict[str, float], direction: str, values: np.ndarray) -> str | None:
    """The highest level the values reach under a threshold rule."""
    extreme = values.max() if direction == "above" else values.min()
    reached = [lv for lv in LEVELS if lv in rule_levels
               and (extreme >= rule_levels[lv] if direction == "above" else extreme <= rule_levels[lv])]
    return reached[-1] if reached else None


def _lowest_limit_crossed(config: Config, sensor: Sensor, metric: str, values: np.ndarray) -> list[str]:
    owner = config.owner_of(sensor.gateway)
    crossed = []
    for rule in config.rules:
        if rule.threshold is not None and rule.matches(sensor, owner, metric):
            levels = rule.threshold.levels
            if _peak_level(levels, rule.threshold.direction, values) is not None:
                crossed.append(rule.id)
    return crossed


# ----------------------------------------------------------------------------------------------
# The demo catalogue and the baseline, without a broker
# ----------------------------------------------------------------------------------------------

def test_demo_config_is_a_plausible_city(demo: Config) -> None:
    assert demo.warnings == ()
    assert 60 <= len(demo.sensors) <= 120
    assert {s.domain for s in demo.sensors} == {"gas", "pipeline", "bridge", "elevator", "hazard"}
    assert {s.gateway for s in demo.sensors} == {g.id for g in demo.gateways}
    assert demo.mqtt.url is None and demo.http.host == "127.0.0.1" and demo.http.port == 8000
    for s in demo.sensors:
        assert 117.0 < s.location.lon < 117.6 and 31.6 < s.location.lat < 32.1, s.id  # Hefei
        assert "district" in s.extra
    manholes = [s for s in demo.sensors if s.type == "manhole_methane"]
    assert len({s.extra["main"] for s in manholes}) >= 3
    # modest traffic for a demo: a few readings per second
    assert sum(1.0 / s.interval for s in demo.sensors) < 15


def test_quiet_baseline_stays_below_every_rule_all_year(demo: Config) -> None:
    baseline = Baseline(demo.sensors, seed=1, rules=demo.rules, owners={g.id: g.owner for g in demo.gateways})
    rng = np.random.default_rng(7)
    samples = 1500
    n = len(baseline.channel_metric)
    channels = np.repeat(np.arange(n), samples)
    ts = 1735689600000 + rng.integers(0, 365 * 86400 * 1000, n * samples)  # any time of 2025
    values = baseline.round(channels, baseline.values(channels, ts))
    assert np.isfinite(values).all()
    for c in range(n):
        sensor = demo.sensors[baseline.channel_sensor[c]]
        metric = baseline.channel_metric[c]
        crossed = _lowest_limit_crossed(demo, sensor, metric, values[channels == c])
        assert not crossed, f"{sensor.id} {metric} crosses {crossed} without an incident"


def test_baseline_is_deterministic_given_the_seed(demo: Config) -> None:
    channels = np.arange(50)
    ts = np.full(len(channels), 1763798400000, dtype=np.int64)
    one = Baseline(demo.sensors, seed=5).values(channels, ts)
    again = Baseline(demo.sensors, seed=5).values(channels, ts)
    other = Baseline(demo.sensors, seed=6).values(channels, ts)
    assert np.array_equal(one, again)
    assert not np.array_equal(one, other)


def test_reading_schedule_respects_intervals(demo: Config) -> None:
    schedule = ReadingSchedule(demo.sensors, seed=1)
    sensor, ts = schedule.due(1763798400000, 1763798400000 + 3600_000)
    for i, s in enumerate(demo.sensors):
        mine = np.sort(ts[sensor == i])
        assert abs(len(mine) - 3600 / s.interval) <= 1
        assert np.all(np.diff(mine) == round(s.interval * 1000))


def test_incident_plan_is_ordered_and_starts_early(demo: Config) -> None:
    baseline = Baseline(demo.sensors, seed=1)
    start = 1763798400000
    plan = plan_incidents(demo, baseline, "default", start, seed=1)
    incidents = [next(plan) for _ in range(15)]
    starts = [i.start_ms for i in incidents]
    assert starts == sorted(starts)
    assert incidents[0].start_ms - start <= 20_000  # a demo shows a live alert within a minute
    assert {i.kind for i in incidents[:5]} == set(KINDS)
    assert len({i.id for i in incidents}) == 15
    assert incidents[5].start_ms - start >= 800_000  # the second round, about 15 minutes later
    assert list(plan_incidents(demo, baseline, "quiet", start)) == []
    with pytest.raises(ValueError, match="unknown scenario"):
        next(plan_incidents(demo, baseline, "earthquake", start))


# ----------------------------------------------------------------------------------------------
# Simulating against a real broker
# ----------------------------------------------------------------------------------------------

def test_simulate_publishes_contract_batches_with_ground_truth(demo: Config, broker: PrivateBroker, tmp_path: Path) -> None:
    collector = Collector(broker.url)
    truth_path = tmp_path / "truth.jsonl"
    logged: list[str] = []
    summary = simulate(demo, broker.url, speed=400, duration=3.0, truth_path=truth_path, seed=3, log=logged.append)
    assert summary["acknowledged"]
    assert collector.wait_for(summary["messages"])
    collector.close()
    assert len(collector.messages) == summary["messages"]

    sensors = {s.id: s for s in demo.sensors}
    series: dict[tuple[str, str], list[tuple[int, float]]] = {}
    readings = 0
    for received_ms, topic, raw in collector.messages:
        prefix, gateway, kind = topic.split("/")
        assert (prefix, kind) == ("lifeline", "telemetry")
        payload = json.loads(raw)
        assert isinstance(payload, dict) and payload
        for sensor_id, reading in _readings(payload):
            sensor = sensors[sensor_id]
            assert sensor.gateway == gateway
            assert set(reading) == {"ts", "values"}
            assert isinstance(reading["ts"], int) and reading["ts"] <= received_ms  # never in the future
            assert set(reading["values"]) == set(sensor.metrics)
            for metric, value in reading["values"].items():
                assert isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
                series.setdefault((sensor_id, metric), []).append((reading["ts"], value))
            readings += 1
    assert readings == summary["readings"]
    assert {sid for sid, _ in series} == set(sensors)  # every sensor reported
    assert summary["sim_end"] <= time.time() * 1000
    assert summary["sim_end"] - summary["sim_start"] >= 0.9 * 400 * 3.0 * 1000

    records = [json.loads(line) for line in truth_path.read_text().splitlines()]
    assert records[0]["type"] == "run" and records[0]["sensors"] == len(demo.sensors)
    assert records[-1]["type"] == "run_end" and records[-1]["sim_end"] == summary["sim_end"]
    lines = records[1:-1]  # between the run header and trailer: one record per incident
    assert lines == summary["incidents"]
    assert [t["start"] for t in lines] == sorted(t["start"] for t in lines)
    assert lines[0]["start"] - summary["sim_start"] <= 20_000
    finished = [t for t in lines if t["end"] <= summary["sim_end"]]
    assert {t["kind"] for t in finished} == set(KINDS)  # 20 simulated minutes: one of each
    for truth in lines:
        assert set(truth) >= TRUTH_FIELDS
        sensor = sensors[truth["sensors"][0]]
        assert truth["assets"] == [sensor.asset] and truth["domain"] == sensor.domain
        assert truth["location"] == {"lon": sensor.location.lon, "lat": sensor.location.lat}
        rule = rule_for(demo, sensor, truth["metric"])
        assert rule is not None and truth["rule"] == rule.id
    for truth in finished:
        sensor = sensors[truth["sensors"][0]]
        rule = rule_for(demo, sensor, truth["metric"])
        points = np.array(series[(sensor.id, truth["metric"])])
        inside = points[(points[:, 0] >= truth["start"]) & (points[:, 0] <= truth["end"])]
        # reports at once and every few seconds while in alarm
        assert inside[0, 0] == truth["start"]
        assert len(inside) >= (truth["end"] - truth["start"]) / 1000 / 5 - 1
        level = _peak_level(rule.threshold.levels, rule.threshold.direction, inside[:, 1])
        assert level == truth["expected_level"], (truth["id"], truth["kind"], inside[:, 1].min(), inside[:, 1].max())
        # related channels stay below every rule, so the incident raises exactly one alert
        for related in truth["related"]:
            other = sensors[related["sensor"]]
            pts = np.array(series[(other.id, related["metric"])])
            window = pts[(pts[:, 0] >= truth["start"]) & (pts[:, 0] <= truth["end"]), 1]
            assert not _lowest_limit_crossed(demo, other, related["metric"], window), related
    assert any("incident inc-0001" in line for line in logged)


def test_quiet_scenario_raises_nothing(demo: Config, broker: PrivateBroker, tmp_path: Path) -> None:
    collector = Collector(broker.url)
    truth_path = tmp_path / "truth.jsonl"
    summary = simulate(demo, broker.url, scenario="quiet", speed=3000, duration=1.0, truth_path=truth_path, log=lambda _: None)
    assert collector.wait_for(summary["messages"])
    collector.close()
    assert summary["incidents"] == [] and [json.loads(x)["type"] for x in truth_path.read_text().splitlines()] == ["run", "run_end"]
    sensors = {s.id: s for s in demo.sensors}
    values: dict[tuple[str, str], list[float]] = {}
    for _, _, raw in collector.messages:
        for sensor_id, reading in _readings(json.loads(raw)):
            for metric, value in reading["values"].items():
                values.setdefault((sensor_id, metric), []).append(value)
    for (sensor_id, metric), vs in values.items():
        assert not _lowest_limit_crossed(demo, sensors[sensor_id], metric, np.array(vs)), (sensor_id, metric)


def test_real_time_run_stamps_readings_now(demo: Config, broker: PrivateBroker) -> None:
    collector = Collector(broker.url)
    before = time.time() * 1000
    summary = simulate(demo, broker.url, speed=1.0, duration=1.2, log=lambda _: None)
    after = time.time() * 1000
    assert collector.wait_for(summary["messages"])
    collector.close()
    assert summary["readings"] > 0 and summary["incidents"] == []  # the first incident is 15 s in
    stamps = [r["ts"] for _, _, raw in collector.messages for _, r in _readings(json.loads(raw))]
    assert before - 10 <= min(stamps) and max(stamps) <= after


def test_stop_event_ends_an_open_ended_catch_up_run(demo: Config, broker: PrivateBroker) -> None:
    stop = threading.Event()
    threading.Timer(0.7, stop.set).start()
    started = time.monotonic()
    summary = simulate(demo, broker.url, speed=50, duration=None, stop=stop, log=lambda _: None)
    assert time.monotonic() - started < 3.0
    now = time.time() * 1000
    assert now - 24.1 * 3600_000 < summary["sim_start"] < now - 23.9 * 3600_000  # starts a day back
    assert summary["acknowledged"] and summary["messages"] > 0


# ----------------------------------------------------------------------------------------------
# Record and replay
# ----------------------------------------------------------------------------------------------

def test_record_and_replay_round_trip(demo: Config, broker: PrivateBroker, tmp_path: Path) -> None:
    out = tmp_path / "feed.jsonl.gz"
    stop, ready = threading.Event(), threading.Event()
    counted: list[int] = []
    recorder = threading.Thread(target=lambda: counted.append(record(broker.url, out, stop=stop, ready=ready)))
    recorder.start()
    assert ready.wait(5)
    live = Collector(broker.url)
    summary = simulate(demo, broker.url, speed=100, duration=1.5, log=lambda _: None)
    assert live.wait_for(summary["messages"])
    live.close()
    time.sleep(0.2)
    stop.set()
    recorder.join(5)
    assert counted == [summary["messages"]]

    with gzip.open(out, "rt", encoding="utf-8") as handle:
        lines = [json.loads(line) for line in handle]
    assert [(m["topic"], m["payload"].encode()) for m in lines] == [(t, p) for _, t, p in live.messages]
    assert all(isinstance(m["t"], float) for m in lines)
    span_s = (lines[-1]["t"] - lines[0]["t"]) / 1000

    replayed = Collector(broker.url)
    result = replay(out, broker.url, speed=2.0)
    assert result["messages"] == len(lines) and result["acknowledged"]
    assert replayed.wait_for(len(lines))
    replayed.close()
    assert [(t, p) for _, t, p in replayed.messages] == [(t, p) for _, t, p in live.messages]
    assert 0.8 * span_s / 2 <= result["seconds"] <= span_s / 2 + 1.0  # original timing / speed


def _write_recording(path: Path, messages: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(m) + "\n" for m in messages), encoding="utf-8")


def test_replay_at_speed_zero_is_as_fast_as_possible(broker: PrivateBroker, tmp_path: Path) -> None:
    path = tmp_path / "hour.jsonl"
    t0 = time.time() * 1000 - 3600_000
    messages = [{"t": t0 + i * 1000.0, "topic": f"lifeline/gw-{i % 3}/telemetry",
                 "payload": json.dumps({"S-1": {"ts": int(t0) + i * 1000, "values": {"x": i}}})}
                for i in range(3000)]  # 50 minutes of traffic
    _write_recording(path, messages)
    collector = Collector(broker.url)
    result = replay(path, broker.url, speed=0)
    assert result["seconds"] < 5.0 and result["acknowledged"]
    assert collector.wait_for(3000)
    collector.close()
    assert [p.decode() for _, _, p in collector.messages] == [m["payload"] for m in messages]


def test_replay_shift_to_now_moves_reading_times(broker: PrivateBroker, tmp_path: Path) -> None:
    path = tmp_path / "old.jsonl"
    t0 = time.time() * 1000 - 7 * 86400_000  # a week ago
    batch = {"GAS-1": [{"ts": int(t0) - 500, "values": {"ch4": 3.0}}, {"ts": int(t0) - 400, "values": {"ch4": 3.1}}],
             "GAS-2": {"ts": int(t0) - 300, "values": {"ch4": 0.0}}, "GAS-3": {"values": {"ch4": 1.0}}}
    messages = [
        {"t": t0, "topic": "lifeline/gw-gas-01/telemetry", "payload": json.dumps(batch)},
        {"t": t0 + 10, "topic": "lifeline/gw-gas-01/telemetry", "payload": "not json {"},
        {"t": t0 + 20, "topic": "lifeline/gw-gas-01/telemetry", "payload_b64": "/w=="},  # invalid UTF-8
    ]
    _write_recording(path, messages)
    collector = Collector(broker.url)
    before = time.time() * 1000
    replay(path, broker.url, speed=0, shift_to_now=True)
    after = time.time() * 1000
    assert collector.wait_for(3)
    collector.close()
    shifted = json.loads(collector.messages[0][2])
    first = shifted["GAS-1"][0]["ts"]
    assert before - 500 - 5 <= first <= after - 500
    assert shifted["GAS-1"][1]["ts"] - first == 100 and shifted["GAS-2"]["ts"] - first == 200
    assert "ts" not in shifted["GAS-3"]
    assert collector.messages[1][2] == b"not json {" and collector.messages[2][2] == b"\xff"


# ----------------------------------------------------------------------------------------------
# The broker fixture itself
# ----------------------------------------------------------------------------------------------

def test_broker_restart_keeps_persistent_sessions(broker: PrivateBroker) -> None:
    subscriber = Collector(broker.url, topic="lifeline/test/#", client_id="persistent-sub", clean=False)
    subscriber.close()
    publisher = Collector(broker.url, topic="")
    for i in range(5):
        publisher.client.publish("lifeline/test/queued", f"m{i}", qos=1).wait_for_publish(5)
    publisher.close()
    broker.restart()  # SIGTERM: the session, its subscription and queued messages are saved
    publisher = Collector(broker.url, topic="")
    publisher.client.publish("lifeline/test/after", "after", qos=1).wait_for_publish(5)
    publisher.close()
    subscriber = Collector(broker.url, topic="", client_id="persistent-sub", clean=False)
    assert subscriber.wait_for(6, timeout=5), broker.log()
    subscriber.close()
    assert [p for _, _, p in subscriber.messages] == [b"m0", b"m1", b"m2", b"m3", b"m4", b"after"]

"""The gateway traffic simulator: the catalogue's sensors reporting through their gateways.

Every sensor reports every `interval` seconds on its own phase; each tick, each gateway publishes
one batch message (CONTRACT §4) to `{topic_prefix}/{gateway}/telemetry` with all readings of its
sensors that fell due since the last tick (several per sensor when the simulation runs fast;
split into several messages above MAX_READINGS_PER_MESSAGE readings). During an incident the
affected sensor reports every few seconds, as detectors do in alarm.

Waveform sensors (catalogue fields `rate_hz` and `block_s`: bridge accelerometers, transient
pressure loggers) send, every `interval` seconds, one block of `block_s` seconds sampled at
`rate_hz` as a reading object with `dt` and arrays (CONTRACT §4), plus blocks captured on a
trigger (a pressure transient, a damage event). Compressed runs keep the waveform volume
feasible: when the periodic blocks would exceed `max_waveform_rate` samples per wall-clock
second, only every k-th block of each sensor is sent (whole blocks, never resampled), so each
block keeps its sampling rate; triggered captures are always sent.

Simulated time runs at `speed` x wall-clock time but never ahead of the wall clock (the service
rejects readings more than 5 minutes in the future): a compressed run starts in the past and
ends about now. Values come from `signals.Baseline`, bent by `incidents.Incident`s. A gateway
taken offline by an incident keeps its messages and publishes them all when it returns.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec
import numpy as np
import paho.mqtt.client as paho

from lifeline.config import Config, Sensor
from lifeline.mqtturl import paho_client, parse_mqtt_url
from simulators.incidents import Incident, plan_incidents
from simulators.scenarios import Scenario, resolve
from simulators.signals import Baseline, hash_uniform, sensor_key

TICK_S = 0.25  # wall-clock seconds between ticks: readings leave at most this late
CATCH_UP_S = 24 * 3600.0  # speed > 1 without a duration: start this far in the past
MAX_READINGS_PER_MESSAGE = 5000  # keeps batches far below the 1 MiB message limit
MAX_WAVEFORM_RATE = 20_000.0  # waveform samples per wall-clock second before blocks are thinned
WAVEFORM_ALARM_INTERVAL_S = 30.0  # a waveform sensor in alarm sends a block at most this often
CONNECT_TIMEOUT_S = 10.0
ACK_TIMEOUT_S = 60.0


def _iso(epoch_ms: float) -> str:
    return datetime.fromtimestamp(epoch_ms / 1000.0, UTC).isoformat(timespec="seconds")


# --------------------------------------------------------------------------------------------
# Publishing
# --------------------------------------------------------------------------------------------

class Publisher:
    """One MQTT connection that publishes with QoS 1 and knows when all is acknowledged.

    `publish` blocks while more than `max_pending` messages await their PUBACK, so a fast
    producer cannot fill memory when the broker is slower.
    """

    def __init__(self, mqtt_url: str, client_id: str = "", *, max_pending: int = 20000,
                 log: Callable[[str], Any] | None = None):
        self.address = parse_mqtt_url(mqtt_url)
        self.client = paho_client(self.address, client_id)
        self.client.max_inflight_messages_set(1000)  # QoS 1 throughput is bound by this window
        self.max_pending = max_pending
        self.log = log
        self.published = 0
        self.acknowledged = 0
        self._lock = threading.Condition()
        self._connected = threading.Event()
        self._connect_error: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_disconnect = self._on_disconnect

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            self._connect_error = str(reason_code)
        self._connected.set()

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason_code: Any, properties: Any) -> None:
        with self._lock:
            self.acknowledged += 1
            self._lock.notify_all()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure and self.log:
            self.log(f"disconnected from {self.address.url}: {reason_code}; reconnecting")

    def connect(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Connect and wait for the CONNACK; raises ConnectionError when refused or silent."""
        self.client.connect(self.address.host, self.address.port, keepalive=30)
        self.client.loop_start()
        if not self._connected.wait(timeout):
            self.client.loop_stop()
            raise ConnectionError(f"no CONNACK from {self.address.url} within {timeout:.0f} s")
        if self._connect_error:
            self.client.loop_stop()
            raise ConnectionError(f"{self.address.url} refused the connection: {self._connect_error}")

    def publish(self, topic: str, payload: bytes) -> None:
        """Queue one QoS 1 message (waits while too many are unacknowledged)."""
        with self._lock:
            while self.published - self.acknowledged >= self.max_pending:
                self._lock.wait(0.5)
            self.published += 1
        self.client.publish(topic, payload, qos=1)

    def wait_acknowledged(self, timeout: float = ACK_TIMEOUT_S) -> bool:
        """Wait until every published message has its PUBACK; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self.acknowledged < self.published:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.5))
        return True

    def close(self, timeout: float = ACK_TIMEOUT_S) -> bool:
        """Wait for the acknowledgements, then disconnect cleanly. True when all were acked."""
        done = self.wait_acknowledged(timeout)
        self.client.disconnect()
        self.client.loop_stop()
        return done


# --------------------------------------------------------------------------------------------
# When sensors report
# --------------------------------------------------------------------------------------------

def waveform_spec(sensor: Sensor) -> tuple[float, float] | None:
    """(rate_hz, block_s) of a waveform sensor, None for a sensor of single readings."""
    try:
        rate, block = float(sensor.extra["rate_hz"]), float(sensor.extra["block_s"])
    except (KeyError, ValueError):
        return None
    return (rate, block) if rate > 0 and block > 0 else None


class ReadingSchedule:
    """Reading times: sensor i reports at phase_i + n * interval_i (epoch ms, integer n).

    The phase is a fixed per-sensor draw in [0, interval), so gateways do not report all their
    sensors in the same millisecond, and the schedule does not depend on when a run starts. For
    a waveform sensor the time is the end of a block; its phase lies in [block, interval), so
    that a periodic block never straddles a multiple of the interval (the bridge model's
    10-minute epochs).
    """

    def __init__(self, sensors: Sequence[Sensor], seed: int):
        self.interval_ms = np.array([max(1, round(s.interval * 1000)) for s in sensors], dtype=np.int64)
        keys = np.array([sensor_key(s.id, seed) for s in sensors], dtype=np.uint64)
        specs = [waveform_spec(s) for s in sensors]
        #: (sensors,) - waveform sensors, their sample interval (ms) and samples per block
        self.waveform = np.array([spec is not None for spec in specs], dtype=bool)
        self.dt_ms = np.array([1000.0 / spec[0] if spec else 0.0 for spec in specs], dtype=np.float64)
        self.block_samples = np.array([max(1, round(spec[0] * spec[1])) if spec else 0 for spec in specs], dtype=np.int64)
        self.block_ms = np.ceil(self.block_samples * self.dt_ms).astype(np.int64)
        u = hash_uniform(keys, 7, 0)
        low = np.where(self.waveform & (self.block_ms < self.interval_ms), self.block_ms, 0)
        self.phase_ms = (low + np.floor(u * (self.interval_ms - low))).astype(np.int64)

    def due(self, after_ms: int, until_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Readings with after_ms < ts <= until_ms, as (sensor index (n,) int64, ts (n,) int64)."""
        first = (after_ms - self.phase_ms) // self.interval_ms + 1
        last = (until_ms - self.phase_ms) // self.interval_ms
        count = np.clip(last - first + 1, 0, None)
        sensor = np.repeat(np.arange(len(count), dtype=np.int64), count)
        within = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        ts = self.phase_ms[sensor] + (first[sensor] + within) * self.interval_ms[sensor]
        return sensor, ts

    def readings_per_second(self) -> np.ndarray:
        """(sensors,) float64 - nominal reading rate of each sensor, 1/s (waveform: samples/s)."""
        per_report = np.where(self.waveform, self.block_samples, 1)
        return per_report * 1000.0 / self.interval_ms

    def waveform_samples_per_second(self) -> float:
        """Nominal waveform samples per simulated second of the whole catalogue."""
        return float((self.block_samples * 1000.0 / self.interval_ms)[self.waveform].sum())


def decimation_for(schedule: ReadingSchedule, speed: float, max_rate: float = MAX_WAVEFORM_RATE) -> int:
    """k: send every k-th periodic waveform block so that at `speed` the periodic blocks stay
    under `max_rate` samples per wall-clock second (1: all of them)."""
    wall_rate = schedule.waveform_samples_per_second() * speed
    return max(1, math.ceil(wall_rate / max_rate)) if max_rate > 0 else 1


def _alarm_times(incident: Incident, after_ms: int, until_ms: int, interval_s: float | None = None) -> np.ndarray:
    """The primary sensor's reading times in alarm: start + m * alarm interval, within the window."""
    step = max(1, round((interval_s or incident.alarm_interval_s) * 1000))
    lo = max(after_ms + 1, incident.start_ms)
    hi = min(until_ms, incident.end_ms)
    if hi < lo:
        return np.zeros(0, dtype=np.int64)
    first = -((incident.start_ms - lo) // step)  # ceil((lo - start) / step)
    last = (hi - incident.start_ms) // step
    return incident.start_ms + np.arange(first, last + 1, dtype=np.int64) * step


def _kept(sensor: np.ndarray, ts: np.ndarray, incidents: Sequence[Incident]) -> np.ndarray:
    """Mask of the readings not silenced by a dropout (`Incident.suppress`)."""
    keep = np.ones(len(sensor), dtype=bool)
    for incident in incidents:
        for index, share in incident.suppress:
            hit = (sensor == index) & (ts >= incident.start_ms) & (ts <= incident.end_ms)
            if share > 0:
                keys = np.full(len(ts), sensor_key(incident.id, index), dtype=np.uint64)
                hit &= hash_uniform(keys, 9, ts) >= share
            keep &= ~hit
    return keep


# --------------------------------------------------------------------------------------------
# Batches: readings of a window, encoded per gateway
# --------------------------------------------------------------------------------------------

class TelemetryBatcher:
    """Turns a window of simulated time into CONTRACT §4 messages, one per gateway (more when a
    gateway has over MAX_READINGS_PER_MESSAGE readings in the window)."""

    def __init__(self, config: Config, baseline: Baseline, schedule: ReadingSchedule, decimation: int = 1):
        self.baseline = baseline
        self.schedule = schedule
        self.decimation = max(1, int(decimation))
        gateway_ids = [g.id for g in config.gateways]
        self.gateway_ids = gateway_ids
        self.sensor_gateway = np.array([gateway_ids.index(s.gateway) for s in config.sensors], dtype=np.int64)
        self.sensor_ids = [s.id for s in config.sensors]
        self.sensor_metrics = [tuple(s.metrics) for s in config.sensors]
        self.integer_channels = baseline.channel_decimals == 0
        rate = np.where(schedule.waveform, schedule.readings_per_second() / self.decimation,
                        schedule.readings_per_second())
        rate = np.bincount(self.sensor_gateway, weights=rate, minlength=len(gateway_ids))
        #: longest window, in simulated ms, that keeps each message under MAX_READINGS_PER_MESSAGE
        self.max_window_ms = int(np.clip(MAX_READINGS_PER_MESSAGE / max(rate.max(initial=0.0), 1e-9), 1.0, 3600.0) * 1000)

    def readings(self, after_ms: int, until_ms: int, incidents: Sequence[Incident]) -> tuple[np.ndarray, np.ndarray]:
        """Due single readings (sensor, ts) of non-waveform sensors, ordered by gateway, sensor,
        ts; the primary sensor of an incident reports on its alarm interval instead of its
        normal one while it lasts; silenced sensors do not report."""
        sensor, ts = self.schedule.due(after_ms, until_ms)
        keep = ~self.schedule.waveform[sensor]
        alarm_sensor, alarm_ts = [], []
        for incident in incidents:
            if not incident.alarm_reporting or self.schedule.waveform[incident.sensor_index]:
                continue
            keep &= ~((sensor == incident.sensor_index) & (ts >= incident.start_ms) & (ts <= incident.end_ms))
            alarm = _alarm_times(incident, after_ms, until_ms)
            alarm_sensor.append(np.full(len(alarm), incident.sensor_index, dtype=np.int64))
            alarm_ts.append(alarm)
        sensor = np.concatenate([sensor[keep], *alarm_sensor])
        ts = np.concatenate([ts[keep], *alarm_ts])
        keep = _kept(sensor, ts, incidents)
        sensor, ts = sensor[keep], ts[keep]
        order = np.lexsort((ts, sensor, self.sensor_gateway[sensor]))
        return sensor[order], ts[order]

    def blocks(self, after_ms: int, until_ms: int, incidents: Sequence[Incident]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Waveform blocks that end in (after_ms, until_ms]: (sensor, first sample ts, samples),
        each (b,) int64, ordered by gateway, sensor, start. Periodic blocks (every
        `decimation`-th), alarm blocks of an incident's primary sensor (at most every
        WAVEFORM_ALARM_INTERVAL_S) and triggered captures."""
        sched = self.schedule
        sensor, end = sched.due(after_ms, until_ms)
        keep = sched.waveform[sensor]
        if self.decimation > 1:
            number = (end - sched.phase_ms[sensor]) // sched.interval_ms[sensor]
            keep &= number % self.decimation == 0
        extra_sensor, extra_start, extra_samples = [], [], []
        for incident in incidents:
            index = incident.sensor_index
            if incident.alarm_reporting and sched.waveform[index]:
                keep &= ~((sensor == index) & (end >= incident.start_ms) & (end <= incident.end_ms))
                ends = _alarm_times(incident, after_ms, until_ms,
                                    max(incident.alarm_interval_s, WAVEFORM_ALARM_INTERVAL_S))
                extra_sensor.append(np.full(len(ends), index, dtype=np.int64))
                extra_start.append(ends - sched.block_ms[index])
                extra_samples.append(np.full(len(ends), sched.block_samples[index], dtype=np.int64))
            for captured, first_ms, last_ms in incident.captures:
                if after_ms < last_ms <= until_ms and sched.waveform[captured]:
                    extra_sensor.append(np.array([captured], dtype=np.int64))
                    extra_start.append(np.array([first_ms], dtype=np.int64))
                    extra_samples.append(np.array([max(1, int((last_ms - first_ms) / sched.dt_ms[captured]))],
                                                  dtype=np.int64))
        sensor, end = sensor[keep], end[keep]
        start = end - sched.block_ms[sensor]
        samples = sched.block_samples[sensor]
        sensor = np.concatenate([sensor, *extra_sensor])
        start = np.concatenate([start, *extra_start])
        samples = np.concatenate([samples, *extra_samples])
        keep = _kept(sensor, start, incidents)
        sensor, start, samples = sensor[keep], start[keep], samples[keep]
        order = np.lexsort((start, sensor, self.sensor_gateway[sensor]))
        return sensor[order], start[order], samples[order]

    def values(self, sensor: np.ndarray, ts: np.ndarray, incidents: Sequence[Incident]) -> tuple[np.ndarray, np.ndarray]:
        """Channel values of the readings, channels of each reading in a row.

        Returns (channel (m,) int64, value (m,) float64 rounded to each channel's resolution).
        """
        count = self.baseline.sensor_channel_count[sensor]
        within = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        channel = np.repeat(self.baseline.sensor_channel_start[sensor], count) + within
        channel_ts = np.repeat(ts, count)
        return channel, self._bend(channel, channel_ts, incidents)

    def _bend(self, channel: np.ndarray, ts: np.ndarray, incidents: Sequence[Incident]) -> np.ndarray:
        scale = None
        if any(i.frequency for i in incidents):
            scale = np.ones(len(channel))
            for incident in incidents:
                incident.scale_frequency(channel, ts, scale)
        value = self.baseline.values(channel, ts, scale)
        for incident in incidents:
            incident.apply(channel, ts, value)
        return self.baseline.round(channel, value)

    def _python_values(self, channel: np.ndarray, value: np.ndarray) -> list[Any]:
        """Python numbers for the encoder; floors, door states and flags as integers."""
        py_values = value.astype(object)
        ints = self.integer_channels[channel]
        py_values[ints] = value[ints].astype(np.int64).astype(object)
        return py_values.tolist()

    def _scalar_entries(self, sensor: np.ndarray, ts: np.ndarray, incidents: Sequence[Incident]
                        ) -> Iterator[tuple[int, str, Any, int, int]]:
        """(gateway, sensor id, reading object or list, readings, values) per run of a sensor."""
        if not len(sensor):
            return
        channel, value = self.values(sensor, ts, incidents)
        flat = self._python_values(channel, value)
        offsets = np.concatenate([[0], np.cumsum(self.baseline.sensor_channel_count[sensor])]).tolist()
        sensor_list = sensor.tolist()
        names = [self.sensor_metrics[s] for s in sensor_list]
        objects = [{"ts": t, "values": dict(zip(n, flat[lo:hi], strict=False))}  # equal by construction
                   for t, n, lo, hi in zip(ts.tolist(), names, offsets, offsets[1:], strict=False)]
        run_starts = np.flatnonzero(np.diff(sensor, prepend=-1)).tolist()
        run_ends = [*run_starts[1:], len(sensor)]
        gateway = self.sensor_gateway[sensor].tolist()
        for lo, hi in zip(run_starts, run_ends, strict=True):
            yield (gateway[lo], self.sensor_ids[sensor_list[lo]], objects[lo] if hi - lo == 1 else objects[lo:hi],
                   hi - lo, offsets[hi] - offsets[lo])

    def _block_entries(self, sensor: np.ndarray, start: np.ndarray, samples: np.ndarray,
                       incidents: Sequence[Incident]) -> Iterator[tuple[int, str, Any, int, int]]:
        """(gateway, sensor id, block reading object, samples, values) per waveform block."""
        if not len(sensor):
            return
        sched, base = self.schedule, self.baseline
        count = base.sensor_channel_count[sensor] * samples  # values per block
        block_of = np.repeat(np.arange(len(sensor)), count)
        within = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        n = samples[block_of]
        channel = base.sensor_channel_start[sensor][block_of] + within // n
        sample = within % n
        ts = start[block_of] + np.floor(sample * sched.dt_ms[sensor][block_of]).astype(np.int64)
        flat = self._python_values(channel, self._bend(channel, ts, incidents))
        bounds = np.concatenate([[0], np.cumsum(count)]).tolist()
        for b, (index, first, size) in enumerate(zip(sensor.tolist(), start.tolist(), samples.tolist(), strict=True)):
            dt = float(sched.dt_ms[index])
            arrays = {metric: flat[bounds[b] + m * size: bounds[b] + (m + 1) * size]
                      for m, metric in enumerate(self.sensor_metrics[index])}
            block = {"ts": first, "dt": int(dt) if dt.is_integer() else dt, "values": arrays}
            yield int(self.sensor_gateway[index]), self.sensor_ids[index], block, size, size * len(arrays)

    def messages(self, after_ms: int, until_ms: int, incidents: Sequence[Incident]) -> Iterator[tuple[str, bytes, int, int]]:
        """(gateway id, payload, readings, values) for each gateway with readings due in
        (after_ms, until_ms]. A sensor with one reading gets a reading object, with several a
        list; each waveform sample counts as one reading."""
        entries: dict[int, list[tuple[str, Any, int, int]]] = {}
        for gateway, sensor_id, obj, readings, values in itertools.chain(
                self._scalar_entries(*self.readings(after_ms, until_ms, incidents), incidents),
                self._block_entries(*self.blocks(after_ms, until_ms, incidents), incidents)):
            entries.setdefault(gateway, []).append((sensor_id, obj, readings, values))
        for gateway in sorted(entries):
            payload: dict[str, Any] = {}
            readings = values = 0
            for sensor_id, obj, r, v in entries[gateway]:
                if payload and readings + r > MAX_READINGS_PER_MESSAGE:
                    yield self.gateway_ids[gateway], msgspec.json.encode(payload), readings, values
                    payload, readings, values = {}, 0, 0
                if sensor_id in payload:  # another block of the same sensor
                    previous = payload[sensor_id]
                    payload[sensor_id] = [*(previous if isinstance(previous, list) else [previous]), obj]
                else:
                    payload[sensor_id] = obj
                readings += r
                values += v
            yield self.gateway_ids[gateway], msgspec.json.encode(payload), readings, values


# --------------------------------------------------------------------------------------------
# The simulated clock and the run
# --------------------------------------------------------------------------------------------

class SimulatedClock:
    """Simulated epoch ms: start + speed x elapsed wall time, never ahead of the wall clock."""

    def __init__(self, start_ms: int, speed: float):
        self.start_ms = start_ms
        self.speed = speed
        self._t0 = time.monotonic()

    def elapsed_s(self) -> float:
        return time.monotonic() - self._t0

    def now_ms(self) -> int:
        simulated = self.start_ms + self.speed * self.elapsed_s() * 1000.0
        return int(min(simulated, time.time() * 1000.0))


def simulated_start_ms(wall_s: float, speed: float, duration: float | None, length_s: float | None = None) -> int:
    """Where simulated time starts so that it ends about now and never runs ahead of it.

    speed <= 1: now. speed > 1 with a duration: now - (speed - 1) x duration, reaching the wall
    clock as the run ends. speed > 1 with a simulated length instead: now - length x (1 - 1/speed).
    speed > 1 without either: CATCH_UP_S (24 h) in the past, then real time once caught up.
    """
    if speed <= 1.0:
        lead = 0.0
    elif duration is not None:
        lead = (speed - 1.0) * duration
    elif length_s is not None:
        lead = length_s * (1.0 - 1.0 / speed)
    else:
        lead = CATCH_UP_S
    return int((wall_s - lead) * 1000)


class _Backfill:
    """Messages of gateways that an incident took offline, published when they return."""

    def __init__(self) -> None:
        self.held: dict[str, list[tuple[str, bytes]]] = {}

    def offline(self, gateway_id: str, until_ms: int, active: Sequence[Incident]) -> bool:
        return any(i.offline_gateway == gateway_id and i.start_ms <= until_ms < i.end_ms for i in active)

    def returning(self, until_ms: int, active: Sequence[Incident]) -> list[tuple[str, bytes]]:
        """Held messages of gateways no longer offline at until_ms, oldest first."""
        out: list[tuple[str, bytes]] = []
        for gateway_id in list(self.held):
            if not self.offline(gateway_id, until_ms, active):
                out.extend(self.held.pop(gateway_id))
        return out


def simulate(config: Config, mqtt_url: str, *, scenario: str | Scenario = "default", speed: float = 1.0,
             duration: float | None = None, truth_path: Path | None = None, seed: int = 1,
             stop: threading.Event | None = None, log: Callable[[str], Any] = print,
             max_waveform_rate: float = MAX_WAVEFORM_RATE) -> dict[str, Any]:
    """Publish simulated gateway traffic for every sensor of `config` until `duration` wall-clock
    seconds have passed, the scenario's simulated length is covered (when it has one and no
    duration is given), or `stop` is set.

    speed : simulated seconds per wall-clock second (> 0).
    truth_path : JSON lines: a run header {"type": "run", ...}, one ground-truth record per
        incident, written as it starts, and a trailer {"type": "run_end", "sim_end", "sensor_hours"}.
    max_waveform_rate : waveform samples per wall-clock second above which periodic blocks are
        thinned (see the module docstring; 0 = never thin).
    Returns a summary: messages, readings (reading objects; waveform samples count one each),
    values (channel values), incidents (their ground-truth records), sim_start / sim_end
    (epoch ms), seconds (wall), acknowledged, decimation.
    """
    if not speed > 0:
        raise ValueError(f"speed must be greater than 0, got {speed}")
    if duration is not None and duration < 0:
        raise ValueError(f"duration must be 0 or more seconds, got {duration}")
    if not config.sensors:
        raise ValueError("the configuration has no sensors to simulate")
    scn = resolve(scenario)
    length_s = scn.length_s if duration is None else None
    stop = stop or threading.Event()
    owners = {g.id: g.owner for g in config.gateways}
    baseline = Baseline(config.sensors, seed=seed, rules=config.rules, owners=owners)
    schedule = ReadingSchedule(config.sensors, seed)
    decimation = decimation_for(schedule, speed, max_waveform_rate)
    batcher = TelemetryBatcher(config, baseline, schedule, decimation)
    prefix = config.mqtt.topic_prefix

    publisher = Publisher(mqtt_url, f"lifeline-sim-{os.getpid()}-{uuid.uuid4().hex[:8]}", log=log)
    publisher.connect()
    start_ms = simulated_start_ms(time.time(), speed, duration, length_s)
    end_ms = start_ms + int(length_s * 1000) if length_s is not None else None
    clock = SimulatedClock(start_ms, speed)
    plan = plan_incidents(config, baseline, scn, start_ms, seed=seed, log=log)
    upcoming = next(plan, None)
    active: list[Incident] = []
    started: list[dict[str, Any]] = []
    totals = {"messages": 0, "readings": 0, "values": 0}
    backfill = _Backfill()
    log(f"simulating {len(config.sensors)} sensors on {len(config.gateways)} gateways to {publisher.address.url}, "
        f"scenario {scn.name}, speed {speed:g}x, simulated time from {_iso(start_ms)}"
        + (f" for {length_s / 3600:.3g} h" if length_s else "")
        + (f"; waveform blocks thinned to 1 in {decimation}" if decimation > 1 else ""))

    truth: TextIO | None = truth_path.open("w", encoding="utf-8") if truth_path else None
    if truth:
        by_domain: dict[str, int] = {}
        for sensor in config.sensors:
            by_domain[sensor.domain] = by_domain.get(sensor.domain, 0) + 1
        truth.write(json.dumps({"type": "run", "scenario": scn.name, "seed": seed, "speed": speed,
                                "sensors": len(config.sensors), "sensors_by_domain": by_domain,
                                "gateways": len(config.gateways), "sim_start": start_ms,
                                "length_s": length_s, "waveform_decimation": decimation}) + "\n")
        truth.flush()
    processed_ms = start_ms - 1  # windows are (after, until]: the first includes the start
    acknowledged = False

    def send(gateway_id: str, payload: bytes) -> None:
        publisher.publish(f"{prefix}/{gateway_id}/telemetry", payload)
        totals["messages"] += 1

    try:
        while True:
            finished = end_ms is not None and processed_ms >= end_ms
            done = stop.is_set() or finished or (duration is not None and clock.elapsed_s() >= duration)
            target_ms = clock.now_ms() if end_ms is None else min(clock.now_ms(), end_ms)
            while processed_ms < target_ms and not stop.is_set():
                until_ms = min(target_ms, processed_ms + batcher.max_window_ms)
                while upcoming is not None and upcoming.start_ms <= until_ms:
                    record = upcoming.truth()
                    started.append(record)
                    active.append(upcoming)
                    if truth:
                        truth.write(json.dumps(record) + "\n")
                        truth.flush()
                    log(f"incident {upcoming.id} {upcoming.kind}: {upcoming.description} "
                        f"({upcoming.sensor.id} {upcoming.metric}, expected {upcoming.expected_level}) "
                        f"at {_iso(upcoming.start_ms)}")
                    upcoming = next(plan, None)
                active = [i for i in active if i.end_ms > processed_ms]
                for gateway_id, payload in backfill.returning(until_ms, active):
                    send(gateway_id, payload)
                for gateway_id, payload, readings, values in batcher.messages(processed_ms, until_ms, active):
                    if backfill.offline(gateway_id, until_ms, active):
                        backfill.held.setdefault(gateway_id, []).append((gateway_id, payload))
                    else:
                        send(gateway_id, payload)
                    totals["readings"] += readings
                    totals["values"] += values
                processed_ms = until_ms
                if duration is not None and clock.elapsed_s() >= duration + TICK_S:
                    break  # CPU-bound: the wall-clock budget is spent
            if done or (duration is not None and clock.elapsed_s() >= duration + TICK_S):
                break
            wait = TICK_S if duration is None else min(TICK_S, max(0.0, duration - clock.elapsed_s()))
            stop.wait(wait)
        for gateway_id, payloads in list(backfill.held.items()):  # the run ends: gateways return
            for _, payload in payloads:
                send(gateway_id, payload)
    finally:
        if truth:
            hours = max(0, processed_ms - start_ms) / 3_600_000
            truth.write(json.dumps({"type": "run_end", "sim_end": processed_ms,
                                    "sensor_hours": round(len(config.sensors) * hours, 3)}) + "\n")
            truth.close()
        acknowledged = publisher.close()
    seconds = clock.elapsed_s()
    log(f"simulation done: {totals['messages']} messages, {totals['readings']} readings, "
        f"{len(started)} incidents in {seconds:.1f} s" + ("" if acknowledged else "; some messages were not acknowledged"))
    return {**totals, "incidents": started, "scenario": scn.name, "sim_start": start_ms,
            "sim_end": processed_ms, "seconds": seconds, "acknowledged": acknowledged, "decimation": decimation}

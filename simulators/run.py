"""The gateway traffic simulator: the catalogue's sensors reporting through their gateways.

Every sensor reports every `interval` seconds on its own phase; each tick, each gateway publishes
one batch message (CONTRACT §4) to `{topic_prefix}/{gateway}/telemetry` with all readings of its
sensors that fell due since the last tick (several per sensor when the simulation runs fast).
During an incident the affected sensor reports every few seconds, as detectors do in alarm.

Simulated time runs at `speed` x wall-clock time but never ahead of the wall clock (the service
rejects readings more than 5 minutes in the future): a compressed run starts in the past and
ends about now. Values come from `signals.Baseline`, bent by `incidents.Incident`s.
"""

from __future__ import annotations

import itertools
import json
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
from simulators.signals import Baseline, hash_uniform, sensor_key

TICK_S = 0.25  # wall-clock seconds between ticks: readings leave at most this late
CATCH_UP_S = 24 * 3600.0  # speed > 1 without a duration: start this far in the past
MAX_READINGS_PER_MESSAGE = 5000  # keeps batches far below the 1 MiB message limit
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

class ReadingSchedule:
    """Reading times: sensor i reports at phase_i + n * interval_i (epoch ms, integer n).

    The phase is a fixed per-sensor draw in [0, interval), so gateways do not report all their
    sensors in the same millisecond, and the schedule does not depend on when a run starts.
    """

    def __init__(self, sensors: Sequence[Sensor], seed: int):
        self.interval_ms = np.array([max(1, round(s.interval * 1000)) for s in sensors], dtype=np.int64)
        keys = np.array([sensor_key(s.id, seed) for s in sensors], dtype=np.uint64)
        self.phase_ms = np.floor(hash_uniform(keys, 7, 0) * self.interval_ms).astype(np.int64)

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
        """(sensors,) float64 - nominal reading rate of each sensor, 1/s."""
        return 1000.0 / self.interval_ms


def _alarm_times(incident: Incident, after_ms: int, until_ms: int) -> np.ndarray:
    """The primary sensor's reading times in alarm: start + m * alarm interval, within the window."""
    step = max(1, round(incident.alarm_interval_s * 1000))
    lo = max(after_ms + 1, incident.start_ms)
    hi = min(until_ms, incident.end_ms)
    if hi < lo:
        return np.zeros(0, dtype=np.int64)
    first = -((incident.start_ms - lo) // step)  # ceil((lo - start) / step)
    last = (hi - incident.start_ms) // step
    return incident.start_ms + np.arange(first, last + 1, dtype=np.int64) * step


# --------------------------------------------------------------------------------------------
# Batches: readings of a window, encoded per gateway
# --------------------------------------------------------------------------------------------

class TelemetryBatcher:
    """Turns a window of simulated time into one CONTRACT §4 message per gateway."""

    def __init__(self, config: Config, baseline: Baseline, schedule: ReadingSchedule):
        self.baseline = baseline
        self.schedule = schedule
        gateway_ids = [g.id for g in config.gateways]
        self.gateway_ids = gateway_ids
        self.sensor_gateway = np.array([gateway_ids.index(s.gateway) for s in config.sensors], dtype=np.int64)
        self.sensor_ids = [s.id for s in config.sensors]
        self.sensor_metrics = [tuple(s.metrics) for s in config.sensors]
        self.integer_channels = baseline.channel_decimals == 0
        rate = np.bincount(self.sensor_gateway, weights=schedule.readings_per_second(), minlength=len(gateway_ids))
        #: longest window, in simulated ms, that keeps each message under MAX_READINGS_PER_MESSAGE
        self.max_window_ms = int(np.clip(MAX_READINGS_PER_MESSAGE / max(rate.max(initial=0.0), 1e-9), 1.0, 3600.0) * 1000)

    def readings(self, after_ms: int, until_ms: int, incidents: Sequence[Incident]) -> tuple[np.ndarray, np.ndarray]:
        """Due readings (sensor, ts), ordered by gateway, sensor, ts; the primary sensor of an
        incident reports on its alarm interval instead of its normal one while it lasts."""
        sensor, ts = self.schedule.due(after_ms, until_ms)
        keep = np.ones(len(sensor), dtype=bool)
        alarm_sensor, alarm_ts = [], []
        for incident in incidents:
            keep &= ~((sensor == incident.sensor_index) & (ts >= incident.start_ms) & (ts <= incident.end_ms))
            alarm = _alarm_times(incident, after_ms, until_ms)
            alarm_sensor.append(np.full(len(alarm), incident.sensor_index, dtype=np.int64))
            alarm_ts.append(alarm)
        sensor = np.concatenate([sensor[keep], *alarm_sensor])
        ts = np.concatenate([ts[keep], *alarm_ts])
        order = np.lexsort((ts, sensor, self.sensor_gateway[sensor]))
        return sensor[order], ts[order]

    def values(self, sensor: np.ndarray, ts: np.ndarray, incidents: Sequence[Incident]) -> tuple[np.ndarray, np.ndarray]:
        """Channel values of the readings, channels of each reading in a row.

        Returns (channel (m,) int64, value (m,) float64 rounded to each channel's resolution).
        """
        count = self.baseline.sensor_channel_count[sensor]
        within = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        channel = np.repeat(self.baseline.sensor_channel_start[sensor], count) + within
        channel_ts = np.repeat(ts, count)
        value = self.baseline.values(channel, channel_ts)
        for incident in incidents:
            incident.apply(channel, channel_ts, value)
        return channel, self.baseline.round(channel, value)

    def messages(self, after_ms: int, until_ms: int, incidents: Sequence[Incident]) -> Iterator[tuple[str, bytes, int, int]]:
        """(gateway id, payload, readings, values) for each gateway with readings due in
        (after_ms, until_ms]. A sensor with one reading gets a reading object, with several a list."""
        sensor, ts = self.readings(after_ms, until_ms, incidents)
        if not len(sensor):
            return
        channel, value = self.values(sensor, ts, incidents)
        # Python numbers for the encoder; floors and door states as integers
        py_values = value.astype(object)
        ints = self.integer_channels[channel]
        py_values[ints] = value[ints].astype(np.int64).astype(object)
        flat: list[Any] = py_values.tolist()
        offsets = np.concatenate([[0], np.cumsum(self.baseline.sensor_channel_count[sensor])]).tolist()
        sensor_list = sensor.tolist()
        names = [self.sensor_metrics[s] for s in sensor_list]
        objects = [{"ts": t, "values": dict(zip(n, flat[lo:hi], strict=False))}  # equal by construction
                   for t, n, lo, hi in zip(ts.tolist(), names, offsets, offsets[1:], strict=False)]
        # runs of one sensor's readings, and of one gateway's sensors (the readings are sorted)
        run_starts = np.flatnonzero(np.diff(sensor, prepend=-1)).tolist()
        run_ends = [*run_starts[1:], len(sensor)]
        gateway = self.sensor_gateway[sensor]
        run_gateway = gateway[run_starts].tolist()
        message_bounds = [0, *(np.flatnonzero(np.diff(run_gateway)) + 1).tolist(), len(run_starts)]
        for first_run, end_run in itertools.pairwise(message_bounds):
            payload = {self.sensor_ids[sensor_list[lo]]: objects[lo] if hi - lo == 1 else objects[lo:hi]
                       for lo, hi in zip(run_starts[first_run:end_run], run_ends[first_run:end_run], strict=True)}
            lo, hi = run_starts[first_run], run_ends[end_run - 1]
            yield (self.gateway_ids[run_gateway[first_run]], msgspec.json.encode(payload), hi - lo,
                   offsets[hi] - offsets[lo])


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


def simulated_start_ms(wall_s: float, speed: float, duration: float | None) -> int:
    """Where simulated time starts so that it ends about now and never runs ahead of it.

    speed <= 1: now. speed > 1 with a duration: now - (speed - 1) x duration, reaching the wall
    clock as the run ends. speed > 1 without one: CATCH_UP_S (24 h) in the past, then real time
    once caught up.
    """
    if speed <= 1.0:
        lead = 0.0
    elif duration is not None:
        lead = (speed - 1.0) * duration
    else:
        lead = CATCH_UP_S
    return int((wall_s - lead) * 1000)


def simulate(config: Config, mqtt_url: str, *, scenario: str = "default", speed: float = 1.0,
             duration: float | None = None, truth_path: Path | None = None, seed: int = 1,
             stop: threading.Event | None = None, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Publish simulated gateway traffic for every sensor of `config` until `duration` wall-clock
    seconds have passed or `stop` is set.

    speed : simulated seconds per wall-clock second (> 0).
    truth_path : JSON lines, one ground-truth record per incident, written as it starts.
    Returns a summary: messages, readings (reading objects), values (channel values), incidents
    (their ground-truth records), sim_start / sim_end (epoch ms), seconds (wall), acknowledged.
    """
    if not speed > 0:
        raise ValueError(f"speed must be greater than 0, got {speed}")
    if duration is not None and duration < 0:
        raise ValueError(f"duration must be 0 or more seconds, got {duration}")
    if not config.sensors:
        raise ValueError("the configuration has no sensors to simulate")
    stop = stop or threading.Event()
    owners = {g.id: g.owner for g in config.gateways}
    baseline = Baseline(config.sensors, seed=seed, rules=config.rules, owners=owners)
    schedule = ReadingSchedule(config.sensors, seed)
    batcher = TelemetryBatcher(config, baseline, schedule)
    prefix = config.mqtt.topic_prefix

    publisher = Publisher(mqtt_url, f"lifeline-sim-{os.getpid()}-{uuid.uuid4().hex[:8]}", log=log)
    publisher.connect()
    start_ms = simulated_start_ms(time.time(), speed, duration)
    clock = SimulatedClock(start_ms, speed)
    plan = plan_incidents(config, baseline, scenario, start_ms, seed=seed, log=log)
    upcoming = next(plan, None)
    active: list[Incident] = []
    started: list[dict[str, Any]] = []
    totals = {"messages": 0, "readings": 0, "values": 0}
    log(f"simulating {len(config.sensors)} sensors on {len(config.gateways)} gateways to {publisher.address.url}, "
        f"scenario {scenario}, speed {speed:g}x, simulated time from {_iso(start_ms)}")

    truth: TextIO | None = truth_path.open("w", encoding="utf-8") if truth_path else None
    processed_ms = start_ms - 1  # windows are (after, until]: the first includes the start
    acknowledged = False
    try:
        while True:
            done = stop.is_set() or (duration is not None and clock.elapsed_s() >= duration)
            target_ms = clock.now_ms()
            while processed_ms < target_ms:
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
                for gateway_id, payload, readings, values in batcher.messages(processed_ms, until_ms, active):
                    publisher.publish(f"{prefix}/{gateway_id}/telemetry", payload)
                    totals["messages"] += 1
                    totals["readings"] += readings
                    totals["values"] += values
                processed_ms = until_ms
                if duration is not None and clock.elapsed_s() >= duration + TICK_S:
                    break  # CPU-bound: the wall-clock budget is spent
            if done or (duration is not None and clock.elapsed_s() >= duration + TICK_S):
                break
            wait = TICK_S if duration is None else min(TICK_S, max(0.0, duration - clock.elapsed_s()))
            stop.wait(wait)
    finally:
        if truth:
            truth.close()
        acknowledged = publisher.close()
    seconds = clock.elapsed_s()
    log(f"simulation done: {totals['messages']} messages, {totals['readings']} readings, "
        f"{len(started)} incidents in {seconds:.1f} s" + ("" if acknowledged else "; some messages were not acknowledged"))
    return {**totals, "incidents": started, "scenario": scenario, "sim_start": start_ms,
            "sim_end": processed_ms, "seconds": seconds, "acknowledged": acknowledged}

"""Publish-to-websocket latency of alerts, as a dashboard sees it.

An `AlertStamper` process publishes single readings for the alert sensors of the bench
catalogue, alternately above red and back to quiet, so that every reading makes one alert
event (raised, cleared, reactivated, cleared, ...). Each reading's `ts` is its send time in
ms (unique per sensor), so the event's `updated_at` names the reading; the stamper keeps the
exact send time of every (sensor, ts). `DashboardClients` are websocket clients (lifeline.bench_wsclient, with an API
token, as a browser connects) in a process of their own that record when each event arrives.
Latency = arrival - send, both read from the same wall clock.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import time
from dataclasses import dataclass, field

import msgspec
import numpy as np

from lifeline.bench_traffic import (
    ALARM_VALUE,
    ALERT_GATEWAY,
    ALERT_SENSOR_PREFIX,
    QUIET_VALUE,
    alert_sensor_id,
)
from lifeline.bench_wsclient import ABNORMAL, connect
from lifeline.mqtturl import parse_mqtt_url


# -- the publisher ------------------------------------------------------------------------------
def _stamp(url: str, prefix: str, alarmed: list[bool], rate: float, ready, stop, results) -> None:
    """Process body: publish `rate` alert readings/s round robin over the alert sensors until
    `stop`, each one flipping its sensor's state (`alarmed`: where the last run left them)."""
    from lifeline.mqtturl import paho_client

    address = parse_mqtt_url(url)
    client = paho_client(address, "")
    client.max_inflight_messages_set(1000)
    client.connect(address.host, address.port)
    client.loop_start()
    topic = f"{prefix}/{ALERT_GATEWAY}/telemetry"
    sensors = len(alarmed)
    last_ts = [0] * sensors
    sent_sensor, sent_ts, sent_at = [], [], []
    ready.set()
    start = time.monotonic()
    count = 0
    info = None
    while not stop.is_set():
        due = int(rate * (time.monotonic() - start)) + 1
        if count >= due:
            time.sleep(0.0005)
            continue
        sensor = count % sensors
        alarmed[sensor] = not alarmed[sensor]
        now = time.time()
        # ts only has to name the reading: unique per sensor (the exact send time is kept apart).
        ts = last_ts[sensor] = max(int(now * 1000), last_ts[sensor] + 1)
        value = ALARM_VALUE if alarmed[sensor] else QUIET_VALUE
        payload = b'{"%s": {"ts": %d, "values": {"ch4": %.1f}}}' % (alert_sensor_id(sensor).encode(), ts, value)
        info = client.publish(topic, payload, qos=1)
        sent_sensor.append(sensor)
        sent_ts.append(ts)
        sent_at.append(now)
        count += 1
    if info is not None:
        info.wait_for_publish(30)  # QoS 1: acknowledged by the broker before we hang up
    client.disconnect()
    client.loop_stop()
    results.put((np.array(sent_sensor, np.int32), np.array(sent_ts, np.int64), np.array(sent_at, np.float64),
                 alarmed))


class AlertStamper:
    """Alert readings at a steady rate, each stamped with its send time.

    Every reading flips its sensor between alarm and quiet, so that each makes an event; a
    stamper continues from the states `alarmed` that an earlier one left (`Sends.alarmed`).
    """

    def __init__(self, url: str, rate: float, alarmed: list[bool], prefix: str = "lifeline"):
        context = multiprocessing.get_context("spawn")
        self.ready, self.stop_event, self.results = context.Event(), context.Event(), context.Queue()
        self.process = context.Process(target=_stamp, args=(url, prefix, alarmed, rate, self.ready, self.stop_event,
                                                             self.results), daemon=True)

    def start(self) -> AlertStamper:
        self.process.start()
        if not self.ready.wait(60):
            raise RuntimeError("the alert publisher did not start")
        return self

    def stop(self) -> Sends:
        self.stop_event.set()
        sensor, ts, at, alarmed = self.results.get(timeout=60)
        self.process.join(10)
        return Sends(sensor, ts, at, alarmed)


@dataclass
class Sends:
    """What the stamper sent: alert sensor index (n,) int32, ts (n,) int64 epoch ms, send time (n,) float64 s."""

    sensor: np.ndarray
    ts: np.ndarray
    at: np.ndarray
    alarmed: list[bool]  # each alert sensor's state after the last reading


# -- the dashboard clients ------------------------------------------------------------------------
class _Alert(msgspec.Struct):
    sensor: str
    updated_at: int


class _Message(msgspec.Struct):
    type: str
    seq: int = 0
    alert: _Alert | None = None


_MESSAGE = msgspec.json.Decoder(_Message)


@dataclass
class Arrivals:
    """What one websocket client received: for each alert-sensor event, the sensor index, the
    alert's updated_at (epoch ms) and the arrival time (s); plus how its connection went."""

    sensor: np.ndarray
    updated_at: np.ndarray
    at: np.ndarray
    events: int  # every event message, alert sensors or not
    reconnects: int
    close_codes: list[int] = field(default_factory=list)


async def _client(url: str, stop: asyncio.Event, streams: set, connected: list[int]) -> Arrivals:
    """One dashboard: reads events until `stop`; reconnects with ?since= when cut off."""
    sensors, stamps, arrivals = [], [], []
    prefix = len(ALERT_SENSOR_PREFIX)
    counts = {"events": 0, "last_seq": None}
    reconnects = 0
    codes: list[int] = []

    def on_message(payload: bytes, now: float) -> None:
        message = _MESSAGE.decode(payload)
        counts["last_seq"] = message.seq
        if message.type != "event" or message.alert is None:
            return
        counts["events"] += 1
        if message.alert.sensor.startswith(ALERT_SENSOR_PREFIX):
            sensors.append(int(message.alert.sensor[prefix:]))
            stamps.append(message.alert.updated_at)
            arrivals.append(now)

    first = True
    while not stop.is_set():
        since = counts["last_seq"]
        try:
            stream = await connect(url if since is None else f"{url}&since={since}", on_message)
        except OSError:
            codes.append(ABNORMAL)
            await asyncio.sleep(0.1)
            continue
        streams.add(stream)
        if first:
            connected[0] += 1
            first = False
        else:
            reconnects += 1
        code = await stream.closed
        streams.discard(stream)
        if not stop.is_set():
            codes.append(code)
            await asyncio.sleep(0.1)
    return Arrivals(np.array(sensors, np.int32), np.array(stamps, np.int64), np.array(arrivals, np.float64),
                    counts["events"], reconnects, codes)


def _run_clients(url: str, count: int, ready, stop, results) -> None:
    async def main() -> list[Arrivals]:
        stopping = asyncio.Event()
        streams: set = set()
        connected = [0]
        tasks = [asyncio.create_task(_client(url, stopping, streams, connected)) for _ in range(count)]
        while connected[0] < count and not any(task.done() for task in tasks):
            await asyncio.sleep(0.01)
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        stopping.set()
        for stream in list(streams):
            stream.close()
        return list(await asyncio.gather(*tasks))

    cpu_before = time.process_time()
    arrivals = asyncio.run(main())
    results.put((arrivals, time.process_time() - cpu_before))


class DashboardClients:
    """`count` websocket clients in one process, connected until `stop()`."""

    def __init__(self, ws_url: str, count: int = 1):
        context = multiprocessing.get_context("spawn")
        self.count = count
        self.cpu_s = 0.0  # CPU time the clients' process used, known after stop()
        self.ready, self.stop_event, self.results = context.Event(), context.Event(), context.Queue()
        self.process = context.Process(target=_run_clients, args=(ws_url, count, self.ready, self.stop_event,
                                                                  self.results), daemon=True)

    def start(self) -> DashboardClients:
        self.process.start()
        if not self.ready.wait(120):
            raise RuntimeError("the websocket clients did not connect")
        return self

    def stop(self) -> list[Arrivals]:
        self.stop_event.set()
        try:
            arrivals, self.cpu_s = self.results.get(timeout=120)
            return arrivals
        except queue.Empty:
            return []
        finally:
            self.process.join(10)
            if self.process.is_alive():
                self.process.kill()


# -- the numbers ----------------------------------------------------------------------------------
def latencies_ms(sends: Sends, arrivals: Arrivals) -> np.ndarray:
    """Arrival - send for every sent reading whose event arrived, ms."""
    key_sent = sends.sensor.astype(np.int64) * (1 << 44) + sends.ts
    key_arrived = arrivals.sensor.astype(np.int64) * (1 << 44) + arrivals.updated_at
    order = np.argsort(key_sent)
    position = np.searchsorted(key_sent[order], key_arrived).clip(0, max(len(order) - 1, 0))
    if len(order) == 0:
        return np.zeros(0)
    matched = key_sent[order][position] == key_arrived
    return (arrivals.at[matched] - sends.at[order][position[matched]]) * 1000


def summary(latency_ms: np.ndarray, sent: int) -> dict:
    """p50, p99 and max latency (ms) and how many events were sent and arrived."""
    if len(latency_ms) == 0:
        return {"events_sent": sent, "events_received": 0, "p50_ms": None, "p99_ms": None, "max_ms": None}
    p50, p99 = np.percentile(latency_ms, [50, 99])
    return {"events_sent": sent, "events_received": int(len(latency_ms)), "p50_ms": round(float(p50), 2),
            "p99_ms": round(float(p99), 2), "max_ms": round(float(latency_ms.max()), 2)}

"""Benchmark traffic: the generated catalogue and the gateway load that `lifeline bench` sends.

Load goes out through `WirePublisher`, one process per gateway: pre-encoded CONTRACT payloads
as MQTT 3.1.1 QoS 1 PUBLISH packets, a whole chunk per system call, at a given rate or as fast
as the broker takes them (a general MQTT client would be slower than the service it loads). Every message's readings carry one timestamp, advancing by 1 ms per message of that
gateway, so each channel sees strictly increasing timestamps and the detectors evaluate every
reading (late readings would be archived but skipped by the detectors).
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from ingest import mqtt_wire

ALERT_GATEWAY = "gw-alerts"
ALERT_SENSOR_PREFIX = "ALERT-"
QUIET_VALUE = 1.5  # below every level of the bench rule
ALARM_VALUE = 30.0  # above red
TS_PLACEHOLDER = b"1111111111111"  # 13 digits, as wide as an epoch-ms timestamp


def gateway_id(index: int) -> str:
    return f"gw-{index:03d}"


def sensor_id(index: int) -> str:
    return f"S{index:06d}"


def alert_sensor_id(index: int) -> str:
    return f"{ALERT_SENSOR_PREFIX}{index:04d}"


def write_catalogue(folder: Path, sensors: int, gateways: int, alert_sensors: int = 100) -> Path:
    """A config with `sensors` single-metric sensors spread round-robin over `gateways`, plus
    `alert_sensors` on their own gateway for the latency and fan-out runs, and one threshold rule."""
    lines = ["id,gateway,domain,type,asset,lon,lat,metrics,interval"]
    for i in range(sensors):
        lines.append(f"{sensor_id(i)},{gateway_id(i % gateways)},gas,manhole_methane,MH-{i:06d},117.2,31.8,ch4:%LEL,60")
    for i in range(alert_sensors):
        lines.append(f"{alert_sensor_id(i)},{ALERT_GATEWAY},gas,manhole_methane,MH-A{i:04d},117.3,31.9,ch4:%LEL,60")
    (folder / "sensors.csv").write_text("\n".join(lines) + "\n")
    gateway_lines = "\n".join(f"  - {{id: {gateway_id(g)}, owner: bench}}" for g in range(gateways))
    config = folder / "bench.yaml"
    config.write_text(f"""gateways:
{gateway_lines}
  - {{id: {ALERT_GATEWAY}, owner: bench}}
sensor_files: [sensors.csv]
rules:
  - id: ch4-level
    match: {{metric: ch4}}
    threshold: {{above: {{blue: 5, yellow: 10, orange: 20, red: 25}}, clear: 0.9}}
""")
    return config


@dataclass(frozen=True)
class Shape:
    """A payload shape: how many readings each gateway message carries."""

    name: str
    per_message: int


BATCHED = Shape("batched", 100)
SINGLE = Shape("single", 1)


class GatewayLines:
    """The telemetry messages of one gateway, in the CONTRACT format.

    Message m carries `per_message` distinct sensors of the gateway (the next ones, round
    robin), every reading with ts = first_ts + m.
    """

    def __init__(self, gateway: int, sensors: int, gateways: int, per_message: int):
        own = list(range(gateway, sensors, gateways))
        if len(own) < per_message:
            raise ValueError(f"gateway {gateway_id(gateway)} has {len(own)} sensors, fewer than "
                             f"{per_message} readings per message: use more --sensors or fewer --publishers")
        self.per_message = per_message
        self.windows = len(own) // per_message
        # A template per window of sensors, the timestamp left as a placeholder.
        self.templates = []
        for w in range(self.windows):
            body = ", ".join(
                f'"{sensor_id(s)}": {{"ts": {TS_PLACEHOLDER.decode()}, "values": {{"ch4": {QUIET_VALUE + (s % 7) * 0.1:.1f}}}}}'
                for s in own[w * per_message:(w + 1) * per_message])
            self.templates.append(("{" + body + "}").encode())

    def messages(self, first_message: int, count: int, first_ts: int) -> list[bytes]:
        """Messages first_message .. first_message+count-1."""
        return [self.templates[m % self.windows].replace(TS_PLACEHOLDER, b"%d" % (first_ts + m))
                for m in range(first_message, first_message + count)]


class WirePublisher:
    """A QoS 1 publisher speaking MQTT 3.1.1 on its socket (ingest/mqtt_wire.py): a whole
    chunk of PUBLISH packets per `sendall`, up to `window` of them unacknowledged.

    The load has to cost less than the service it loads, on the same two cores. Mosquitto's C
    publisher fed lines through a pipe sends a packet per system call and, with its default of
    20 in flight, waited on round trips for one-reading messages."""

    def __init__(self, host: str, port: int, topic: str, window: int = 1000):
        self.window = window
        self.sock = socket.create_connection((host, port))
        # Each chunk goes out at once: with Nagle's algorithm a chunk's small tail waited for the
        # broker's delayed ACK, and the flood stalled (75,000 readings/s in one run).
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(mqtt_wire.connect(f"bench-pub-{os.getpid()}", 0, clean_session=True, username=None,
                                            password=None))
        connack = self._read(4)
        if connack[0] >> 4 != mqtt_wire.CONNACK or connack[3] != 0:
            raise ConnectionError(f"broker refused the bench publisher: {connack!r}")
        topic_bytes = topic.encode()
        self._topic = len(topic_bytes).to_bytes(2, "big") + topic_bytes
        self._next_id = 1
        self._unacked = 0
        self._acks = b""

    def publish(self, payloads: list[bytes]) -> None:
        packets = []
        for payload in payloads:
            packet_id = self._next_id
            self._next_id = packet_id % 65535 + 1
            size = len(self._topic) + 2 + len(payload)
            packets.append(b"\x32" + mqtt_wire._remaining_length(size) + self._topic + packet_id.to_bytes(2, "big")
                           + payload)
        self.sock.sendall(b"".join(packets))
        self._unacked += len(payloads)
        self._take_acks(wait=False)
        while self._unacked > self.window:
            self._take_acks(wait=True)

    def close(self) -> None:
        """After every message is acknowledged (the broker holds it)."""
        while self._unacked > 0:
            self._take_acks(wait=True)
        self.sock.sendall(mqtt_wire.DISCONNECT)
        self.sock.close()

    def _take_acks(self, wait: bool) -> None:
        # The broker sends this client nothing but 4-byte PUBACKs (it subscribes to nothing).
        try:
            data = self.sock.recv(1 << 16, 0 if wait else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        if not data:
            raise ConnectionError("the broker closed the bench publisher's connection")
        self._acks += data
        acked = len(self._acks) // 4
        self._unacked -= acked
        self._acks = self._acks[4 * acked:]

    def _read(self, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = self.sock.recv(size - len(data))
            if not chunk:
                raise ConnectionError("the broker closed the bench publisher's connection")
            data += chunk
        return data


#: Scheduling priority of the publisher processes, added to the bench's own (nice(2)).
PUBLISHER_NICE = 10


@dataclass
class FeedPlan:
    host: str
    port: int
    topic_prefix: str
    gateway: int
    sensors: int
    gateways: int
    per_message: int
    first_ts: int
    rate: float | None  # messages/s for this gateway; None: as fast as the pipe takes them
    messages: int | None = None  # stop after this many (None: run until stopped or `seconds`)
    seconds: float | None = None


def feed(plan: FeedPlan, sent, stop) -> None:
    """Process body: publish the plan's messages, keep `sent.value` current."""
    # The publishers stand in for gateways on other machines: they get the cores the service and
    # the broker leave idle, not an equal share of them. At equal priority the service's batches
    # waited for a core (alert latency at 700,000 readings/s p50 9.8-10.5, p99 45-47 ms; with
    # this 7.2-7.7 and 29-41 ms).
    os.nice(PUBLISHER_NICE)
    lines = GatewayLines(plan.gateway, plan.sensors, plan.gateways, plan.per_message)
    # About 1 MiB unacknowledged at most: 1,000 one-reading messages, 170 gateway batches (1,000
    # batches in flight piled megabytes on the broker and slowed it down).
    window = max(20, min(1000, (1 << 20) // len(lines.templates[0])))
    publisher = WirePublisher(plan.host, plan.port, f"{plan.topic_prefix}/{gateway_id(plan.gateway)}/telemetry",
                              window)
    limit = plan.messages if plan.messages is not None else 1 << 62
    step = max(1, 64_000 // (len(lines.templates[0]) or 1))  # about 64 KB per write
    start = time.monotonic()
    count = 0
    try:
        while count < limit and not stop.is_set():
            elapsed = time.monotonic() - start
            if plan.seconds is not None and elapsed >= plan.seconds:
                break
            due = limit - count if plan.rate is None else min(limit, int(plan.rate * elapsed) + 1) - count
            if due <= 0:
                time.sleep(0.002)
                continue
            n = min(due, step)
            publisher.publish(lines.messages(count, n, plan.first_ts))
            count += n
            sent.value = count
    finally:
        publisher.close()


class Feeders:
    """One feeder process per gateway, started together."""

    def __init__(self, plans: list[FeedPlan]):
        context = multiprocessing.get_context("spawn")
        self.plans = plans
        self.stop_event = context.Event()
        self.sent = [context.Value("q", 0, lock=False) for _ in plans]
        self.processes = [context.Process(target=feed, args=(plan, counter, self.stop_event), daemon=True)
                          for plan, counter in zip(plans, self.sent, strict=True)]

    def start(self) -> Feeders:
        for process in self.processes:
            process.start()
        return self

    def readings_sent(self) -> int:
        return sum(counter.value * plan.per_message for counter, plan in zip(self.sent, self.plans, strict=True))

    def running(self) -> bool:
        return any(process.is_alive() for process in self.processes)

    def stop(self, timeout: float = 120) -> None:
        """Stop publishing early; wait until the broker has acknowledged every message sent."""
        self.stop_event.set()
        self.join(timeout)

    def join(self, timeout: float = 120) -> None:
        """Wait for the plans to end (count or seconds reached), every message acknowledged."""
        for process in self.processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()

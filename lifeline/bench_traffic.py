"""Benchmark traffic: the generated catalogue and the gateway load that `lifeline bench` sends.

Load goes through Mosquitto's own C publisher (`mosquitto_pub -l`, one message per stdin
line) because a Python MQTT publisher is slower than the service it should load; a small
Python feeder per gateway writes the lines, at a given rate or as fast as the pipe takes
them. Every message's readings carry one timestamp, advancing by 1 ms per message of that
gateway, so each channel sees strictly increasing timestamps and the detectors evaluate every
reading (late readings would be archived but skipped by the detectors).
"""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

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
    """The telemetry messages of one gateway, one per line, in the CONTRACT format.

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
            self.templates.append(("{" + body + "}\n").encode())

    def chunk(self, first_message: int, count: int, first_ts: int) -> bytes:
        """Messages first_message .. first_message+count-1 as lines."""
        return b"".join(self.templates[m % self.windows].replace(TS_PLACEHOLDER, b"%d" % (first_ts + m))
                        for m in range(first_message, first_message + count))


#: Messages a publisher of one-reading messages may have unacknowledged. mosquitto_pub's
#: default of 20 made its round trips to the broker, not the cores, the limit for them (C
#: ceiling 33,000-38,000 msg/s, 44,000-45,000 with 1,000). Gateway batches keep the default:
#: 20 messages of 100 readings in flight suffice, and 1,000 of them let the publishers pile
#: megabytes on the broker (batched runs then ranged 490,000-990,000 readings/s, against
#: 940,000-1,076,000).
SMALL_MESSAGE_INFLIGHT = 1000
DEFAULT_INFLIGHT = 20


def mosquitto_pub(host: str, port: int, topic: str, inflight: int = DEFAULT_INFLIGHT) -> subprocess.Popen:
    """Mosquitto's C publisher reading one message per stdin line, QoS 1."""
    return subprocess.Popen([shutil.which("mosquitto_pub") or "mosquitto_pub", "-h", host, "-p", str(port),
                             "-q", "1", "-M", str(inflight), "-t", topic, "-l"], stdin=subprocess.PIPE)


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
    """Process body: write the plan's lines into `mosquitto_pub -l`, keep `sent.value` current."""
    lines = GatewayLines(plan.gateway, plan.sensors, plan.gateways, plan.per_message)
    publisher = mosquitto_pub(plan.host, plan.port, f"{plan.topic_prefix}/{gateway_id(plan.gateway)}/telemetry",
                              SMALL_MESSAGE_INFLIGHT if plan.per_message == 1 else DEFAULT_INFLIGHT)
    limit = plan.messages if plan.messages is not None else 1 << 62
    step = max(1, 64_000 // (len(lines.templates[0]) or 1))  # about one pipe buffer per write
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
            publisher.stdin.write(lines.chunk(count, n, plan.first_ts))
            publisher.stdin.flush()
            count += n
            sent.value = count
    finally:
        publisher.stdin.close()
        publisher.wait()


class Feeders:
    """One feeder process (and its `mosquitto_pub`) per gateway, started together."""

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
        """Stop writing early; wait until every `mosquitto_pub` has handed its messages to the broker."""
        self.stop_event.set()
        self.join(timeout)

    def join(self, timeout: float = 120) -> None:
        """Wait for the plans to end (count or seconds reached) and every `mosquitto_pub` to exit."""
        for process in self.processes:
            process.join(timeout)
            if process.is_alive():
                process.kill()
                process.join()

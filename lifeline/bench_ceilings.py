"""Ceilings: how fast the same payloads arrive when the receiver does (almost) nothing.

- the C ceiling: Mosquitto's `mosquitto_sub`, which only counts messages (what broker and
  loopback deliver while the publishers share the cores);
- the decode ceilings: a minimal Python subscriber that only decodes each payload into numpy
  arrays (channel, ts, value) with a typed msgspec decoder, a general JSON library: what any
  Python pipeline could reach. Measured with two receivers: paho-mqtt in its own network
  thread (decoding in its callback), and the service's own lean `TelemetrySubscriber`
  (decoding batches drained from its queue in a second thread, as the pipeline does) when that
  module is present;
- the parse ceiling: the lean subscriber with the service's own payload parser
  (`ingest/payload_parser.c`) instead of msgspec: receiving and parsing alone, what the
  service's pipeline could reach if detection and archiving cost nothing.

Both run on a topic prefix the service does not subscribe to, so the service idles meanwhile.
Each rate is taken between the first and the last message received.
"""

from __future__ import annotations

import multiprocessing
import shutil
import subprocess
import threading
import time
from pathlib import Path

import msgspec
import numpy as np

from lifeline.bench_traffic import Feeders, FeedPlan, Shape, sensor_id
from lifeline.mqtturl import parse_mqtt_url

CEILING_PREFIX = "bench-ceiling"


def _plans(url: str, shape: Shape, messages: int, sensors: int, gateways: int, first_ts: int) -> list[FeedPlan]:
    address = parse_mqtt_url(url)
    return [FeedPlan(address.host, address.port, CEILING_PREFIX, g, sensors, gateways, shape.per_message, first_ts,
                     rate=None, messages=messages // gateways) for g in range(gateways)]


def c_ceiling(url: str, shape: Shape, messages: int, sensors: int, gateways: int, first_ts: int,
              folder: Path) -> dict:
    """Messages/s that `mosquitto_sub` receives, QoS 1, first to last message."""
    address = parse_mqtt_url(url)
    plans = _plans(url, shape, messages, sensors, gateways, first_ts)
    expected = sum(plan.messages for plan in plans)
    # A retained message on a second topic arrives right after the subscription is in place:
    # its line says the subscriber is ready.
    ready_topic = f"{CEILING_PREFIX}/ready"
    subprocess.run([_tool("mosquitto_pub"), "-h", address.host, "-p", str(address.port), "-t", ready_topic,
                    "-r", "-q", "1", "-m", "ready"], check=True)
    stamps = folder / f"c-ceiling-{shape.name}.txt"
    with stamps.open("wb") as out:
        subscriber = subprocess.Popen([_tool("mosquitto_sub"), "-h", address.host, "-p", str(address.port), "-q", "1",
                                       "-t", f"{CEILING_PREFIX}/+/telemetry", "-t", ready_topic,
                                       "-C", str(expected + 1), "-F", "%U"], stdout=out)
    try:
        _wait(lambda: stamps.stat().st_size > 0, 30, "mosquitto_sub subscription")
        feeders = Feeders(plans).start()
        feeders.join()
        _wait_quiet(subscriber, stamps)
    finally:
        if subscriber.poll() is None:
            subscriber.terminate()
            subscriber.wait()
    lines = stamps.read_bytes().split()[1:]  # the first line is the ready marker
    received = len(lines)
    seconds = float(lines[-1]) - float(lines[0]) if received > 1 else 0.0
    return _rate(shape, expected, received, seconds)


RECEIVERS = ("paho", "lean")  # msgspec decoding; "parser" is the lean receiver with the C parser


def lean_receiver_available() -> bool:
    try:
        import ingest.telemetry_subscriber  # noqa: F401
    except ImportError:
        return False
    return True


def decode_ceiling(url: str, shape: Shape, messages: int, sensors: int, gateways: int, first_ts: int,
                   receiver: str = "paho") -> dict:
    """Readings/s that a minimal subscriber decodes into numpy arrays, first to last message."""
    plans = _plans(url, shape, messages, sensors, gateways, first_ts)
    expected = sum(plan.messages for plan in plans)
    context = multiprocessing.get_context("spawn")
    ready, results = context.Event(), context.Queue()
    body, args = _decoding_subscriber, (url, sensors, expected, ready, results)
    if receiver != "paho":
        body, args = _lean_decoding_subscriber, (*args, receiver == "parser")
    subscriber = context.Process(target=body, args=args, daemon=True)
    subscriber.start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the decoding subscriber did not subscribe")
        feeders = Feeders(plans).start()
        feeders.join()
        received, readings, seconds, cpu_s = results.get(timeout=300)
    finally:
        subscriber.join(10)
        if subscriber.is_alive():
            subscriber.kill()
    result = _rate(shape, expected, received, seconds)
    result["readings_decoded"] = readings
    # On a busy machine the wall-clock rate says more about the neighbours than about the
    # subscriber; its CPU time (paho's network thread and the decoding) does not.
    result["cpu_s"] = round(cpu_s, 3)
    result["readings_per_cpu_s"] = round(readings / cpu_s) if cpu_s > 0 else None
    return result


class _Reading(msgspec.Struct, gc=False):
    values: dict[str, float]
    ts: int = 0


_DECODER = msgspec.json.Decoder(dict[str, _Reading | list[_Reading]])


def payload_arrays(payloads: list[bytes], channel_of: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gateway messages as one set of (channel int32, ts int64 epoch ms, value float64) arrays,
    all (n,): decoded and type-checked in C by msgspec, arrays built once per group of messages
    (as the service's fast path does, ingest/fast_decode.py). Plain append loops measured as
    fast as comprehensions of tuples and np.fromiter here."""
    channels: list[int] = []
    stamps: list[int] = []
    values: list[float] = []
    add_channel, add_ts, add_value = channels.append, stamps.append, values.append
    for payload in payloads:
        for sensor, readings in _DECODER.decode(payload).items():
            channel = channel_of[sensor]
            for reading in readings if isinstance(readings, list) else (readings,):
                for value in reading.values.values():
                    add_channel(channel)
                    add_ts(reading.ts)
                    add_value(value)
    return np.array(channels, np.int32), np.array(stamps, np.int64), np.array(values, np.float64)


def _decoding_subscriber(url: str, sensors: int, expected: int, ready, results) -> None:
    from lifeline.mqtturl import paho_client

    channel_of = {sensor_id(i): i for i in range(sensors)}
    address = parse_mqtt_url(url)
    state = {"received": 0, "readings": 0, "first": 0.0, "last": 0.0, "cpu_first": 0.0, "cpu_last": 0.0}
    done = threading.Event()

    def on_message(client, userdata, message) -> None:
        channel, _ts, _value = payload_arrays([message.payload], channel_of)
        now, cpu = time.perf_counter(), time.process_time()
        if state["received"] == 0:
            state["first"], state["cpu_first"] = now, cpu
        state["last"], state["cpu_last"] = now, cpu
        state["received"] += 1
        state["readings"] += len(channel)
        if state["received"] >= expected:
            done.set()

    client = paho_client(address, "bench-decode-ceiling", clean_session=True)
    client.on_message = on_message
    client.on_subscribe = lambda *args: ready.set()
    client.connect(address.host, address.port)
    client.loop_start()
    client.subscribe(f"{CEILING_PREFIX}/+/telemetry", qos=1)
    # Wait for every message, or until they stop coming (the result then says how many arrived).
    seen = -1
    while not done.wait(5) and state["received"] != seen:
        seen = state["received"]
    client.disconnect()
    client.loop_stop()
    results.put((state["received"], state["readings"], state["last"] - state["first"],
                 state["cpu_last"] - state["cpu_first"]))


def parsed_arrays(payloads: list[bytes], sensors) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`payload_arrays` with the service's C parser; `sensors` is its table of every sensor."""
    from ingest._payload_parser import parse

    from ingest.rejection import MAX_PAYLOAD_BYTES

    cap = sum(map(len, payloads)) // 5 + 1  # as ingest/fast_decode.py sizes them
    channel, ts, value = np.empty(cap, np.int32), np.empty(cap, np.int64), np.empty(cap, np.float64)
    counts = np.empty(len(payloads), np.int64)
    n = parse(payloads, [sensors] * len(payloads), MAX_PAYLOAD_BYTES, channel, ts, value, counts)
    return channel[:n], ts[:n], value[:n]


def _lean_decoding_subscriber(url: str, sensors: int, expected: int, ready, results, with_parser: bool) -> None:
    from ingest.telemetry_subscriber import TelemetrySubscriber, end_session

    channel_of = {sensor_id(i): i for i in range(sensors)}
    if with_parser:
        from ingest._payload_parser import table

        everyone = table({sensor_id(i): {"ch4": i} for i in range(sensors)})

        def decode(payloads: list[bytes]) -> int:
            return len(parsed_arrays(payloads, everyone)[0])
    else:
        def decode(payloads: list[bytes]) -> int:
            return len(payload_arrays(payloads, channel_of)[0])
    address = parse_mqtt_url(url)
    subscriber = TelemetrySubscriber(address, "bench-decode-lean", [f"{CEILING_PREFIX}/+/telemetry"])
    subscriber.start()
    if not subscriber.wait_subscribed(60):
        raise RuntimeError("the lean subscriber did not subscribe")
    ready.set()
    received = readings = 0
    first = last = cpu_first = cpu_last = 0.0
    quiet_since = time.monotonic()
    while received < expected and time.monotonic() - quiet_since < 5:
        batch = subscriber.drain(0.0, 10_000, 1.0)
        if not batch:
            continue
        quiet_since = time.monotonic()
        if received == 0:
            first, cpu_first = time.perf_counter(), time.process_time()
        readings += decode([message.payload for message in batch])
        last, cpu_last = time.perf_counter(), time.process_time()
        received += len(batch)
    subscriber.stop()
    # Its session is persistent: end it, or the broker would keep later ceilings' messages for it.
    end_session(address, "bench-decode-lean")
    results.put((received, readings, last - first, cpu_last - cpu_first))


def _rate(shape: Shape, expected: int, received: int, seconds: float) -> dict:
    per_s = (received - 1) / seconds if received > 1 and seconds > 0 else 0.0
    return {"messages_expected": expected, "messages_received": received, "seconds": round(seconds, 3),
            "messages_per_s": round(per_s), "readings_per_s": round(per_s * shape.per_message)}


def _wait_quiet(subscriber: subprocess.Popen, stamps: Path, quiet_s: float = 5.0) -> None:
    """Until the subscriber exits (it counted every message) or nothing arrived for `quiet_s`."""
    size, changed = -1, time.monotonic()
    while subscriber.poll() is None and time.monotonic() - changed < quiet_s:
        now_size = stamps.stat().st_size
        if now_size != size:
            size, changed = now_size, time.monotonic()
        time.sleep(0.1)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _tool(name: str) -> str:
    return shutil.which(name) or name


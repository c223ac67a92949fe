"""Recording and replaying MQTT feeds: drills, acceptance tests and rule changes on real traffic.

A recording is JSON lines, one message each:

    {"t": 1763798400123.4, "topic": "lifeline/gw-gas-01/telemetry", "payload": "{...}"}

`t` is the receive time (wall clock, epoch ms, float) and `payload` the message as a UTF-8
string; a payload that is not valid UTF-8 is kept as `"payload_b64"` instead, so a recording of
malformed gateway traffic replays byte for byte. Files whose name ends in `.gz` are gzip
compressed.
"""

from __future__ import annotations

import base64
import gzip
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import msgspec
import paho.mqtt.client as paho

from lifeline.mqtturl import paho_client, parse_mqtt_url
from simulators.run import CONNECT_TIMEOUT_S, Publisher

DEFAULT_TOPIC_FILTER = "lifeline/+/telemetry"


class RecordedMessage(msgspec.Struct, omit_defaults=True):
    """One line of a recording."""

    t: float  # receive time, epoch ms (wall clock)
    topic: str
    payload: str | None = None  # the payload, when it is valid UTF-8
    payload_b64: str | None = None  # otherwise its bytes, base64

    def payload_bytes(self) -> bytes:
        if self.payload is not None:
            return self.payload.encode("utf-8")
        return base64.b64decode(self.payload_b64 or "")


_decoder = msgspec.json.Decoder(RecordedMessage)
_encoder = msgspec.json.Encoder()


def _open(path: Path, mode: str) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, mode + "b")  # type: ignore[return-value]
    return path.open(mode + "b")


def record(mqtt_url: str, out: Path, *, topic_filter: str = DEFAULT_TOPIC_FILTER,
           duration: float | None = None, stop: threading.Event | None = None,
           ready: threading.Event | None = None, log: Callable[[str], Any] | None = None) -> int:
    """Record the messages matching `topic_filter` (QoS 1 subscription) into `out`.

    Runs for `duration` wall-clock seconds, or until `stop` is set (one of them is needed to end).
    `ready` is set once the broker has acknowledged the subscription: messages published after
    that are recorded. Returns the number of messages recorded.
    """
    stop = stop or threading.Event()
    address = parse_mqtt_url(mqtt_url)
    client = paho_client(address, f"lifeline-record-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    subscribed = threading.Event()
    connected = threading.Event()
    failure: list[str] = []
    count = 0
    handle = _open(out, "w")

    def on_connect(c: paho.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any) -> None:
        if reason_code.is_failure:
            failure.append(str(reason_code))
        else:
            c.subscribe(topic_filter, qos=1)  # again after a reconnect: the session is clean
        connected.set()

    def on_subscribe(c: paho.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any) -> None:
        subscribed.set()

    def on_message(c: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        nonlocal count
        received = time.time() * 1000.0
        try:
            line = RecordedMessage(received, message.topic, payload=message.payload.decode("utf-8"))
        except UnicodeDecodeError:
            line = RecordedMessage(received, message.topic, payload_b64=base64.b64encode(message.payload).decode("ascii"))
        handle.write(_encoder.encode(line) + b"\n")  # only the network thread writes
        count += 1

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    try:
        client.connect(address.host, address.port, keepalive=30)
        client.loop_start()
        if not connected.wait(CONNECT_TIMEOUT_S) or failure:
            raise ConnectionError(f"cannot connect to {address.url}: {failure[0] if failure else 'no CONNACK'}")
        if not subscribed.wait(CONNECT_TIMEOUT_S):
            raise ConnectionError(f"{address.url} did not acknowledge the subscription to {topic_filter}")
        if log:
            log(f"recording {topic_filter} from {address.url} into {out}")
        if ready:
            ready.set()
        stop.wait(duration)
    finally:
        client.disconnect()
        client.loop_stop()
        handle.close()
    if log:
        log(f"recorded {count} messages")
    return count


def read_recording(path: Path) -> Iterator[RecordedMessage]:
    """The messages of a recording, in file order (blank lines skipped)."""
    with _open(path, "r") as handle:
        for raw in handle:
            if raw.strip():
                yield _decoder.decode(raw)


def shift_timestamps(payload: bytes, offset_ms: int) -> bytes:
    """The payload with every reading's `ts` moved by `offset_ms`; other payloads unchanged.

    Only CONTRACT §4 batches are touched: a JSON object of sensor id -> reading object or list
    of them, each with an integer `ts`. Anything else (including malformed test traffic) is
    returned as it was, so a recording of rejections replays the same rejections.
    """
    try:
        batch = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        return payload
    if not isinstance(batch, dict):
        return payload
    changed = False
    for readings in batch.values():
        for reading in readings if isinstance(readings, list) else [readings]:
            if isinstance(reading, dict) and isinstance(reading.get("ts"), int) and not isinstance(reading["ts"], bool):
                reading["ts"] += offset_ms
                changed = True
    return msgspec.json.encode(batch) if changed else payload


def replay(path: Path, mqtt_url: str, *, speed: float = 1.0, shift_to_now: bool = False,
           stop: threading.Event | None = None, log: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Publish a recording with its original timing divided by `speed` (0: as fast as possible),
    QoS 1, then wait for every acknowledgement.

    shift_to_now : move every reading `ts` by one offset so that the first message's receive time
        maps to now (a recording from last week then raises live alerts). With speed > 1 later
        readings then lie ahead of the wall clock by (1 - 1/speed) x their offset into the
        recording; the service rejects them past 5 minutes.
    Returns a summary: messages, seconds (wall), acknowledged, offset_ms (the shift applied to
    reading timestamps, 0 without shift_to_now).
    """
    if speed < 0:
        raise ValueError(f"speed must be 0 (as fast as possible) or more, got {speed}")
    stop = stop or threading.Event()
    publisher = Publisher(mqtt_url, f"lifeline-replay-{os.getpid()}-{uuid.uuid4().hex[:8]}", log=log)
    publisher.connect()
    t0 = time.monotonic()
    first_t: float | None = None
    offset_ms = 0
    count = 0
    try:
        for message in read_recording(path):
            if stop.is_set():
                break
            if first_t is None:
                first_t = message.t
                offset_ms = round(time.time() * 1000.0 - first_t) if shift_to_now else 0
            if speed > 0:
                due = t0 + (message.t - first_t) / 1000.0 / speed
                delay = due - time.monotonic()
                if delay > 0 and stop.wait(delay):
                    break
            payload = message.payload_bytes()
            if shift_to_now:
                payload = shift_timestamps(payload, offset_ms)
            publisher.publish(message.topic, payload)
            count += 1
    finally:
        acknowledged = publisher.close()
    seconds = time.monotonic() - t0
    if log:
        log(f"replayed {count} messages from {path} in {seconds:.1f} s")
    return {"messages": count, "seconds": seconds, "acknowledged": acknowledged, "offset_ms": offset_ms}

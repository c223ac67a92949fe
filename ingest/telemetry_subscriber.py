"""The hot path's MQTT connection: a lean subscriber that only receives telemetry.

Measured on this machine (README, Performance), a system call costs more than everything else
a small message needs: paho-mqtt reads each packet with several small `recv` calls and sends
each QoS 1 acknowledgement with its own `send`, and gmqtt still sends one PUBACK per message.
This subscriber reads whatever the socket holds (up to 1 MiB) with one call, splits it into
packets, and acknowledges all QoS 1 messages of that read with a single `sendall`. It speaks
just enough MQTT 3.1.1 for that (ingest/mqtt_wire.py); the service publishes errors and alert
events through paho (ingest/mqtt_publisher.py), where volumes are small.

The subscription is QoS 1 on a persistent session (clean session off, fixed client id), so
readings published while the service was briefly away are delivered when it returns. A
message is acknowledged once it is in the queue of the pipeline thread, as paho did.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import NamedTuple

from ingest import mqtt_wire as wire
from lifeline.mqtturl import BrokerAddress

log = logging.getLogger("lifeline.mqtt")

READ_BYTES = 1 << 20
#: Payload bytes queued for the pipeline beyond which the subscriber stops reading: the broker's
#: persistent queue holds the rest (TCP back-pressure), rather than this process's memory.
#: 16 MiB is 16 of the pipeline's batches (cut at 1 MiB), over a second of a worker's traffic at
#: full load: the pipeline never waits for the network, and a flood costs a worker at most this.
MAX_QUEUED_BYTES = 16 << 20
KEEPALIVE_S = 30
_TOPIC_CACHE = 10_000  # distinct topic names kept decoded; spoofed topics must not grow it forever


class Message(NamedTuple):
    topic: str
    payload: bytes
    received_ms: int  # wall clock at arrival


class TelemetrySubscriber:
    """Subscribes to `topic_filters` at QoS 1 and queues messages for the pipeline thread."""

    def __init__(self, address: BrokerAddress, client_id: str, topic_filters: Sequence[str],
                 stale_filters: Sequence[str] = ()):
        self.address = address
        self.client_id = client_id
        self.topic_filters = list(topic_filters)
        #: filters this session had in an earlier run and must no longer receive (lifeline/mqtt_sessions.py)
        self.stale_filters = list(stale_filters)
        self._queue: collections.deque[Message] = collections.deque()
        self._arrived = threading.Event()
        self._subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"mqtt-subscriber-{client_id}", daemon=True)
        self._sock: socket.socket | None = None
        self._topics: dict[bytes, str] = {}
        # Queued payload bytes = in - out; each counter has one writer thread, so no lock.
        self._bytes_in = 0
        self._bytes_out = 0
        self.disconnects = 0
        self._drained_at = 0.0  # monotonic time of the last drain that returned messages

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(wire.DISCONNECT)
        self._thread.join(timeout=5)

    @property
    def subscribed(self) -> bool:
        """True once the broker acknowledged every telemetry subscription, until a disconnect."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    # -- pipeline side ------------------------------------------------------------------------
    def drain(self, linger_s: float, max_messages: int, timeout_s: float,
              max_bytes: int = 1 << 20) -> list[Message]:
        """Wait up to `timeout_s` for a message, then gather more until `linger_s` has passed
        since the previous drain (or until `max_messages`), so that many messages become one
        batch. A batch stops at `max_bytes` of payload too: a batch's alerts wait for all of
        it, so it must stay short (~1 MiB is tens of milliseconds of work) even when large
        messages are queued.

        The linger counts from the previous drain, not from now: while the pipeline processed
        its last batch, this one was already gathering. Under load a batch then waits for the
        one before it and no longer (measured at 620,000 readings/s: alert latency p50 6.3-7.1
        instead of 7.9-9.0 ms, and the same capacity)."""
        if not self._queue:
            self._arrived.wait(timeout_s)
            self._arrived.clear()
            if not self._queue:
                return []
        if len(self._queue) < max_messages:
            # One sleep rather than a wake-up per read: waking the pipeline thread for every
            # arrival makes it fight the network thread for the GIL.
            rest = linger_s - (time.monotonic() - self._drained_at)
            if rest > 0:
                time.sleep(rest)
        self._drained_at = time.monotonic()
        self._arrived.clear()
        count = min(len(self._queue), max_messages)
        popleft = self._queue.popleft
        batch: list[Message] = []
        size = 0
        while len(batch) < count and size < max_bytes:
            message = popleft()
            batch.append(message)
            size += len(message.payload)
        self._bytes_out += size
        return batch

    def backlog(self) -> int:
        return len(self._queue)

    # -- network thread -----------------------------------------------------------------------
    def _run(self) -> None:
        delay = 0.2
        while not self._stop.is_set():
            try:
                self._session()
                delay = 0.2
            except (OSError, wire.ProtocolError, ConnectionError) as exc:
                if self._stop.is_set():
                    break
                if self._subscribed.is_set():
                    self.disconnects += 1
                    delay = 0.2
                    log.warning("disconnected from %s (%s); reconnecting", self.address.url, exc)
                else:
                    log.debug("cannot subscribe at %s: %s", self.address.url, exc)
            finally:
                self._subscribed.clear()
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None
            self._stop.wait(delay)
            delay = min(delay * 2, 5.0)

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.address.host, self.address.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.address.tls:
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=self.address.host)
        return sock

    def _session(self) -> None:
        """One connection: connect, subscribe, then receive until it breaks or we stop."""
        sock = self._sock = self._open()
        sock.sendall(wire.connect(self.client_id, KEEPALIVE_S, clean_session=False,
                                  username=self.address.username, password=self.address.password))
        # Filters go in groups so that one SUBSCRIBE stays far below any packet size limit.
        groups = [self.topic_filters[i:i + 500] for i in range(0, len(self.topic_filters), 500)]
        awaiting = set(range(1, len(groups) + 1))
        sock.settimeout(1.0)
        pending = b""
        last_sent = last_heard = time.monotonic()
        while not self._stop.is_set():
            if self._bytes_in - self._bytes_out > MAX_QUEUED_BYTES:
                data = None
                time.sleep(0.005)  # the pipeline is behind: leave the rest with the broker
                last_heard = time.monotonic()  # our pause, not the broker's silence
            else:
                try:
                    data = sock.recv(READ_BYTES)
                except TimeoutError:
                    data = None
            now = time.monotonic()
            if data is not None:
                if not data:
                    raise ConnectionError("connection closed by the broker")
                last_heard = now
                pending = pending + data if pending else data
                received_ms = int(time.time() * 1000)
                consumed, acks, control = self._read(pending, received_ms)
                pending = pending[consumed:]
                if acks:
                    sock.sendall(b"".join(acks))
                    last_sent = now
                for kind, body in control:
                    if kind == wire.CONNACK:
                        code = body[1]
                        if code:
                            raise ConnectionError("connection refused: "
                                                  + wire.CONNACK_REFUSED.get(code, f"code {code}"))
                        log.info("connected to %s (session present: %s)", self.address.url, bool(body[0] & 1))
                        packets = [wire.subscribe(i, g, qos=1) for i, g in enumerate(groups, 1)]
                        if self.stale_filters:
                            packets.append(wire.unsubscribe(len(groups) + 1, self.stale_filters))
                        sock.sendall(b"".join(packets))
                    elif kind == wire.SUBACK:
                        if any(code >= wire.SUBACK_FAILURE for code in body[2:]):
                            raise ConnectionError(f"subscription refused by {self.address.url}")
                        awaiting.discard(int.from_bytes(body[:2], "big"))
                        if not awaiting:
                            self._subscribed.set()
            if now - last_sent > KEEPALIVE_S / 2:
                sock.sendall(wire.PINGREQ)
                last_sent = now
            if now - last_heard > KEEPALIVE_S * 1.5:
                raise ConnectionError("broker stopped answering")

    def _read(self, data: bytes, received_ms: int) -> tuple[int, list[bytes], list[tuple[int, bytes]]]:
        """Queue the PUBLISH packets in `data`; returns the bytes used, the PUBACKs to send and
        the other packets (type, body)."""
        consumed = 0
        acks: list[bytes] = []
        control: list[tuple[int, bytes]] = []
        queue, topics = self._queue, self._topics
        for kind, flags, start, end in wire.split_packets(data):
            consumed = end
            if kind != wire.PUBLISH:
                control.append((kind, data[start:end]))
                continue
            topic_end = start + 2 + (data[start] << 8 | data[start + 1])
            raw_topic = data[start + 2:topic_end]
            topic = topics.get(raw_topic)
            if topic is None:
                if len(topics) >= _TOPIC_CACHE:
                    topics.clear()
                topic = topics[raw_topic] = raw_topic.decode("utf-8", "replace")
            if flags & 0x06:  # QoS 1 (QoS 2 is never delivered on a QoS 1 subscription)
                acks.append(wire.puback(data[topic_end:topic_end + 2]))
                topic_end += 2
            payload = data[topic_end:end]
            self._bytes_in += len(payload)
            queue.append(Message(topic, payload, received_ms))
        if len(queue) and not self._arrived.is_set():
            self._arrived.set()
        return consumed, acks, control


def end_session(address: BrokerAddress, client_id: str, timeout_s: float = 5.0) -> None:
    """Discard the broker's persistent session of `client_id` (its subscriptions and queued
    messages): connecting with a clean session does that (MQTT 3.1.1 §3.1.2.4)."""
    with socket.create_connection((address.host, address.port), timeout=timeout_s) as raw:
        sock = ssl.create_default_context().wrap_socket(raw, server_hostname=address.host) if address.tls else raw
        sock.sendall(wire.connect(client_id, KEEPALIVE_S, clean_session=True, username=address.username,
                                  password=address.password))
        reply = b""
        while len(reply) < 4:
            chunk = sock.recv(4 - len(reply))
            if not chunk:
                raise ConnectionError("connection closed before CONNACK")
            reply += chunk
        if reply[0] >> 4 != wire.CONNACK or reply[3]:
            raise ConnectionError(f"broker refused {client_id!r}: "
                                  + wire.CONNACK_REFUSED.get(reply[3], f"code {reply[3]}"))
        sock.sendall(wire.DISCONNECT)

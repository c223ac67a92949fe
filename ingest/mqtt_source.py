"""The service's MQTT connection: telemetry in, errors and alert events out.

This is the one module that knows the MQTT client library, so the hot path's client can be
swapped after measuring. paho-mqtt, driven directly in its own network thread, was chosen
for the hot path: it receives several times more small messages per second than aiomqtt
(see README, Performance), and its `publish` is thread-safe, so the pipeline thread sends
errors and alert events through the same connection.

The subscription is QoS 1 on a persistent session (clean_session false, fixed client id),
so readings published while the service was briefly away are delivered when it returns.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as paho

from lifeline.mqtturl import BrokerAddress, paho_client

log = logging.getLogger("lifeline.mqtt")


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    received_ms: int  # wall clock at arrival


class MqttSource:
    """Subscribes to `{prefix}/+/telemetry` and queues messages for the pipeline thread."""

    def __init__(self, address: BrokerAddress, topic_prefix: str, client_id: str):
        self.address = address
        self.prefix = topic_prefix
        self.telemetry_filter = f"{topic_prefix}/+/telemetry"
        self._queue: collections.deque[Message] = collections.deque()
        self._arrived = threading.Event()
        self._subscribed = threading.Event()
        self._client = paho_client(address, client_id, clean_session=False)
        self._client.max_queued_messages_set(0)  # never drop our own outgoing events
        self._client.reconnect_delay_set(min_delay=0.2, max_delay=5)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self.disconnects = 0

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self._client.connect_async(self.address.host, self.address.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def subscribed(self) -> bool:
        """True once the broker acknowledged the telemetry subscription, until a disconnect."""
        return self._subscribed.is_set()

    def wait_subscribed(self, timeout: float) -> bool:
        return self._subscribed.wait(timeout)

    # -- paho callbacks (network thread) ------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection to %s refused: %s", self.address.url, reason_code)
            return
        log.info("connected to %s (session present: %s)", self.address.url, flags.session_present)
        client.subscribe(self.telemetry_filter, qos=1)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(code.is_failure for code in reason_codes):
            log.error("subscription to %s refused: %s", self.telemetry_filter, reason_codes)
            return
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._subscribed.is_set():
            self.disconnects += 1
            log.warning("disconnected from %s (%s); reconnecting", self.address.url, reason_code)
        self._subscribed.clear()

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        self._queue.append(Message(message.topic, message.payload, int(time.time() * 1000)))
        if not self._arrived.is_set():
            self._arrived.set()

    # -- pipeline side ------------------------------------------------------------------------
    def drain(self, linger_s: float, max_messages: int, timeout_s: float) -> list[Message]:
        """Wait up to `timeout_s` for a message, then gather more for `linger_s` (or until
        `max_messages`), so that many messages become one batch."""
        if not self._queue:
            self._arrived.wait(timeout_s)
            self._arrived.clear()
            if not self._queue:
                return []
        if len(self._queue) < max_messages:
            # One sleep rather than a wake-up per message: waking the pipeline thread for every
            # arrival makes it fight the network thread for the GIL.
            time.sleep(linger_s)
        self._arrived.clear()
        count = min(len(self._queue), max_messages)
        popleft = self._queue.popleft
        return [popleft() for _ in range(count)]

    def backlog(self) -> int:
        return len(self._queue)

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self._client.publish(topic, payload, qos=qos)

    def gateway_of(self, topic: str) -> str:
        """The gateway id in `{prefix}/{gateway}/telemetry`."""
        return topic[len(self.prefix) + 1: -len("/telemetry")]

"""The service's outgoing MQTT: rejections to `{prefix}/{gateway}/errors`, alert events to
`{prefix}/alerts/{domain}/{level}`, MQTT notifications.

A few messages per second, so paho-mqtt in its own network thread: its `publish` is
thread-safe, and the pipeline thread, the worker-results thread, the pager and the event
loop all send through it. Telemetry comes in through `ingest/telemetry_subscriber.py`.
"""

from __future__ import annotations

import logging

from lifeline.mqtturl import BrokerAddress, paho_client

log = logging.getLogger("lifeline.mqtt")


class MqttPublisher:
    """One paho connection with a clean session (the persistent ones belong to telemetry)."""

    def __init__(self, address: BrokerAddress, client_id: str):
        self.address = address
        self._client = paho_client(address, client_id, clean_session=True)
        self._client.max_queued_messages_set(0)  # never drop our own outgoing events
        self._client.reconnect_delay_set(min_delay=0.2, max_delay=5)
        self._client.on_connect = self._on_connect

    def start(self) -> None:
        self._client.connect_async(self.address.host, self.address.port, keepalive=30)
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self._client.publish(topic, payload, qos=qos)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connection to %s refused: %s", self.address.url, reason_code)

"""Which MQTT client can feed the hot path: small messages received per second (plain script).

A private Mosquitto, one publisher process sending N small telemetry messages (QoS 0 unless
given) as fast
as the broker takes them, and one subscriber at a time that only counts what it receives:
paho-mqtt driven directly (network thread of its own, as ingest/mqtt_source.py does) and
aiomqtt (asyncio). The rate is taken between the first and the last message received.

    .venv/bin/python benchmarks/bench_mqtt_clients.py [N] [QOS]
"""

from __future__ import annotations

import asyncio
import multiprocessing
import sys
import tempfile
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho

from lifeline.broker import PrivateBroker

PAYLOAD = b'{"GAS-0001": {"ts": 1763798400000, "values": {"ch4": 3.2}}}'
TOPIC = "lifeline/gw-gas-01/telemetry"
QOS = int(sys.argv[2]) if len(sys.argv) > 2 else 0


def publish(port: int, count: int, ready: multiprocessing.Event) -> None:
    ready.wait(30)
    client = paho.Client(paho.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    info = None
    for sent in range(count):
        info = client.publish(TOPIC, PAYLOAD, qos=QOS)
        if sent % 20_000 == 19_999:
            info.wait_for_publish(300)  # MQTT message ids wrap at 65,535 outstanding
    info.wait_for_publish(300)
    client.disconnect()
    client.loop_stop()


def paho_subscriber(port: int, count: int, ready: multiprocessing.Event) -> float:
    stamps: list[float] = []
    done = threading.Event()

    def on_message(client, userdata, message) -> None:
        stamps.append(time.perf_counter())
        if len(stamps) >= count:
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-paho", clean_session=True)
    client.on_message = on_message
    client.on_subscribe = lambda *args: ready.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe("lifeline/+/telemetry", qos=QOS)
    done.wait(300)
    client.disconnect()
    client.loop_stop()
    return (len(stamps) - 1) / (stamps[-1] - stamps[0])


def aiomqtt_subscriber(port: int, count: int, ready: multiprocessing.Event) -> float:
    import aiomqtt

    async def run() -> float:
        stamps: list[float] = []
        async with aiomqtt.Client("127.0.0.1", port, identifier="bench-aiomqtt", max_queued_incoming_messages=0) \
                as client:
            await client.subscribe("lifeline/+/telemetry", qos=QOS)
            ready.set()
            async for _message in client.messages:
                stamps.append(time.perf_counter())
                if len(stamps) >= count:
                    break
        return (len(stamps) - 1) / (stamps[-1] - stamps[0])

    return asyncio.run(run())


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    for name, subscriber in (("paho-mqtt (own network thread)", paho_subscriber),
                             ("aiomqtt (asyncio)", aiomqtt_subscriber)):
        with PrivateBroker(Path(tempfile.mkdtemp(prefix="bench-mqtt-"))) as broker:
            ready = multiprocessing.Event()
            publisher = multiprocessing.Process(target=publish, args=(broker.port, count, ready))
            publisher.start()
            rate = subscriber(broker.port, count, ready)
            publisher.join()
        print(f"{name:<32} {rate:>10,.0f} messages/s received ({count:,} small QoS {QOS} messages)")


if __name__ == "__main__":
    main()

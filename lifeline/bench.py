"""`lifeline bench`: end-to-end ingestion throughput of the real service.

Starts a private Mosquitto, `lifeline up` as a subprocess (same code and configuration path,
archive and detectors on) with a generated catalogue, and separate publisher processes that
send pre-encoded gateway payloads as fast as the broker takes them (paho for batched
payloads; Mosquitto's C `mosquitto_pub -l` for one reading per message). The service's own
`/healthz` counters say how many readings it fully processed (decoded, validated, archived,
detected); the rate is taken between the first and last progress samples. It prints numbers
and never asserts them.
"""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from lifeline.broker import PrivateBroker, free_port


def write_catalogue(folder: Path, sensors: int, gateways: int) -> Path:
    """A config with `sensors` single-metric sensors spread over `gateways`, one threshold rule."""
    lines = ["id,gateway,domain,type,asset,lon,lat,metrics,interval"]
    for i in range(sensors):
        lines.append(f"S{i:06d},gw-{i % gateways:03d},gas,manhole_methane,MH-{i:06d},117.2,31.8,ch4:%LEL,60")
    (folder / "sensors.csv").write_text("\n".join(lines) + "\n")
    gateway_lines = "\n".join(f"  - {{id: gw-{g:03d}, owner: bench}}" for g in range(gateways))
    config = folder / "bench.yaml"
    config.write_text(f"""gateways:
{gateway_lines}
sensor_files: [sensors.csv]
rules:
  - id: ch4-level
    match: {{metric: ch4}}
    threshold: {{above: {{blue: 5, yellow: 10, orange: 20, red: 25}}, clear: 0.9}}
""")
    return config


def _publisher(url: str, gateways: list[int], sensors: int, n_gateways: int, per_message: int,
               messages: int, start_ts: int) -> None:
    from lifeline.mqtturl import paho_client, parse_mqtt_url

    address = parse_mqtt_url(url)
    client = paho_client(address, "")
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(address.host, address.port)
    client.loop_start()
    # Pre-encode a few payloads per gateway: the benchmark measures the service, not json.dumps.
    payloads = {}
    for g in gateways:
        own = [i for i in range(g, sensors, n_gateways)]
        variants = []
        for v in range(4):
            body = {}
            for k in range(per_message):
                sensor = own[(v * per_message + k) % len(own)]
                body.setdefault(f"S{sensor:06d}", []).append(
                    {"ts": start_ts + v * 1000 + k, "values": {"ch4": round(1.0 + (k % 7) * 0.3, 2)}})
            variants.append(json.dumps(body).encode())
        payloads[g] = variants
    info = None
    for m in range(messages):
        g = gateways[m % len(gateways)]
        info = client.publish(f"lifeline/gw-{g:03d}/telemetry", payloads[g][m % 4], qos=1)
        if m % 20_000 == 19_999:
            info.wait_for_publish(120)  # MQTT message ids wrap at 65,535 outstanding
    if info is not None:
        info.wait_for_publish(120)
    client.disconnect()
    client.loop_stop()


def _line_publisher(url: str, gateway: int, sensors: int, n_gateways: int, messages: int, start_ts: int) -> None:
    """One reading per message through Mosquitto's own C client (`mosquitto_pub -l`: a message
    per stdin line), because a Python publisher is slower than the service it should load."""
    import shutil

    from lifeline.mqtturl import parse_mqtt_url

    address = parse_mqtt_url(url)
    own = list(range(gateway, sensors, n_gateways))
    lines = "".join(
        f'{{"S{own[i % len(own)]:06d}": {{"ts": {start_ts + i}, "values": {{"ch4": {1.0 + (i % 7) * 0.3:.1f}}}}}}}\n'
        for i in range(messages))
    subprocess.run([shutil.which("mosquitto_pub") or "mosquitto_pub", "-h", address.host, "-p", str(address.port),
                    "-q", "1", "-t", f"lifeline/gw-{gateway:03d}/telemetry", "-l"],
                   input=lines.encode(), check=True)


def _health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/healthz", timeout=5) as response:
        return json.loads(response.read())


def run_ingest(sensors: int = 10_000, gateways: int = 20, per_message: int = 100, messages: int = 20_000,
               publishers: int = 1) -> dict:
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-") as tmp:
        folder = Path(tmp)
        config = write_catalogue(folder, sensors, gateways)
        with PrivateBroker(folder / "broker") as broker:
            port = free_port()
            service = subprocess.Popen(
                [sys.executable, "-m", "lifeline.cli", "up", "--config", str(config), "--mqtt", broker.url,
                 "--http", f"127.0.0.1:{port}", "--data", str(folder / "data")],
                stdout=subprocess.DEVNULL, stderr=(folder / "service.log").open("wb"))
            url = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        if _health(url)["status"] == "ok":
                            break
                    except OSError:
                        pass
                    if time.monotonic() > deadline or service.poll() is not None:
                        raise RuntimeError("service did not start: " + (folder / "service.log").read_text())
                    time.sleep(0.1)
                expected = messages * per_message
                start_ts = int(time.time() * 1000) - 3_600_000
                split = [list(range(gateways))[i::publishers] for i in range(publishers)]
                if per_message == 1:
                    procs = [multiprocessing.Process(target=_line_publisher, args=(
                        broker.url, i % gateways, sensors, gateways, messages // publishers, start_ts))
                        for i in range(publishers)]
                else:
                    procs = [multiprocessing.Process(target=_publisher, args=(
                        broker.url, split[i], sensors, gateways, per_message, messages // publishers, start_ts))
                        for i in range(publishers)]
                t_publish = time.monotonic()
                for proc in procs:
                    proc.start()
                samples = []
                last_change = time.monotonic()
                while True:
                    readings = _health(url)["readings"]
                    now = time.monotonic()
                    if not samples or readings != samples[-1][1]:
                        last_change = now
                    samples.append((now, readings))
                    if readings >= expected or now - last_change > 10:
                        break
                    time.sleep(0.2)
                for proc in procs:
                    proc.join()
                publish_s = time.monotonic() - t_publish
                moving = [s for s in samples if s[1] > 0]
                first, last = moving[0], moving[-1]
                rate = (last[1] - first[1]) / max(last[0] - first[0], 1e-9)
                return {"sensors": sensors, "gateways": gateways, "readings_per_message": per_message,
                        "messages": messages, "readings_expected": expected, "readings_processed": last[1],
                        "readings_per_s": round(rate), "messages_per_s": round(rate / per_message),
                        "wall_s": round(publish_s, 2)}
            finally:
                service.terminate()
                service.wait(30)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="lifeline bench")
    parser.add_argument("--sensors", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--per-message", type=int, default=100)
    parser.add_argument("--publishers", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = run_ingest(sensors=args.sensors, per_message=args.per_message, messages=args.messages,
                        publishers=args.publishers)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>22}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run `lifeline up` as a real subprocess for end-to-end tests, and talk to it as clients do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import paho.mqtt.client as paho

from lifeline.broker import free_port

ROOT = Path(__file__).resolve().parent.parent


class RunningService:
    """`lifeline up` against a given broker, with its own data folder and HTTP port."""

    def __init__(self, config: Path, mqtt_url: str | None, data: Path, extra_args: tuple[str, ...] = ()):
        self.config = config
        self.mqtt_url = mqtt_url
        self.data = data
        self.port = free_port()
        self.extra_args = extra_args
        self.process: subprocess.Popen | None = None
        self.log_path = data / "service.log"
        self._token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> RunningService:
        self.data.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "lifeline.cli", "up", "--config", str(self.config), "--data", str(self.data),
                "--http", f"127.0.0.1:{self.port}", *self.extra_args]
        if self.mqtt_url:
            args += ["--mqtt", self.mqtt_url]
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"lifeline up exited with {self.process.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.05)  # polling for readiness, not standing in for synchronisation
        raise TimeoutError(f"lifeline up not healthy within {timeout} s:\n{self.log()}")

    def stop(self) -> int:
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else 0
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    # -- API client ---------------------------------------------------------------------------
    def token(self, role: str = "operator", owner: str | None = None) -> str:
        if role == "operator" and owner is None and self._token:
            return self._token
        args = [sys.executable, "-m", "lifeline.cli", "tokens", "create", "--role", role, "--data", str(self.data)]
        if owner:
            args += ["--owner", owner]
        token = subprocess.run(args, check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()
        if role == "operator" and owner is None:
            self._token = token
        return token

    def request(self, method: str, path: str, body: dict | None = None, token: str | None = "default",
                ) -> tuple[int, object]:
        headers = {"Content-Type": "application/json"}
        if token == "default":
            token = self.token()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw = error.read()
            status = error.code
        text = raw.decode()
        try:
            return status, json.loads(text)
        except ValueError:
            return status, text

    def get(self, path: str, **kwargs) -> object:
        status, body = self.request("GET", path, **kwargs)
        assert status == 200, (status, body)
        return body

    def ws_url(self, since: int | None = None, token: str | None = None) -> str:
        url = f"ws://127.0.0.1:{self.port}/ws/alerts?token={token or self.token()}"
        return url if since is None else f"{url}&since={since}"


class Gateway:
    """A gateway as an integrator would write one: paho, QoS 1, waits for PUBACKs."""

    def __init__(self, mqtt_url: str, gateway_id: str, prefix: str = "lifeline"):
        from lifeline.mqtturl import paho_client, parse_mqtt_url

        self.id = gateway_id
        self.prefix = prefix
        address = parse_mqtt_url(mqtt_url)
        self.client = paho_client(address, f"test-{gateway_id}-{os.getpid()}-{time.monotonic_ns()}")
        self.errors: list[dict] = []
        subscribed = threading.Event()
        self.client.on_message = lambda c, u, m: self.errors.append(json.loads(m.payload))
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        result, _ = self.client.subscribe(f"{prefix}/{gateway_id}/errors", qos=1)
        assert result == paho.MQTT_ERR_SUCCESS
        assert subscribed.wait(10), "errors subscription not acknowledged"

    def send(self, payload: dict | bytes | str, topic_gateway: str | None = None) -> None:
        if isinstance(payload, dict):
            payload = json.dumps(payload)
        info = self.client.publish(f"{self.prefix}/{topic_gateway or self.id}/telemetry", payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def wait_for(predicate, timeout: float = 10.0, message: str = "condition"):
    """Poll `predicate` until it returns a truthy value (for effects seen only through an API)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise TimeoutError(f"timed out waiting for {message}")


def now_ms() -> int:
    return int(time.time() * 1000)

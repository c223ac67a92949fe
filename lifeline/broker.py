"""A private Mosquitto on a free loopback port, for `lifeline up` without a broker and for tests."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

MOSQUITTO_CANDIDATES = ("/usr/sbin/mosquitto", "/usr/bin/mosquitto", "/usr/local/sbin/mosquitto")


def find_mosquitto() -> str:
    path = shutil.which("mosquitto") or next((p for p in MOSQUITTO_CANDIDATES if os.path.exists(p)), None)
    if path is None:
        raise RuntimeError("mosquitto is not installed (apt-get install mosquitto), and no mqtt.url was given")
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PrivateBroker:
    """Mosquitto with persistence in `folder`, anonymous access on 127.0.0.1 only.

    `max_queued_messages` is raised from Mosquitto's default of 1000 per client, which would
    otherwise drop QoS 1 telemetry queued for the service while it is busy or reconnecting.

    `autosave_interval` is 60 s, as in deploy/mosquitto/mosquitto.conf. Each save writes every
    queued message in Mosquitto's only thread. Saving every second while seconds of telemetry
    were queued for the service stalled the broker for most of each second: under the bench's
    flood the service processed 530,000, 600,000 and once 38,000 readings/s with the machine
    half idle (820,000-926,000 with 60 s). A stop (SIGTERM) saves everything, so only a crash
    of the broker itself loses up to a minute of what it had queued.
    """

    def __init__(self, folder: Path, port: int | None = None, extra_config: str = ""):
        self.folder = Path(folder)
        self.port = port or free_port()
        self.extra_config = extra_config
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.folder}/",
            "autosave_interval 60",
            "max_queued_messages 1000000",
            "max_inflight_messages 1000",
            "message_size_limit 2097152",
            f"log_dest file {self.folder}/mosquitto.log",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root Mosquitto would switch to user `mosquitto`, which cannot write a
            # private folder under a 0700 temporary directory; this broker only listens on loopback.
            lines.append("user root")
        config = self.folder / "mosquitto.conf"
        config.write_text("\n".join(lines + [self.extra_config]) + "\n")
        return config

    def start(self, timeout: float = 10.0) -> PrivateBroker:
        config = self._write_config()
        stderr_path = self.folder / "mosquitto.stderr"
        with stderr_path.open("wb") as stderr:
            self.process = subprocess.Popen([find_mosquitto(), "-c", str(config)], stdout=subprocess.DEVNULL,
                                            stderr=stderr, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                error = stderr_path.read_text(errors="replace")
                raise RuntimeError(f"mosquitto exited at start: {error.strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on port {self.port} within {timeout} s")

    def stop(self) -> None:
        """SIGTERM, so Mosquitto saves its persistent sessions before exiting."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def log(self) -> str:
        """Mosquitto's own log, for failure messages."""
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def restart(self) -> None:
        self.stop()
        self.start()

    def __enter__(self) -> PrivateBroker:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

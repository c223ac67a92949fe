"""The service under benchmark: `lifeline up` as a subprocess, its /healthz counters, its memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from lifeline.broker import free_port


@dataclass(frozen=True)
class Health:
    readings: int  # fully processed since start
    backlog: int  # messages received but not yet processed (0 when the service does not say)
    seq: int  # last alert event sequence number
    channels: int


class BenchService:
    """`lifeline up` on the bench config, with the same code and configuration path as in production."""

    def __init__(self, config: Path, mqtt_url: str, data: Path, extra_args: tuple[str, ...] = ()):
        self.data = data
        self.port = free_port()
        self.log_path = data.parent / "service.log"
        self.args = [sys.executable, "-m", "lifeline.cli", "up", "--config", str(config), "--mqtt", mqtt_url,
                     "--http", f"127.0.0.1:{self.port}", "--data", str(data), *extra_args]
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 300) -> BenchService:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=5) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"lifeline up did not become healthy:\n{self.log_path.read_text(errors='replace')}")
            time.sleep(0.1)  # polling for readiness

    def health(self) -> Health:
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as response:
            body = json.loads(response.read())
        return Health(readings=int(body["readings"]), backlog=int(body.get("backlog") or 0),
                      seq=int(body.get("seq") or 0), channels=int(body.get("channels") or 0))

    def token(self, role: str = "viewer") -> str:
        """A fresh API token, created the way an operator does (`lifeline tokens create`)."""
        return subprocess.run([sys.executable, "-m", "lifeline.cli", "tokens", "create", "--role", role,
                               "--data", str(self.data)], check=True, capture_output=True, text=True).stdout.strip()

    def ws_url(self, token: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/alerts?token={token}"

    def memory(self) -> dict:
        """Resident size of the service and every process it started (worker processes, a
        private broker), from /proc: current (VmRSS) and peak (VmHWM), MiB."""
        assert self.process is not None
        tree = process_tree(self.process.pid)
        rss = [_status_kib(pid, "VmRSS") for pid in tree]
        peak = [_status_kib(pid, "VmHWM") for pid in tree]
        return {"processes": len(tree), "rss_mib": round(sum(rss) / 1024, 1), "peak_mib": round(sum(peak) / 1024, 1),
                "main_rss_mib": round(rss[0] / 1024, 1)}

    def cpu_seconds(self) -> float:
        """CPU time used so far by the service's process tree, s."""
        assert self.process is not None
        return cpu_seconds(process_tree(self.process.pid))

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (Linux /proc), root first."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # the command name may contain spaces
        children.setdefault(ppid, []).append(int(entry))
    tree, frontier = [root], [root]
    while frontier:
        frontier = [child for pid in frontier for child in children.get(pid, [])]
        tree.extend(frontier)
    return tree


def _status_kib(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of live processes, s (from /proc/PID/stat)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return total / ticks

"""`lifeline bench --fanout`: many dashboards receiving a storm of alert events.

The real service (`lifeline up`) with `clients` websocket clients connected (spread over a
few client processes), while an `AlertStamper` publishes `events_per_s` alert readings per
second, each of which makes one alert event that every client must receive. Latency is send
time to arrival at each client; a client the hub cuts off for lagging (close code 4008)
reconnects with `?since=` as the dashboard does, and is counted.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lifeline.bench_latency import AlertStamper, Arrivals, DashboardClients, latencies_ms, summary
from lifeline.bench_report import machine
from lifeline.bench_service import BenchService
from lifeline.bench_traffic import write_catalogue
from lifeline.broker import PrivateBroker

LAGGING_CLOSE_CODE = 4008


@dataclass
class FanoutOptions:
    clients: int = 100
    events_per_s: float = 1000.0
    duration: float = 20.0
    workers: str | None = None
    client_processes: int = 4
    alert_sensors: int = 100


def run_fanout(options: FanoutOptions) -> dict:
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-fanout-") as tmp:
        folder = Path(tmp)
        with PrivateBroker(folder / "broker") as broker:
            config = write_catalogue(folder, sensors=100, gateways=1, alert_sensors=options.alert_sensors)
            extra = ("--workers", options.workers) if options.workers else ()
            service = BenchService(config, broker.url, folder / "data", extra).start()
            try:
                return _measure(options, broker.url, service)
            finally:
                service.stop()


def _measure(options: FanoutOptions, mqtt_url: str, service: BenchService) -> dict:
    report = {"machine": machine()}
    url = service.ws_url(service.token())
    processes = max(1, min(options.client_processes, options.clients))
    split = [options.clients // processes + (1 if i < options.clients % processes else 0) for i in range(processes)]
    groups = [DashboardClients(url, count) for count in split if count]
    for group in groups:
        group.start()
    arrivals: list[Arrivals] = []
    try:
        stamper = AlertStamper(mqtt_url, options.events_per_s, [False] * options.alert_sensors).start()
        cpu_before, started = service.cpu_seconds(), time.monotonic()
        deadline = started + options.duration
        while time.monotonic() < deadline:
            time.sleep(0.2)
        sends = stamper.stop()
        _wait_events_settled(service)
        cpu = service.cpu_seconds() - cpu_before
        elapsed = time.monotonic() - started
    finally:
        for group in groups:
            arrivals.extend(group.stop())
    latency = np.concatenate([latencies_ms(sends, a) for a in arrivals]) if arrivals else np.zeros(0)
    delivered = [len(a.sensor) for a in arrivals]
    stats = summary(latency, len(sends.ts) * options.clients)
    report["fanout"] = {
        "clients": len(arrivals), "events_per_s": options.events_per_s, "duration_s": options.duration,
        "events_sent": len(sends.ts), "delivered_min": min(delivered, default=0),
        "delivered_mean": round(float(np.mean(delivered)), 1) if delivered else 0,
        "frames_per_s": round(sum(delivered) / max(elapsed, 1e-9)),
        "p50_ms": stats["p50_ms"], "p99_ms": stats["p99_ms"], "max_ms": stats["max_ms"],
        "lagging_closes": sum(a.close_codes.count(LAGGING_CLOSE_CODE) for a in arrivals),
        "reconnects": sum(a.reconnects for a in arrivals),
        "service_cpu_s_per_s": round(cpu / max(elapsed, 1e-9), 2),
        # The clients share the machine: when they cannot keep up, latency is theirs, not the hub's.
        "clients_cpu_s_per_s": round(sum(group.cpu_s for group in groups) / max(elapsed, 1e-9), 2),
    }
    report["machine"]["load_average_end"] = list(os.getloadavg())
    return report


def _wait_events_settled(service: BenchService, quiet_s: float = 1.0, timeout: float = 60.0) -> None:
    """Until the service's event sequence stopped moving for `quiet_s` (the last readings are processed),
    and `quiet_s` more for the last frames to reach the clients."""
    deadline = time.monotonic() + timeout
    seq, changed = -1, time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - changed < quiet_s:
        try:
            now = service.health().seq
        except OSError:  # a swamped service answers late: not settled yet
            changed = time.monotonic()
            continue
        if now != seq:
            seq, changed = now, time.monotonic()
        time.sleep(0.1)
    time.sleep(quiet_s)

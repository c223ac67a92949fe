"""`lifeline bench`: how fast the real service ingests, and how close that is to the ceilings.

Starts a private Mosquitto, `lifeline up` as a subprocess on a generated catalogue (the same
code and configuration path as in production: archive, detectors, dashboard and websocket
on, one dashboard client connected throughout), and separate publisher processes. Per payload
shape (gateway batches of 100 readings per message; one reading per message) it measures:

- ceilings: the same payloads received by `mosquitto_sub` and by a minimal decoding Python
  subscriber (lifeline.bench_ceilings);
- sustained throughput: a short flood estimates the service's capacity, then publishers offer
  rates from 90 % of it for `--duration` seconds each, a quarter higher after each run whose
  backlog stayed flat (lower until one does), while the service's /healthz counters are
  sampled; the best stable run counts. The backlog is what was published but not processed;
- latency: alerts published at 50 % of the sustained rate, send time to websocket arrival
  (lifeline.bench_latency);
- memory: resident size of the service's process tree, with the catalogue's channels;
- ratio: sustained / decode ceiling (msgspec); and sustained / parse ceiling (the service's own
  C parser, receiving and parsing only).

`lifeline bench --fanout` measures websocket fan-out instead (lifeline.bench_fanout). It
prints a table (and JSON with --json) and never asserts numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lifeline.bench_ceilings import RECEIVERS, c_ceiling, decode_ceiling, lean_receiver_available
from lifeline.bench_latency import AlertStamper, DashboardClients, Sends, latencies_ms, summary
from lifeline.bench_report import machine, print_table
from lifeline.bench_service import BenchService
from lifeline.bench_traffic import BATCHED, SINGLE, Feeders, FeedPlan, Shape, write_catalogue
from lifeline.broker import PrivateBroker
from lifeline.mqtturl import parse_mqtt_url

SHAPES = {shape.name: shape for shape in (BATCHED, SINGLE)}
SAMPLE_S = 0.5
#: Sustained runs per shape at most, and the factor between offered rates of consecutive runs.
SEARCH_ATTEMPTS = 5
SEARCH_STEP = 1.25
ALERT_SENSORS = 100


@dataclass
class Options:
    sensors: int = 100_000
    publishers: int = 4  # gateways, each fed by a publisher process of its own
    duration: float = 20.0
    shapes: tuple[str, ...] = ("batched", "single")
    ceiling_messages: int = 20_000  # batched; one-reading shape sends 10 times as many
    alert_rate: float = 50.0  # alert readings/s in the latency run
    workers: str | None = None  # `lifeline up --workers`


class Bench:
    """One service, one broker, one dashboard client; runs the measurements in order."""

    def __init__(self, options: Options, folder: Path, broker: PrivateBroker):
        self.options = options
        self.folder = folder
        self.broker = broker
        self.address = parse_mqtt_url(broker.url)
        # Each run continues every gateway's timestamps, so no channel ever sees an older reading.
        self.next_ts = int(time.time() * 1000) - 6 * 3_600_000
        self.alarmed = [False] * ALERT_SENSORS  # the alert sensors' states, carried from run to run
        config = write_catalogue(folder, options.sensors, options.publishers, ALERT_SENSORS)
        extra = ("--workers", options.workers) if options.workers else ()
        self.service = BenchService(config, broker.url, folder / "data", extra)

    # -- ceilings -----------------------------------------------------------------------------------
    def ceilings(self, shape: Shape) -> dict:
        messages = self.options.ceiling_messages * (10 if shape.per_message == 1 else 1)
        o = self.options
        c = c_ceiling(self.broker.url, shape, messages, o.sensors, o.publishers, self._take_ts(messages), self.folder)
        result = {"c_subscriber": c}
        for receiver in RECEIVERS if lean_receiver_available() else ("paho",):
            result[f"python_decode_{receiver}"] = decode_ceiling(
                self.broker.url, shape, messages, o.sensors, o.publishers, self._take_ts(messages), receiver)
        # What any Python pipeline could reach: the better of the receivers.
        result["python_decode"] = max((v for k, v in result.items() if k.startswith("python_decode_")),
                                      key=lambda v: v["readings_per_s"])
        if lean_receiver_available():
            # Receiving and parsing as the service does, nothing else.
            result["python_parse"] = decode_ceiling(self.broker.url, shape, messages, o.sensors, o.publishers,
                                                    self._take_ts(messages), "parser")
        return result

    # -- sustained throughput -------------------------------------------------------------------------
    def sustained(self, shape: Shape) -> dict:
        """The highest offered rate the service kept up with for `--duration` s.

        A short flood first: what the service processes while the publishers send as fast as
        they can. On two cores that understates it, since a flood makes the publishers and the
        broker take CPU the service would have had (measured: 864,000 readings/s processed
        under a flood; 1,486,000 kept up with at an offered rate). So the search starts at 90 %
        of the flood and raises the rate by a quarter while the backlog stays flat (and the
        publishers still offer what they are asked), or lowers it by a quarter until it does;
        the stable run that processed most is reported."""
        probe = self._load(shape, rate=None, seconds=max(2.0, self.options.duration / 5))
        capacity = probe["readings_per_s"]
        rate = capacity * 0.9
        attempts: list[dict] = []
        best: dict | None = None
        for _ in range(SEARCH_ATTEMPTS):
            run = self._load(shape, rate=rate, seconds=self.options.duration)
            attempts.append(run)
            if run["backlog_stable"]:
                if best is None or run["readings_per_s"] > best["readings_per_s"]:
                    best = run
                if run["offered_readings_per_s"] < 0.95 * rate:
                    break  # the publishers' limit, not the service's: a higher rate would not be offered
                rate *= SEARCH_STEP
            elif best is not None:
                break
            else:
                rate /= SEARCH_STEP
        result = dict(best if best is not None else attempts[-1])
        result["probe_readings_per_s"] = capacity
        result["attempts"] = len(attempts)
        result["search"] = [{"offered_readings_per_s": run["offered_readings_per_s"],
                             "readings_per_s": run["readings_per_s"], "backlog_stable": run["backlog_stable"]}
                            for run in attempts]
        return result

    def _load(self, shape: Shape, rate: float | None, seconds: float, stamper: AlertStamper | None = None) -> dict:
        """Offer `rate` readings/s (None: as fast as the publishers go) for `seconds`; sample the
        service until it has processed what was sent (or stopped making progress)."""
        o = self.options
        per_gateway = None if rate is None else max(rate / shape.per_message / o.publishers, 1.0)
        first_ts = self._take_ts(int((per_gateway or 100_000) * seconds * 1.2) + 10_000)
        plans = [FeedPlan(self.address.host, self.address.port, "lifeline", g, o.sensors, o.publishers,
                          shape.per_message, first_ts, rate=per_gateway, seconds=seconds)
                 for g in range(o.publishers)]
        start = self.service.health()
        feeders = Feeders(plans)
        cpu_before, cpu_since = self.service.cpu_seconds(), time.monotonic()
        if stamper is not None:
            stamper.start()
        feeders.start()
        samples = []  # (monotonic s, readings sent, readings processed, service backlog)
        try:
            while feeders.running():
                health = self.service.health()
                samples.append((time.monotonic(), feeders.readings_sent(), health.readings - start.readings,
                                health.backlog))
                time.sleep(SAMPLE_S)
        finally:
            feeders.stop()  # at once when they ended by themselves; early when sampling failed
        cpu = (self.service.cpu_seconds() - cpu_before) / (time.monotonic() - cpu_since)  # while publishing
        self.next_ts = max(self.next_ts, first_ts + max(counter.value for counter in feeders.sent) + 1_000)
        sends = stamper.stop() if stamper is not None else None
        sent = feeders.readings_sent()
        drained = self._wait_drained(start.readings, sent)
        result = _load_numbers(samples, shape, sent, drained)
        result["alert_events"] = self.service.health().seq - start.seq
        result["service_cpu_s_per_s"] = round(cpu, 2)
        if sends is not None:
            result["sends"] = sends
        return result

    def _wait_drained(self, baseline: int, sent: int, quiet_s: float = 5.0) -> int:
        """Readings processed in this run, once all arrived or none arrived for `quiet_s`."""
        processed, changed = -1, time.monotonic()
        while time.monotonic() - changed < quiet_s:
            now = self.service.health().readings - baseline
            if now >= sent:
                return now
            if now != processed:
                processed, changed = now, time.monotonic()
            time.sleep(0.2)
        return processed

    # -- latency ------------------------------------------------------------------------------------------
    def latency_run(self, shape: Shape, sustained_rate: float) -> tuple[dict, Sends]:
        stamper = AlertStamper(self.broker.url, self.options.alert_rate, self.alarmed)
        run = self._load(shape, rate=sustained_rate * 0.5, seconds=self.options.duration, stamper=stamper)
        sends = run.pop("sends")
        self.alarmed = sends.alarmed
        return {"load_readings_per_s": run["readings_per_s"], "backlog_stable": run["backlog_stable"],
                "alert_readings_per_s": self.options.alert_rate, "service_alert_events": run["alert_events"]}, sends

    def _take_ts(self, messages: int) -> int:
        first = self.next_ts
        self.next_ts += messages + 1_000
        return first

    # -- the whole run --------------------------------------------------------------------------------------
    def run(self) -> dict:
        o = self.options
        report: dict = {"machine": machine(), "setup": {
            "sensors": o.sensors, "gateways": o.publishers, "publishers": o.publishers, "duration_s": o.duration,
            "workers": o.workers or "default", "rules": "threshold (4 levels) on every channel"}}
        ceilings, sustained, latency, ratio, ratio_parse, sends = {}, {}, {}, {}, {}, {}
        self.service.start()
        try:
            health = self.service.health()
            report["setup"]["channels"] = health.channels
            idle_memory = self.service.memory()
            watcher = DashboardClients(self.service.ws_url(self.service.token())).start()
            try:
                for name in o.shapes:
                    shape = SHAPES[name]
                    ceilings[name] = self.ceilings(shape)
                for name in o.shapes:
                    shape = SHAPES[name]
                    sustained[name] = self.sustained(shape)
                    latency[name], sends[name] = self.latency_run(shape, sustained[name]["readings_per_s"])
                    decoded = ceilings[name]["python_decode"]["readings_per_s"]
                    ratio[name] = round(sustained[name]["readings_per_s"] / decoded, 3) if decoded else None
                    parsed = ceilings[name].get("python_parse", {}).get("readings_per_s")
                    ratio_parse[name] = round(sustained[name]["readings_per_s"] / parsed, 3) if parsed else None
            finally:
                arrivals = watcher.stop()
            memory = self.service.memory()
        finally:
            self.service.stop()
        watched = arrivals[0] if arrivals else None
        for name, shape_sends in sends.items():
            latency[name].update(summary(latencies_ms(shape_sends, watched), len(shape_sends.ts))
                                 if watched is not None else summary([], len(shape_sends.ts)))
        report.update(ceilings=ceilings, sustained=sustained, latency=latency, ratio=ratio,
                      ratio_to_parse_ceiling=ratio_parse)
        report["memory"] = {"channels": report["setup"]["channels"], "idle_rss_mib": idle_memory["rss_mib"], **memory}
        report["websocket"] = {
            "clients": 1, "connected_throughout": watched is not None and watched.reconnects == 0,
            "reconnects": watched.reconnects if watched else None, "events": watched.events if watched else None}
        report["machine"]["load_average_end"] = list(os.getloadavg())
        return report


def _load_numbers(samples: list[tuple[float, int, int, int]], shape: Shape, sent: int, drained: int) -> dict:
    """Rates over the run after its first second (publishers and batching warm up), and whether
    what was published but not processed (the backlog) grew."""
    if len(samples) < 2:
        samples = samples * 2 if samples else [(0.0, 0, 0, 0)] * 2
    warm = next((s for s in samples if s[0] >= samples[0][0] + 1.0), samples[0])
    if warm is samples[-1]:
        warm = samples[0]
    end = samples[-1]
    seconds = max(end[0] - warm[0], 1e-9)
    offered = (end[1] - warm[1]) / seconds
    processed = (end[2] - warm[2]) / seconds
    lag_start, lag_end = warm[1] - warm[2], end[1] - end[2]
    growth_s = (lag_end - lag_start) / offered if offered > 0 else 0.0
    return {"readings_per_s": round(processed), "messages_per_s": round(processed / shape.per_message),
            "offered_readings_per_s": round(offered), "seconds": round(seconds, 1),
            "backlog_growth_s": round(growth_s, 2), "backlog_stable": growth_s < 1.0,
            "service_backlog_max_messages": max(s[3] for s in samples),
            "readings_sent": sent, "readings_processed": drained, "readings_lost": max(sent - drained, 0)}


def run(options: Options) -> dict:
    with tempfile.TemporaryDirectory(prefix="lifeline-bench-") as tmp:
        folder = Path(tmp)
        with PrivateBroker(folder / "broker") as broker:
            return Bench(options, folder, broker).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeline bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sensors", type=int, default=Options.sensors, help="single-metric sensors (channels)")
    parser.add_argument("--publishers", type=int, default=Options.publishers,
                        help="gateways, each with its own publisher process")
    parser.add_argument("--duration", type=float, default=Options.duration, help="seconds per sustained run")
    parser.add_argument("--shapes", default=",".join(Options.shapes),
                        help="payload shapes: batched (100 readings/message), single (1 reading/message)")
    parser.add_argument("--ceiling-messages", type=int, default=Options.ceiling_messages,
                        help="messages per ceiling measurement (batched; single sends 10 times as many)")
    parser.add_argument("--alert-rate", type=float, default=Options.alert_rate,
                        help="alert readings/s during the latency run")
    parser.add_argument("--workers", help="passed to `lifeline up --workers`")
    parser.add_argument("--fanout", action="store_true",
                        help="measure websocket fan-out instead (see --clients, --events-per-s)")
    parser.add_argument("--clients", type=int, default=100, help="--fanout: dashboard websocket clients")
    parser.add_argument("--events-per-s", type=float, default=1000, help="--fanout: alert events/s")
    parser.add_argument("--json", action="store_true", help="also print the results as one JSON object")
    args = parser.parse_args(argv)
    shapes = tuple(s.strip() for s in args.shapes.split(",") if s.strip())
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown or not shapes:
        parser.error(f"unknown shape {', '.join(unknown)}; use batched, single or both")
    if args.fanout:
        from lifeline.bench_fanout import FanoutOptions, run_fanout

        result = run_fanout(FanoutOptions(clients=args.clients, events_per_s=args.events_per_s,
                                          duration=args.duration, workers=args.workers))
    else:
        result = run(Options(sensors=args.sensors, publishers=args.publishers, duration=args.duration,
                             shapes=shapes, ceiling_messages=args.ceiling_messages, alert_rate=args.alert_rate,
                             workers=args.workers))
    print_table(result)
    if args.json:
        print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

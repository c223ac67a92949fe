"""Throughput and memory of the change and quality detectors (plain script; prints numbers).

100,000 channels. Change: CUSUM on half of them, EWMA on the other half (two rules).
Quality: one rule on every channel with all four checks (range, stuck, 9-reading spike
window, max rate). Measures batches of one reading per channel (100,000 rows) and of ten per
channel (1,000,000 rows, ten rounds), in time order with channels shuffled within each step,
after the change baselines have finished their warm-up. Memory is the bytes of every numpy
array a detector holds (its own state and parameters, its LevelMachine, its channel index),
per channel.

    .venv/bin/python benchmarks/bench_detectors.py
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from detectors.change import ChangeDetector
from detectors.quality import QualityDetector
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Config, Gateway, Location, Rule, Sensor
from lifeline.rule_kinds import Change, Quality

N_CHANNELS = 100_000
WARMUP = 30
T0 = 1_700_000_000_000
INTERVAL_MS = 10_000


def build() -> tuple[Catalogue, list[Rule]]:
    sensors = tuple(
        Sensor(id=f"s{i}", gateway="g", domain="bridge", type="ab"[i % 2], asset=f"s{i}",
               location=Location(0.0, 0.0), metrics={"v": "u"}, interval=10.0)
        for i in range(N_CHANNELS))
    cusum = Change(method="cusum", levels={"yellow": 5.0, "orange": 8.0, "red": 12.0}, k=0.5, lam=0.2,
                   warmup=WARMUP, learn=0.01, direction="both", hold_s=0.0)
    ewma = Change(method="ewma", levels={"yellow": 3.0, "orange": 4.0, "red": 5.0}, k=0.5, lam=0.2,
                  warmup=WARMUP, learn=0.01, direction="up", hold_s=20.0)
    quality = Quality(range_min=-50.0, range_max=150.0, stuck_readings=20, stuck_seconds=None, stuck_tolerance=0.0,
                      spike_window=9, spike_threshold=6.0, max_rate_per_s=5.0, level="blue", on_fault="mark",
                      clear_after=3)
    rules = [Rule("cusum", {"type": ("a",)}, None, kind="change", spec=cusum),
             Rule("ewma", {"type": ("b",)}, None, kind="change", spec=ewma),
             Rule("quality", {}, None, kind="quality", spec=quality)]
    return Catalogue(Config(gateways=(Gateway("g", "city"),), sensors=sensors)), rules


class Feed:
    """Consecutive batches: noise around a per-channel mean, with steps, spikes and stuck channels."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.mean = rng.uniform(20, 80, N_CHANNELS)
        self.step = 0

    def batch(self, per_channel: int) -> Batch:
        rng = self.rng
        # 0.1 % of the channels shift by 3 sigma in each batch (change alarms rise and clear).
        self.mean += np.where(rng.random(N_CHANNELS) < 0.001, rng.choice([-3.0, 3.0], N_CHANNELS), 0.0)
        order = np.argsort(rng.random((per_channel, N_CHANNELS)), axis=1)  # channels shuffled per step
        channel = order.ravel().astype(np.int32)
        step = np.repeat(np.arange(per_channel, dtype=np.int64), N_CHANNELS)
        ts = T0 + (self.step + step) * INTERVAL_MS
        value = self.mean[channel] + rng.normal(0, 1, channel.size)
        value[rng.random(channel.size) < 1e-4] = 1e3  # spikes, out of range
        value[channel < 50] = 7.0  # stuck sensors
        self.step += per_channel
        return Batch(channel, ts, value)


def measure(label: str, update: Callable[[Batch], object], work: list[Batch]) -> None:
    """Readings per second by wall clock and by this process's CPU time (the machine may be shared)."""
    rows = findings = 0
    start, cpu = time.perf_counter(), time.process_time()
    for batch in work:
        findings += len(update(batch))  # type: ignore[arg-type]
        rows += len(batch)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"{label:<40} {rows / elapsed / 1e6:6.2f} M readings/s wall, {rows / cpu / 1e6:6.2f} M/s CPU"
          f"  {elapsed / len(work) * 1e3:8.1f} ms/batch  {findings / len(work):8.0f} findings/batch")


def array_bytes(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of every numpy array reachable through the attributes of `obj`."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return obj.nbytes
    if isinstance(obj, list | tuple):
        return sum(array_bytes(item, seen) for item in obj)
    if hasattr(obj, "__dict__") and type(obj).__module__.startswith(("detectors", "__main__")):
        return sum(array_bytes(value, seen) for value in vars(obj).values())
    return 0


def main() -> None:
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    catalogue, rules = build()
    built = time.perf_counter()
    change = ChangeDetector.from_rules(catalogue, rules)
    bound = time.perf_counter()
    quality = QualityDetector.from_rules(catalogue, rules)
    print(f"catalogue of {len(catalogue)} channels: {built - start:.2f} s; from_rules: change "
          f"({len(change.bindings)} bindings) {bound - built:.2f} s, quality ({len(quality.bindings)}) "
          f"{time.perf_counter() - bound:.2f} s")

    feed = Feed(rng)
    for _ in range(WARMUP // 10):  # finish the change warm-up; fill the spike windows
        warm = feed.batch(10)
        change.update(warm)
        quality.update(warm)
    ones = [feed.batch(1) for _ in range(6)]
    tens = [feed.batch(10) for _ in range(3)]
    for name, detector in (("change", change), ("quality", quality)):
        measure(f"{name}: 1 reading/channel, 100k rows", detector.update, ones)
        measure(f"{name}: 10 readings/channel, 1M rows", detector.update, tens)

    def both(batch: Batch) -> list:
        return [*change.update(batch).binding, *quality.update(batch).binding]

    measure("change + quality: 10/channel, 1M rows", both, [feed.batch(10) for _ in range(2)])

    full_set(catalogue, rules, feed)

    for name, detector in (("change", change), ("quality", quality)):
        total = array_bytes(detector)
        print(f"{name}: {total / 1e6:.1f} MB of numpy arrays = {total / N_CHANNELS:.0f} bytes per channel "
              f"(one binding each), incl. its LevelMachine and channel index")


def full_set(catalogue: Catalogue, rules: list[Rule], feed: Feed) -> None:
    """Every detector kind on every channel, as the pipeline runs them on each batch."""
    from detectors.registry import build_detectors
    from lifeline.config import Threshold
    from lifeline.rule_kinds import Deadman, Trend

    extra = [
        Rule("level", {}, Threshold("above", {"yellow": 120.0, "red": 140.0}, 0.9, 0.0)),
        Rule("rising", {}, None, kind="trend", spec=Trend(window_s=300, min_points=3, direction="rising",
                                                           levels={"yellow": 5.0, "red": 10.0}, clear=0.8, hold_s=0,
                                                           forecast_rule=None, horizon_s=0, max_points=16)),
        Rule("silence", {}, None, kind="deadman", spec=Deadman(after=3, level="yellow", gateway_level="orange",
                                                               grace_s=None)),
    ]
    detectors = build_detectors(catalogue, [*rules, *extra])

    def everything(batch: Batch) -> list:
        found = [detectors.quality.update(batch)]
        found += [d.update(batch) for d in detectors.hazards]
        found.append(detectors.deadman.update(batch))
        return [row for f in found for row in f.binding]

    for _ in range(2):
        everything(feed.batch(10))
    bindings = sum(len(d.bindings) for d in detectors.all())
    print(f"full set ({bindings} bindings: threshold, trend, change, quality on every channel; deadman per sensor)")
    measure("full set: 1 reading/channel, 100k rows", everything, [feed.batch(1) for _ in range(4)])
    measure("full set: 10 readings/channel, 1M rows", everything, [feed.batch(10) for _ in range(2)])
    total = sum(array_bytes(d) for d in detectors.all())
    print(f"full set: {total / 1e6:.1f} MB of numpy arrays = {total / N_CHANNELS:.0f} bytes per channel")


if __name__ == "__main__":
    main()

"""Throughput of the vectorised threshold detector (plain script; prints numbers).

100,000 channels, one threshold binding each (four rules, each matching a quarter of the
sensors by type, mixing directions, hysteresis and hold times). Measures batches of one
reading per channel (100,000 rows) and of ten readings per channel (1,000,000 rows), the
latter both in time order and shuffled (which needs the full (binding, ts) sort). Times are
this process's CPU time.

    .venv/bin/python benchmarks/bench_threshold.py
"""

from __future__ import annotations

import time

import numpy as np

from detectors.threshold import ThresholdDetector
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Config, Gateway, Location, Rule, Sensor, Threshold

N_CHANNELS = 100_000
REPEATS = 5
TYPES = ("a", "b", "c", "d")


def build() -> tuple[Catalogue, list[Rule]]:
    gateways = (Gateway("g", "city"),)
    sensors = tuple(
        Sensor(id=f"s{i}", gateway="g", domain="gas", type=TYPES[i % 4], asset=f"s{i}",
               location=Location(0.0, 0.0), metrics={"v": "u"}, interval=10.0)
        for i in range(N_CHANNELS))
    rules = [
        Rule("a", {"type": ("a",)}, Threshold("above", {"blue": 50, "yellow": 70, "red": 90}, 0.9, 0.0)),
        Rule("b", {"type": ("b",)}, Threshold("above", {"yellow": 60, "red": 80}, 0.8, 20.0)),
        Rule("c", {"type": ("c",)}, Threshold("below", {"blue": 40, "orange": 20, "red": 10}, 0.9, 0.0)),
        Rule("d", {"type": ("d",)}, Threshold("below", {"red": -5.0}, 0.5, 5.0)),
    ]
    return Catalogue(Config(gateways=gateways, sensors=sensors)), rules


def batches(per_channel: int, n: int, shuffle: bool, rng: np.random.Generator) -> list[Batch]:
    """`n` consecutive batches; readings every 10 s, values a random walk over the limits."""
    out = []
    value = rng.uniform(0, 100, N_CHANNELS)
    t0 = 1_700_000_000_000
    for k in range(n):
        channel = np.tile(np.arange(N_CHANNELS, dtype=np.int32), per_channel)
        step = np.repeat(np.arange(per_channel, dtype=np.int64), N_CHANNELS)
        ts = t0 + (k * per_channel + step) * 10_000
        walk = np.cumsum(rng.normal(0, 8, (per_channel, N_CHANNELS)), axis=0) + value
        value = walk[-1]
        values = walk.ravel()
        if shuffle:
            order = rng.permutation(channel.size)
            channel, ts, values = channel[order], ts[order], values[order]
        else:
            order = rng.permutation(N_CHANNELS)  # channels in random order within each step
            idx = (np.arange(per_channel)[:, None] * N_CHANNELS + order[None, :]).ravel()
            channel, ts, values = channel[idx], ts[idx], values[idx]
        out.append(Batch(channel, ts, values))
    return out


def measure(label: str, detector: ThresholdDetector, work: list[Batch]) -> None:
    detector.update(work[0])  # warm-up, also moves bindings off the initial state
    rows = findings = 0
    start = time.process_time()  # CPU time of this process: the machine may be shared
    for batch in work[1:]:
        findings += len(detector.update(batch))
        rows += len(batch)
    elapsed = time.process_time() - start
    per_batch = elapsed / (len(work) - 1)
    print(f"{label:<44} {rows / elapsed / 1e6:6.2f} M readings/s CPU  {per_batch * 1e3:8.1f} ms/batch"
          f"  {findings / (len(work) - 1):9.0f} findings/batch")


def main() -> None:
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    catalogue, rules = build()
    built = time.perf_counter()
    detector = ThresholdDetector.from_rules(catalogue, rules)
    bound = time.perf_counter()
    print(f"catalogue of {len(catalogue)} channels: {built - start:.2f} s; "
          f"from_rules ({len(detector.bindings)} bindings): {bound - built:.2f} s")
    measure("1 reading/channel, 100k rows", detector, batches(1, REPEATS + 1, False, rng))
    detector = ThresholdDetector.from_rules(catalogue, rules)
    measure("10 readings/channel, 1M rows, time order", detector, batches(10, REPEATS + 1, False, rng))
    detector = ThresholdDetector.from_rules(catalogue, rules)
    measure("10 readings/channel, 1M rows, shuffled", detector, batches(10, REPEATS + 1, True, rng))


if __name__ == "__main__":
    main()

"""Throughput of the bridge, elevator and hazard-source domain detectors on a city-sized catalogue
(plain script; prints numbers).

The catalogue is the generated city of 35,000 sensors (about 99,000 channels: 1,530 spans,
5,440 lifts, 1,700 tanks) with its DOMAIN_RULES; the feed is the simulator's own baseline
signals (simulators.signals), so the detectors run their normal paths:

* elevator: one frame per lift (its 7 channels at one timestamp) every 15 s;
* bridge_overload: the strain and deflection gauges (and their temperatures) every 10 s;
* runaway: the tanks' pressure and temperature every 10 s (a full 10-minute window);
* bridge_modal: a 20 s block at 100 Hz (2,000 samples) from every accelerometer.

After a warm-up (baselines learnt, windows filled) each detector's `update` is timed with this
process's CPU time over several batches; readings per second count batch rows (a waveform
sample is one reading). For the modal detector the capacity is compared with what the city's
accelerometers would send streaming continuously at 100 Hz.

    .venv/bin/python benchmarks/bench_domain_bridge_elevator_hazard.py [SENSORS]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from detectors.domain import BUILDERS
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from simulators.city import city_config
from simulators.signals import Baseline

T0 = 1_763_798_400_000


def channels_of(catalogue: Catalogue, detector) -> np.ndarray:
    """Every catalogue channel a detector reads: its bindings' sensors' channels."""
    sensors = {b.channel.sensor.id for b in detector.bindings}
    return np.array([c.index for c in catalogue.channels if c.sensor.id in sensors], np.int64)


def scalar_batches(baseline: Baseline, channels: np.ndarray, interval_ms: int, count: int, start: int = 0):
    for k in range(start, start + count):
        ts = np.full(channels.size, T0 + k * interval_ms, np.int64)
        values = baseline.round(channels, baseline.values(channels, ts))
        yield Batch(channels.astype(np.int32), ts, values)


def timed(detector, batches) -> tuple[int, float]:
    rows, cpu = 0, 0.0
    for batch in batches:
        started = time.process_time()
        detector.update(batch)
        cpu += time.process_time() - started
        rows += len(batch)
    return rows, cpu


def main(sensors: int = 35_000) -> None:
    started = time.process_time()
    config = city_config(sensors)
    catalogue = Catalogue(config)
    baseline = Baseline(config.sensors, rules=config.rules)
    print(f"city: {len(config.sensors):,} sensors, {len(catalogue):,} channels "
          f"(built in {time.process_time() - started:.1f} s CPU)")
    results = []
    for kind, interval_ms, warmup, measured in (("elevator", 15_000, 5, 20), ("bridge_overload", 10_000, 10, 20),
                                                 ("runaway", 10_000, 70, 20)):
        detector = BUILDERS[kind](catalogue, config.rules)
        channels = channels_of(catalogue, detector)
        if kind == "bridge_overload":  # the spans' temperatures come with the gauges
            channels = np.array([c.index for c in catalogue.channels if c.sensor.type in
                                 ("strain_gauge", "deflection_gauge")], np.int64)
        for batch in scalar_batches(baseline, channels, interval_ms, warmup):
            detector.update(batch)
        rows, cpu = timed(detector, scalar_batches(baseline, channels, interval_ms, measured, warmup))
        results.append((kind, len(detector.bindings), rows, cpu))
        # ten readings per channel in one batch: ten rounds (a backlog, a compressed replay)
        deep = [Batch.concat(list(scalar_batches(baseline, channels, interval_ms, 10, warmup + measured + 10 * j)))
                for j in range(3)]
        rows10, cpu10 = timed(detector, deep)
        results.append((f"{kind} (10 per batch)", len(detector.bindings), rows10, cpu10))

    modal = BUILDERS["bridge_modal"](catalogue, config.rules)
    acc = np.array([b.channel.index for b in modal.bindings], np.int64)
    temps = np.array([c.index for c in catalogue.channels if c.sensor.type == "strain_gauge" and c.metric == "temp"])
    samples = 2000

    def blocks(epoch: int) -> Batch:
        start = T0 + epoch * 600_000 + 60_000
        channel = np.repeat(acc, samples)
        ts = start + np.tile(np.arange(samples, dtype=np.int64) * 10, acc.size)
        values = baseline.round(channel, baseline.values(channel, ts))
        t_ts = np.full(temps.size, start, np.int64)
        t_values = baseline.round(temps, baseline.values(temps, t_ts))
        return Batch(np.r_[temps, channel].astype(np.int32), np.r_[t_ts, ts], np.r_[t_values, values])
    prepared = [blocks(e) for e in range(6)]
    for batch in prepared[:3]:
        modal.update(batch)  # baselines of 3 blocks
    rows, cpu = timed(modal, prepared[3:])
    results.append(("bridge_modal (20 s blocks at 100 Hz)", len(modal.bindings), rows, cpu))

    print(f"\n{'detector':40} {'bindings':>9} {'readings':>12} {'CPU s':>8} {'readings/s':>14}")
    for kind, bindings, rows, cpu in results:
        print(f"{kind:40} {bindings:>9,} {rows:>12,} {cpu:>8.2f} {rows / cpu:>14,.0f}")
    rate = rows / cpu
    needed = acc.size * 100
    print(f"\nmodal: {acc.size:,} accelerometers streaming continuously at 100 Hz send {needed:,} samples/s; "
          f"one core analyses {rate:,.0f} samples/s ({rate / needed:.1f}x). The city's acquisition "
          f"(20 s every 10 min) sends {acc.size * samples / 600:,.0f} samples/s.")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 35_000)

"""Throughput of the gas and pipeline domain detectors on a city-sized catalogue (plain script).

The catalogue is the generated city of 35,000 sensors (about 99,000 channels: 10,660 manholes
with CH4, C2H6 and temperature, 3,849 transient pressure loggers at 50 Hz, 1,927 flow meters),
with the city's own rules (`gas-main-leak`, `water-main-burst`, `water-district-balance`).

* gas_leak: batches of one reading object per manhole (its three channels: 32,000 rows), then of
  ten per manhole (320,000 rows, ten rounds); values around the manholes' baseline (CH4 about
  1 %LEL, no ethane, 17 degC), a reading every 120 s;
* pipe_burst: every logger streaming continuously at 50 Hz, one second of samples per batch
  (192,450 rows): the worst case, since the city's loggers send a 1 s block a minute plus
  captures. Real-time factor = simulated seconds per CPU second; above 1 it keeps up;
* mass_balance: one reading per flow meter per batch.

CPU time of this process (time.process_time) per `update`, after a warm-up; each measurement
is repeated and the best and median are printed.

    .venv/bin/python benchmarks/bench_domain_gas_pipeline.py
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from detectors.domain.gas import GasLeakDetector
from detectors.domain.pipeline_balance import MassBalanceDetector
from detectors.domain.pipeline_burst import PipeBurstDetector
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from simulators.city import city_config

SENSORS = 35_000
T0 = 1_763_798_400_000
REPEATS = 7


def _cpu(run) -> tuple[float, float]:
    times = []
    for _ in range(REPEATS):
        started = time.process_time()
        run()
        times.append(time.process_time() - started)
    return min(times), statistics.median(times)


def bench_gas(catalogue: Catalogue, rules) -> None:
    detector = GasLeakDetector.from_rules(catalogue, rules)
    bindings = detector.bindings
    channels = np.array([[b.channel.index, b.ethane, b.temp] for b in bindings], np.int32)
    rng = np.random.default_rng(1)
    clock = {"t": T0}

    def batch(per_manhole: int) -> Batch:
        n = len(bindings)
        ts = clock["t"] + 120_000 * np.arange(per_manhole, dtype=np.int64)
        clock["t"] += 120_000 * per_manhole
        stamps = np.repeat(np.tile(ts, n), 3)
        chans = np.repeat(channels, per_manhole, axis=0).ravel()
        values = np.column_stack([rng.normal(1.0, 0.1, n * per_manhole), rng.normal(0.3, 0.1, n * per_manhole),
                                  rng.normal(17.0, 0.1, n * per_manhole)]).ravel()
        return Batch(chans, stamps, values)

    for _ in range(40):
        detector.update(batch(1))
    for per in (1, 10):
        best, median = _cpu(lambda per=per: detector.update(batch(per)))
        rows = len(bindings) * 3 * per
        print(f"gas_leak      {len(bindings):>6} manholes, {per:>2} reading(s) each: {rows:>8} rows  "
              f"best {best * 1000:7.1f} ms  median {median * 1000:7.1f} ms  {rows / median:>12,.0f} readings/s")


def bench_burst(catalogue: Catalogue, rules) -> None:
    detector = PipeBurstDetector.from_rules(catalogue, rules)
    loggers = np.array([b.channel.index for b in detector.bindings], np.int32)
    rng = np.random.default_rng(2)
    n, samples = loggers.size, 50
    clock = {"t": T0}
    level = 0.3 + 0.02 * rng.random(n)

    def second() -> Batch:
        ts = clock["t"] + 20 * np.arange(samples, dtype=np.int64)
        clock["t"] += 1000
        values = np.round(level[:, None] + rng.normal(0, 0.0015, (n, samples)), 3)
        return Batch(np.repeat(loggers, samples), np.tile(ts, n), values.ravel())

    for _ in range(5):
        detector.update(second())
    best, median = _cpu(lambda: detector.update(second()))
    rows = n * samples
    print(f"pipe_burst    {n:>6} loggers at 50 Hz, 1 s per batch: {rows:>8} rows  best {best * 1000:7.1f} ms  "
          f"median {median * 1000:7.1f} ms  {rows / median:>12,.0f} samples/s  real-time factor {1.0 / median:.1f}")


def bench_balance(catalogue: Catalogue, rules) -> None:
    detector = MassBalanceDetector.from_rules(catalogue, rules)
    meters = np.array([c for b in detector.bindings for c in (b.channel.index, b.outflow.index)], np.int32)
    rng = np.random.default_rng(3)
    clock = {"t": T0}

    def batch() -> Batch:
        clock["t"] += 300_000
        flows = rng.normal(500.0, 10.0, meters.size)
        return Batch(meters, np.full(meters.size, clock["t"], np.int64), flows)

    for _ in range(20):
        detector.update(batch())
    best, median = _cpu(lambda: detector.update(batch()))
    print(f"mass_balance  {len(detector.bindings):>6} districts ({meters.size} meters), one reading each: "
          f"best {best * 1000:7.2f} ms  median {median * 1000:7.2f} ms  {meters.size / median:>12,.0f} readings/s")


def main() -> None:
    config = city_config(SENSORS, seed=1)
    catalogue = Catalogue(config)
    print(f"city of {len(config.sensors)} sensors, {len(catalogue)} channels")
    bench_gas(catalogue, config.rules)
    bench_burst(catalogue, config.rules)
    bench_balance(catalogue, config.rules)


if __name__ == "__main__":
    main()

"""Throughput and memory of the full generic detector set (plain script; prints numbers).

100,000 channels, each with every generic rule kind, as `detectors.registry.build_detectors`
builds them for the pipeline:

* threshold: yellow 120 / red 140 (hysteresis 0.9);
* trend over a 300 s window of at most 16 points: a rising-slope rule on half the channels,
  a forecast toward the threshold (10 min horizon) on the other half;
* change: CUSUM on half the channels, EWMA on the other half;
* quality: range, stuck, a 9-reading spike window and a rate limit on every channel;
* deadman: per sensor, with a gateway alert per gateway (100 gateways).

The feed is noise around a per-channel mean with level steps, spikes and stuck channels, one
reading every 10 s per channel, channels shuffled within each time step. After a warm-up that
completes the change baselines and fills the windows, it measures batches of one reading per
channel (100,000 rows), of ten (1,000,000 rows, ten rounds), and small batches of 5,000
readings of random channels (a round of one reading per channel cut in 20), the size of a
pipeline batch at a few hundred thousand readings per second, where every reading's state is
a cache miss. Every batch goes through every detector in pipeline order (quality, threshold,
trend, change, deadman); each call is timed with this process's CPU time, so the per-detector numbers and the full set (their sum, which is
what the pipeline spends) are measured on the same batches and state. Readings per second count
batch rows: a reading evaluated by all five detectors counts once.

Memory is the bytes of every numpy array a detector holds (state, parameters, LevelMachine,
channel index) per channel, split into the configured window history (the trend and spike
ring buffers) and the rest.

    .venv/bin/python benchmarks/bench_detectors.py
"""

from __future__ import annotations

import time

import numpy as np

from detectors.registry import build_detectors
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Config, Gateway, Location, Rule, Sensor, Threshold
from lifeline.rule_kinds import Change, Deadman, Quality, Trend

N_CHANNELS = 100_000
N_GATEWAYS = 100
WARMUP = 30
T0 = 1_700_000_000_000
INTERVAL_MS = 10_000
TREND_POINTS = 16
SPIKE_WINDOW = 9
SMALL, SMALL_ROWS = 0, 5_000  # small batches: a pipeline batch at a few hundred thousand readings/s


def build() -> tuple[Catalogue, list[Rule]]:
    gateways = tuple(Gateway(f"g{g}", "city") for g in range(N_GATEWAYS))
    sensors = tuple(
        Sensor(id=f"s{i}", gateway=f"g{i % N_GATEWAYS}", domain="bridge", type="ab"[i % 2], asset=f"s{i}",
               location=Location(0.0, 0.0), metrics={"v": "u"}, interval=10.0)
        for i in range(N_CHANNELS))
    cusum = Change(method="cusum", levels={"yellow": 5.0, "orange": 8.0, "red": 12.0}, k=0.5, lam=0.2,
                   warmup=WARMUP, learn=0.01, direction="both", hold_s=0.0)
    ewma = Change(method="ewma", levels={"yellow": 3.0, "orange": 4.0, "red": 5.0}, k=0.5, lam=0.2,
                  warmup=WARMUP, learn=0.01, direction="up", hold_s=20.0)
    quality = Quality(range_min=-50.0, range_max=150.0, stuck_readings=20, stuck_seconds=None, stuck_tolerance=0.0,
                      spike_window=SPIKE_WINDOW, spike_threshold=6.0, max_rate_per_s=5.0, level="blue",
                      on_fault="mark", clear_after=3)
    rising = Trend(window_s=300, min_points=3, direction="rising", levels={"yellow": 5.0, "red": 10.0}, clear=0.8,
                   hold_s=0, forecast_rule=None, horizon_s=0, max_points=TREND_POINTS)
    forecast = Trend(window_s=300, min_points=3, direction=None, levels={}, clear=1.0, hold_s=0,
                     forecast_rule="level", horizon_s=600, max_points=TREND_POINTS)
    rules = [Rule("level", {}, Threshold("above", {"yellow": 120.0, "red": 140.0}, 0.9, 0.0)),
             Rule("rising", {"type": ("a",)}, None, kind="trend", spec=rising),
             Rule("forecast", {"type": ("b",)}, None, kind="trend", spec=forecast),
             Rule("cusum", {"type": ("a",)}, None, kind="change", spec=cusum),
             Rule("ewma", {"type": ("b",)}, None, kind="change", spec=ewma),
             Rule("quality", {}, None, kind="quality", spec=quality),
             Rule("silence", {}, None, kind="deadman",
                  spec=Deadman(after=3, level="yellow", gateway_level="orange", grace_s=None))]
    return Catalogue(Config(gateways=gateways, sensors=sensors)), rules


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


#: The configured window history, per detector class: attribute paths of its buffers.
HISTORY = {"TrendDetector": ("_t", "_v"), "QualityDetector": ("_windows.values", "_windows.slots")}


def buffers(obj: object, found: dict[int, np.ndarray] | None = None, seen: set[int] | None = None
            ) -> dict[int, np.ndarray]:
    """Every numpy buffer reachable through the attributes of `obj`, by identity; a view (a
    field of a record array, a slice) stands for the array it views, so each is counted once."""
    found = {} if found is None else found
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return found
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        while isinstance(obj.base, np.ndarray):
            obj = obj.base
        found[id(obj)] = obj
    elif isinstance(obj, list | tuple):
        for item in obj:
            buffers(item, found, seen)
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith(("detectors", "__main__")):
        for value in vars(obj).values():
            buffers(value, found, seen)
    return found


def state_and_history_bytes(detector: object) -> tuple[int, int]:
    """(bytes of state and parameters, bytes of window history) of a detector's arrays."""
    every = buffers(detector)
    history: dict[int, np.ndarray] = {}
    for path in HISTORY.get(type(detector).__name__, ()):
        target = detector
        for name in path.split("."):
            target = getattr(target, name)
        buffers(target, history)
    total = sum(array.nbytes for array in every.values())
    windows = sum(array.nbytes for key, array in history.items() if key in every)
    return total - windows, windows


def main() -> None:
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    catalogue, rules = build()
    built = time.perf_counter()
    detectors = build_detectors(catalogue, rules)
    order = detectors.all()
    print(f"catalogue of {len(catalogue)} channels: {built - start:.1f} s; detectors built in "
          f"{time.perf_counter() - built:.1f} s: " + ", ".join(f"{d.kind} {len(d.bindings)}" for d in order)
          + " bindings")

    feed = Feed(rng)
    for _ in range(WARMUP // 10 + 1):  # complete the change warm-up, fill trend and spike windows
        warm = feed.batch(10)
        for d in order:
            d.update(warm)
    for per_channel, n_batches in ((1, 6), (10, 2), (SMALL, 100)):
        if per_channel == SMALL:
            # Five rounds of one reading per channel, each cut into batches of 5,000 rows.
            rounds = [feed.batch(1) for _ in range(n_batches * SMALL_ROWS // N_CHANNELS)]
            work = [Batch(r.channel[i:i + SMALL_ROWS], r.ts[i:i + SMALL_ROWS], r.value[i:i + SMALL_ROWS])
                    for r in rounds for i in range(0, N_CHANNELS, SMALL_ROWS)]
        else:
            work = [feed.batch(per_channel) for _ in range(n_batches)]
        cpu = dict.fromkeys([d.kind for d in order], 0.0)
        found = dict.fromkeys(cpu, 0)
        for batch in work:
            for d in order:
                t0 = time.process_time()
                found[d.kind] += len(d.update(batch))
                cpu[d.kind] += time.process_time() - t0
        rows = sum(len(b) for b in work)
        shape = (f"batches of {SMALL_ROWS:,} readings of random channels" if per_channel == SMALL
                 else f"{per_channel} reading(s)/channel per batch")
        print(f"\n{shape}: {n_batches} batches of {rows // n_batches:,} rows")
        for kind, seconds in cpu.items():
            print(f"  {kind:<10} {rows / seconds / 1e6:6.2f} M readings/s CPU  {seconds / n_batches * 1e3:8.1f} "
                  f"ms/batch  {found[kind] / n_batches:8.0f} findings/batch")
        total = sum(cpu.values())
        print(f"  {'full set':<10} {rows / total / 1e6:6.2f} M readings/s CPU  {total / n_batches * 1e3:8.1f} "
              f"ms/batch  {sum(found.values()) / n_batches:8.0f} findings/batch")

    t0 = time.process_time()
    ticks = 5
    for _ in range(ticks):
        detectors.deadman.tick()
    print(f"\ndeadman tick (timer, all {len(detectors.deadman.bindings)} bindings): "
          f"{(time.process_time() - t0) / ticks * 1e3:.1f} ms CPU")

    print("\nmemory, bytes per channel (numpy arrays: state and parameters | window history)")
    state = history = 0
    for d in order:
        s, h = state_and_history_bytes(d)
        state, history = state + s, history + h
        print(f"  {d.kind:<10} {s / N_CHANNELS:6.0f} | {h / N_CHANNELS:4.0f}")
    print(f"  {'full set':<10} {state / N_CHANNELS:6.0f} | {history / N_CHANNELS:4.0f}   "
          f"(window history: {TREND_POINTS}-point trend window, {SPIKE_WINDOW}-reading spike window)")


if __name__ == "__main__":
    main()

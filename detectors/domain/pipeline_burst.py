"""Pipe bursts from negative pressure waves on high-rate pressure loggers (rule key `pipe_burst`).

Every logger's samples are scanned, all loggers at once, for wave fronts (see `pipeline_wave`).
The samples of a batch are split into *runs*, contiguous samples of one logger; a run that
continues the logger's previous samples starts with the last second of them (a small ring per
logger), so a front across two blocks is still seen, while a block that overlaps or precedes
what was seen (a triggered capture sent after a periodic block) is scanned on its own.

A front opens an *arrival* on its logger, which keeps the samples from `pre` before to `settle`
+ 2 s after it. Arrivals on one main within `wait` seconds form one burst; it is located once
the loggers either side of the first arrival have theirs, or once the main's readings are
`wait` seconds past the first arrival. The burst lies on the segment between the first logger
and the neighbour giving the estimate farthest from it (on the other side the wave simply
passed the first logger: the estimate sits on it), at x = (L + a * dt) / 2 from the segment's
upstream logger, dt from the cross-correlation of the two loggers' pressure derivatives.

The alert belongs to the segment's upstream logger (its asset is the segment); its level is
the pressure drop `settle` seconds after the front at the first logger, and it lasts until that
logger's pressure is back more than half-way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from detectors.batching import BindingIndex
from detectors.domain.pipeline_wave import arrival_difference_ms, burst_position, front_drops
from detectors.formatting import format_number
from detectors.level_machine import LevelMachine
from detectors.threshold import ThresholdFindings, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule, Threshold
from lifeline.domain_rules.pipeline import PipeBurst
from lifeline.levels import level_name

DEFAULT_WAVE_SPEED = 1200.0  # m/s, ductile iron water main, when neither rule nor catalogue says
DEFAULT_RATE_HZ = 50.0
PRE_S = 1.0  # seconds of samples kept before a front (and in each logger's ring)
AFTER_SETTLE_S = 2.0  # the settled pressure is the median over this long after `settle`
GIVE_UP_WAITS = 10  # waits after which a silent neighbour logger no longer holds a burst back
_NO_TS = np.iinfo(np.int64).min


@dataclass(frozen=True)
class LoggerBinding:
    """A pipe_burst rule on one pressure logger; the alert metric is `burst`."""

    index: int
    rule: Rule
    channel: Channel
    main: str | None
    position_m: float
    wave_speed: float
    step_ms: float  # sample interval

    @property
    def metric(self) -> str:
        return "burst"


@dataclass
class Arrival:
    """A wave front seen by one logger, with its samples around it."""

    logger: int
    ts: int  # epoch ms of the sample ending the front
    before: float  # pressure before the front
    until_ms: int  # samples are collected up to here
    ts_list: list[np.ndarray] = field(default_factory=list)
    value_list: list[np.ndarray] = field(default_factory=list)

    def add(self, ts: np.ndarray, values: np.ndarray) -> None:
        keep = (ts >= self.ts - PRE_S * 1000) & (ts <= self.until_ms)
        if keep.any():
            self.ts_list.append(ts[keep])
            self.value_list.append(values[keep])

    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        ts, values = np.concatenate(self.ts_list), np.concatenate(self.value_list)
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
        unique = np.r_[True, ts[1:] != ts[:-1]]
        return ts[unique].astype(np.float64), values[unique]

    def complete(self, newest_ts: int) -> bool:
        return newest_ts >= self.until_ms


@dataclass
class Burst:
    """Arrivals of one wave on one main, until located."""

    main: str
    first_ts: int
    arrivals: dict[int, Arrival] = field(default_factory=dict)


@dataclass(frozen=True)
class Located:
    """Where a burst lies and how much the pressure fell; what its alert shows."""

    upstream: int  # binding
    downstream: int | None
    nearest: int  # the logger the wave reached first
    arrival_ts: int  # epoch ms of the front there
    position_m: float  # from the upstream logger
    dt_ms: float | None  # arrival at upstream minus downstream
    wave_speed: float
    drop: float
    before: float
    lon: float
    lat: float
    lowest: list[float] = field(default_factory=lambda: [math.inf])  # since a restore (before unknown)


class PipeBurstDetector:
    """Wave fronts, bursts and their positions for every (pipe_burst rule, logger) binding."""

    kind = "pipe_burst"

    def __init__(self, bindings: Sequence[LoggerBinding], n_channels: int, order: dict[int, tuple[int, int]]):
        """order : binding -> (upstream neighbour, downstream neighbour) on its main, -1 when none."""
        self.bindings = tuple(bindings)
        n = len(self.bindings)
        specs: list[PipeBurst] = [b.rule.spec for b in self.bindings]
        self._order = order
        self._index = BindingIndex(np.array([b.channel.index for b in self.bindings], np.int64), n_channels)
        self._step_ms = np.array([b.step_ms for b in self.bindings])
        self._front = np.array([max(1, round(s.front_s * 1000 / b.step_ms)) for s, b in zip(specs, self.bindings,
                                                                                           strict=True)], np.intp)
        self._pre = np.array([max(2, round(0.5 * 1000 / b.step_ms)) for b in self.bindings], np.intp)
        self._min_drop = np.array([s.drop_rate * s.front_s for s in specs])
        self._ring_size = max([int(math.ceil(PRE_S * 1000 / b.step_ms)) + 1 for b in self.bindings], default=1)
        #: (bindings, ring) the last samples of each logger, oldest first; how many are valid
        self._ring_ts = np.zeros((n, self._ring_size), np.int64)
        self._ring_v = np.zeros((n, self._ring_size))
        self._ring_n = np.zeros(n, np.intp)
        self._last_ts = np.full(n, _NO_TS, np.int64)  # newest sample seen
        self._last_value = np.full(n, np.nan)
        self._last_front = np.full(n, -(2**62), np.int64)  # no front yet (far past, no overflow)
        self._open: dict[str, Burst] = {}  # main -> burst being located
        self._arrivals: dict[int, Arrival] = {}  # logger -> arrival still collecting samples
        self._located_at: dict[str, int] = {}  # main -> first arrival of its latest located burst
        #: binding -> the burst its alert is about
        self.located: dict[int, Located] = {}
        thresholds = [Threshold("above", dict(s.levels), 1.0, 0.0) for s in specs]
        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings], thresholds)

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> PipeBurstDetector:
        """A binding per logger whose pressure channel a pipe_burst rule matches; neighbours are the
        loggers of the same rule and `main` in `position_m` order."""
        bindings: list[LoggerBinding] = []
        for rule in rules:
            if rule.kind != "pipe_burst":
                continue
            spec: PipeBurst = rule.spec
            for sensor in catalogue.sensors:
                channels = catalogue.channels_of[sensor.id]
                if spec.metric not in channels or not rule.matches(sensor, catalogue.owner_of(sensor), spec.metric):
                    continue
                rate = sensor.number("rate_hz")
                speed = spec.wave_speed or sensor.number("wave_speed_mps")
                bindings.append(LoggerBinding(
                    len(bindings), rule, catalogue.channels[channels[spec.metric]], sensor.extra.get("main"),
                    sensor.number("position_m"), speed if math.isfinite(speed) else DEFAULT_WAVE_SPEED,
                    1000.0 / (rate if math.isfinite(rate) and rate > 0 else DEFAULT_RATE_HZ)))
        groups: dict[tuple[str, str], list[LoggerBinding]] = {}
        for b in bindings:
            if b.main and math.isfinite(b.position_m):
                groups.setdefault((b.rule.id, b.main), []).append(b)
        order: dict[int, tuple[int, int]] = {}
        for members in groups.values():
            members.sort(key=lambda b: (b.position_m, b.index))
            for i, b in enumerate(members):
                order[b.index] = (members[i - 1].index if i > 0 else -1,
                                  members[i + 1].index if i + 1 < len(members) else -1)
        return cls(bindings, len(catalogue), order)

    # -- evaluation ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> ThresholdFindings:
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        b, row = self._index.expand(batch.channel)
        if b.size == 0:
            return empty_findings()
        ts = np.asarray(batch.ts, np.int64)[row]
        value = np.asarray(batch.value, np.float64)[row]
        order = np.lexsort((ts, b))
        b, ts, value = b[order], ts[order], value[order]
        fresh = np.r_[True, (b[1:] != b[:-1]) | (ts[1:] != ts[:-1])]  # a sample sent twice counts once
        b, ts, value = b[fresh], ts[fresh], value[fresh]

        ts_all, v_all, b_all, run_start, new = self._with_rings(b, ts, value)
        drops = front_drops(v_all, run_start, self._front[b_all], self._pre[b_all])
        fronts = np.flatnonzero(new & (drops >= self._min_drop[b_all]))
        self._remember(b, ts, value)

        stream, stamps, stats = [], [], []
        if fronts.size:
            self._open_arrivals(fronts, ts_all, v_all, b_all, run_start)
        if self._arrivals:
            self._collect(b, ts, value)
        for found in self._locate(b, ts):
            stream.append(found[0])
            stamps.append(found[1])
            stats.append(found[2])
        for binding, burst in list(self.located.items()):
            # The burst lasts while the first logger's pressure is not back half-way.
            nearest = burst.nearest
            if self._last_ts[nearest] <= burst.arrival_ts or self._machine.level()[binding] == 0:
                continue
            if math.isnan(burst.before):  # restored after a restart: recovery from the lowest seen
                burst.lowest[0] = min(burst.lowest[0], float(self._last_value[nearest]))
                back = self._last_value[nearest] >= burst.lowest[0] + burst.drop / 2
            else:
                back = self._last_value[nearest] >= burst.before - burst.drop / 2
            stream.append(binding)
            stamps.append(int(self._last_ts[nearest]))
            stats.append(0.0 if back else burst.drop)
        if not stream:
            return empty_findings()
        order = np.argsort(np.array(stream), kind="stable")
        return self._machine.update(np.array(stream, np.intp)[order], np.array(stamps, np.int64)[order],
                                    np.array(stats)[order])

    def _with_rings(self, b: np.ndarray, ts: np.ndarray, value: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Samples of the batch in runs, each run that continues a logger's samples preceded by its
        ring. Returns ts, value, binding, run_start (index of each sample's run start) and `new`
        (False for ring samples), all (k,)."""
        first = np.r_[True, b[1:] != b[:-1]]
        gap = np.r_[False, np.diff(ts) > 2.5 * self._step_ms[b[1:]]]
        starts = np.flatnonzero(first | gap)
        # A run continues the ring when its logger's first sample follows the last one seen.
        starts_b = b[starts]
        continues = first[starts] & (ts[starts] > self._last_ts[starts_b]) & \
            (ts[starts] - self._last_ts[starts_b] <= 2.5 * self._step_ms[starts_b]) & (self._ring_n[starts_b] > 0)
        prefix = np.where(continues, self._ring_n[starts_b], 0)
        lengths = np.diff(np.r_[starts, b.size])
        total = lengths + prefix
        offsets = np.r_[0, np.cumsum(total)]
        k = int(offsets[-1])
        ts_all = np.empty(k, np.int64)
        v_all = np.empty(k)
        b_all = np.repeat(starts_b, total)
        run_start = np.repeat(offsets[:-1], total)
        new = np.ones(k, bool)
        # batch samples go after each run's prefix
        within = np.arange(b.size) - np.repeat(starts, lengths)
        at = np.repeat(offsets[:-1] + prefix, lengths) + within
        ts_all[at] = ts
        v_all[at] = value
        if prefix.any():
            runs = np.flatnonzero(prefix)
            reps = prefix[runs]
            where = np.repeat(offsets[:-1][runs], reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
            logger = np.repeat(starts_b[runs], reps)
            slot = self._ring_size - np.repeat(reps, reps) + (where - np.repeat(offsets[:-1][runs], reps))
            ts_all[where] = self._ring_ts[logger, slot]
            v_all[where] = self._ring_v[logger, slot]
            new[where] = False
        return ts_all, v_all, b_all, run_start, new

    def _remember(self, b: np.ndarray, ts: np.ndarray, value: np.ndarray) -> None:
        """Keep the newest samples of each logger (its ring, oldest first) and its latest reading."""
        last = np.r_[b[1:] != b[:-1], True]
        newer = ts[last] > self._last_ts[b[last]]
        loggers = b[last][newer]
        if loggers.size == 0:
            return
        end = np.flatnonzero(last)[newer]
        self._last_ts[loggers] = ts[end]
        self._last_value[loggers] = value[end]
        # Only the last run of each logger in the batch fills its ring (older samples are history).
        size = self._ring_size
        first_of = np.r_[0, np.flatnonzero(b[1:] != b[:-1]) + 1]
        first_of_b = first_of[np.searchsorted(first_of, end, side="right") - 1]
        take = np.minimum(end - first_of_b + 1, size)
        reps = take
        src = np.repeat(end - take + 1, reps) + (np.arange(reps.sum()) - np.repeat(np.cumsum(reps) - reps, reps))
        logger = np.repeat(loggers, reps)
        slot = size - np.repeat(take, reps) + (src - np.repeat(end - take + 1, reps))
        keep_old = size - take
        # shift what stays of the old ring to the front, then write the new samples behind it
        for count in np.unique(keep_old[keep_old > 0]).tolist():
            group = loggers[keep_old == count]
            self._ring_ts[group, :count] = self._ring_ts[group, size - count:]
            self._ring_v[group, :count] = self._ring_v[group, size - count:]
        self._ring_ts[logger, slot] = ts[src]
        self._ring_v[logger, slot] = value[src]
        self._ring_n[loggers] = np.minimum(self._ring_n[loggers] + take, size)

    def _open_arrivals(self, fronts: np.ndarray, ts_all: np.ndarray, v_all: np.ndarray, b_all: np.ndarray,
                       run_start: np.ndarray) -> None:
        """An arrival for the first front of each logger not already seen (rare: Python)."""
        for j in fronts.tolist():
            logger = int(b_all[j])
            t = int(ts_all[j])
            spec: PipeBurst = self.bindings[logger].rule.spec
            if abs(t - self._last_front[logger]) < spec.wait_s * 1000 or logger in self._arrivals:
                continue
            self._last_front[logger] = t
            main = self.bindings[logger].main or f"#{logger}"
            if abs(t - self._located_at.get(main, -(2**62))) <= spec.wait_s * 1000:
                continue  # the wave of a burst already located, reaching a farther logger
            step = self._step_ms[logger]
            pre_end = j - self._front[logger] + 1
            before = float(np.mean(v_all[max(run_start[j], pre_end - self._pre[logger]):pre_end]))
            until = t + int((spec.settle_s + AFTER_SETTLE_S) * 1000 + step)
            arrival = Arrival(logger, t, before, until)
            run = slice(int(run_start[j]), int(np.searchsorted(run_start, run_start[j], side="right")))
            arrival.add(ts_all[run], v_all[run])
            self._arrivals[logger] = arrival
            burst = self._open.get(main)
            if burst is None or t - burst.first_ts > spec.wait_s * 1000:
                burst = self._open[main] = Burst(main, t)
            burst.first_ts = min(burst.first_ts, t)
            burst.arrivals[logger] = arrival

    def _collect(self, b: np.ndarray, ts: np.ndarray, value: np.ndarray) -> None:
        """Samples of this batch for arrivals still collecting (those opened now took theirs)."""
        bounds = np.r_[0, np.flatnonzero(b[1:] != b[:-1]) + 1, b.size]
        loggers = b[bounds[:-1]]
        for logger, arrival in list(self._arrivals.items()):
            k = np.searchsorted(loggers, logger)
            if k < loggers.size and loggers[k] == logger:
                part = slice(bounds[k], bounds[k + 1])
                arrival.add(ts[part], value[part])
            if arrival.complete(int(self._last_ts[logger])):
                del self._arrivals[logger]

    def _locate(self, b: np.ndarray, ts: np.ndarray) -> list[tuple[int, int, float]]:
        """Bursts ready to be located: (alert binding, ts, pressure drop) for each."""
        out = []
        for main, burst in list(self._open.items()):
            first = min(burst.arrivals.values(), key=lambda a: a.ts)
            spec: PipeBurst = self.bindings[first.logger].rule.spec
            up, down = self._order.get(first.logger, (-1, -1))
            members = [first.logger, *(n for n in (up, down) if n >= 0)]
            waited = burst.first_ts + spec.wait_s * 1000
            # A neighbour without a front counts once its own readings are past the wait; a silent
            # one is given up on when the others are GIVE_UP_WAITS waits past it.
            ready = all(burst.arrivals[m].complete(int(self._last_ts[m])) if m in burst.arrivals
                        else self._last_ts[m] >= waited for m in members)
            newest = max(int(self._last_ts[m]) for m in members)
            if not ready and newest < burst.first_ts + GIVE_UP_WAITS * spec.wait_s * 1000:
                continue
            del self._open[main]
            self._located_at[main] = burst.first_ts
            located = self._position(burst, first, up, down)
            if located is None:
                continue
            self.located[located.upstream] = located
            out.append((located.upstream, first.ts, located.drop))
        return out

    def _position(self, burst: Burst, first: Arrival, up: int, down: int) -> Located | None:
        """Segment and position of a burst from its first arrival and the neighbours' ones."""
        t_first, v_first = first.samples()
        settle = self.bindings[first.logger].rule.spec.settle_s * 1000
        after = v_first[(t_first >= first.ts + settle) & (t_first <= first.ts + settle + AFTER_SETTLE_S * 1000)]
        settled = float(np.median(after)) if after.size else float(v_first[-1])
        drop = first.before - settled
        candidates = []  # (distance from the first logger, upstream, downstream, x from upstream, dt)
        here = self.bindings[first.logger]
        for other in (up, down):
            arrival = burst.arrivals.get(other)
            if other < 0 or arrival is None or not arrival.ts_list:
                continue
            upstream, downstream = (other, first.logger) if other == up else (first.logger, other)
            u, d = self.bindings[upstream], self.bindings[downstream]
            length = d.position_m - u.position_m
            t_o, v_o = arrival.samples()
            max_lag = length / u.wave_speed * 1000 + 4 * here.step_ms
            if upstream == first.logger:
                dt = arrival_difference_ms(t_first, v_first, t_o, v_o, here.step_ms, max_lag)
            else:
                dt = arrival_difference_ms(t_o, v_o, t_first, v_first, here.step_ms, max_lag)
            if dt is None:
                continue
            x = burst_position(length, u.wave_speed, dt / 1000.0)
            distance = x if upstream == first.logger else length - x
            candidates.append((distance, upstream, downstream, x, dt))
        if candidates:
            _, upstream, downstream, x, dt = max(candidates)
            u, d = self.bindings[upstream], self.bindings[downstream]
            share = x / max(d.position_m - u.position_m, 1e-9)
            loc_u, loc_d = u.channel.sensor.location, d.channel.sensor.location
            return Located(upstream, downstream, first.logger, first.ts, x, dt, u.wave_speed, drop, first.before,
                           loc_u.lon + share * (loc_d.lon - loc_u.lon), loc_u.lat + share * (loc_d.lat - loc_u.lat))
        # Only the first logger saw it: the burst is next to it.
        owner = first.logger if down >= 0 or up < 0 else up
        offset = 0.0 if owner == first.logger else here.position_m - self.bindings[up].position_m
        loc = here.channel.sensor.location
        return Located(owner, None if owner == first.logger else first.logger, first.logger, first.ts, offset, None,
                       here.wave_speed, drop, first.before, loc.lon, loc.lat)

    # -- Detector protocol -----------------------------------------------------------------------
    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        """Resume an open burst alert. Its wave is gone with the old process: the burst counts as
        repaired once the logger's pressure recovers by half the level's limit from its lowest."""
        self._machine.restore(binding, level, started_at, last_ts)
        if level > 0 and binding not in self.located:
            b = self.bindings[binding]
            limit = b.rule.spec.levels[level_name(level)]
            loc = b.channel.sensor.location
            self.located[binding] = Located(binding, None, binding, last_ts, 0.0, None, b.wave_speed, limit,
                                            math.nan, loc.lon, loc.lat)

    def details(self, binding: int) -> dict:
        located = self.located.get(binding)
        body: dict = {"kind": "pipe_burst"}
        if located is None:
            return body
        up = self.bindings[located.upstream]
        body.update({
            "location": {"lon": round(located.lon, 7), "lat": round(located.lat, 7)},
            "position_m": round(located.position_m, 1), "main": up.main,
            "segment": up.channel.sensor.extra.get("segment", up.channel.sensor.asset),
            "upstream": up.channel.sensor.id,
            "downstream": None if located.downstream is None else self.bindings[located.downstream].channel.sensor.id,
            "wave_speed_mps": located.wave_speed, "drop": round(located.drop, 4),
        })
        if located.dt_ms is not None:
            body["arrival_difference_ms"] = round(located.dt_ms, 1)
        return body

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        """`Burst on main WM-04-DN800 between WP-04-02 and WP-04-03, 412 m from WP-04-02 (wave
        arrivals 287 ms apart at 1150 m/s); pressure fell 0.21 MPa at WP-04-03 >= red 0.15`."""
        located = self.located.get(binding)
        b = self.bindings[binding]
        unit = b.channel.unit
        if located is None:
            return f"pressure wave at {b.channel.sensor.id}: {format_number(value)} {unit}"
        up = self.bindings[located.upstream].channel.sensor.id
        nearest = self.bindings[located.nearest].channel.sensor.id
        if level_after == 0:
            return (f"pressure at {nearest} back more than half-way after the burst near {up} "
                    f"(below {level_name(level_before)} {format_number(limit)}, cleared)")
        if located.downstream is not None:
            down = self.bindings[located.downstream].channel.sensor.id
            where = f"between {up} and {down}, {located.position_m:.0f} m from {up}"
        else:
            where = f"next to {up}"
        timing = "" if located.dt_ms is None else \
            f" (wave arrivals {abs(located.dt_ms):.0f} ms apart at {located.wave_speed:.0f} m/s)"
        return (f"Burst on main {b.main} {where}{timing}; pressure fell {format_number(located.drop)} {unit} "
                f"at {nearest} >= {level_name(level_after)} {format_number(limit)}")



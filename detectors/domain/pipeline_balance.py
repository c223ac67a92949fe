"""Leaks in a district metered area from its mass balance (rule key `mass_balance`).

Water that enters a main's district and neither leaves it through the outlet meter nor is
consumed is lost. The district's consumption follows the same daily demand as the flow through
it, so in normal operation inflow = r x outflow with the district's own ratio r; at night,
when consumption is least, r x outflow - outflow is its minimum night flow. The detector learns
r (the mean of the first `warmup` pairs of readings, then an exponentially weighted mean with
weight `learn` over normal readings: never while an alert is raised or the leak flow is past
the lowest level) and reports the *leak flow* = inflow - r x outflow against the rule's levels.

A main's meters are paired by topology: the meter at its start (smallest `position_m`)
measures the inflow, the one at its end the outflow. Each reading of either meter is evaluated
with the other's latest reading, if that is no older than `stale`. State is per district in
numpy arrays; a batch is evaluated round by round (one reading per district per round).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.batching import BindingIndex
from detectors.formatting import format_number
from detectors.level_machine import LevelMachine
from detectors.threshold import ThresholdFindings, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule, Threshold
from lifeline.domain_rules.pipeline import MassBalance
from lifeline.levels import level_name

_NO_TS = np.iinfo(np.int64).min
_IN, _OUT = 0, 1


@dataclass(frozen=True)
class DistrictBinding:
    """A mass_balance rule on one main's district: `channel` is the inflow meter's, `outflow`
    the outflow meter's channel; the alert metric is `leak`."""

    index: int
    rule: Rule
    channel: Channel
    outflow: Channel
    main: str

    @property
    def metric(self) -> str:
        return "leak"


class MassBalanceDetector:
    """Leak flow of every (mass_balance rule, district) binding."""

    kind = "mass_balance"

    def __init__(self, bindings: Sequence[DistrictBinding], n_channels: int):
        self.bindings = tuple(bindings)
        n = len(self.bindings)
        specs: list[MassBalance] = [b.rule.spec for b in self.bindings]
        channels = [c for b in self.bindings for c in (b.channel.index, b.outflow.index)]
        self._index = BindingIndex(np.array(channels, np.int64), n_channels)
        #: (entries,) district and role (inflow 0, outflow 1) of each meter entry
        self._entry_binding = np.repeat(np.arange(n), 2)
        self._entry_role = np.tile(np.array([_IN, _OUT], np.int8), n)
        self._warmup = np.array([s.warmup for s in specs], np.int64)
        self._learn = np.array([s.learn for s in specs])
        self._stale_ms = np.array([s.stale_s * 1000 for s in specs], np.int64)
        self._lowest = np.array([min(s.levels.values()) for s in specs])
        self._flow = np.full((2, n), np.nan)  # latest inflow, outflow
        self._flow_ts = np.full((2, n), _NO_TS, np.int64)
        #: learnt ratio inflow / outflow and how many pairs formed it
        self.ratio = np.full(n, np.nan)
        self.learned = np.zeros(n, np.int64)
        self.leak_flow = np.full(n, np.nan)
        thresholds = [Threshold("above", dict(s.levels), s.clear, s.hold_s) for s in specs]
        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings], thresholds)

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> MassBalanceDetector:
        """A binding per `main` with at least two meters the rule matches: first and last by `position_m`."""
        bindings: list[DistrictBinding] = []
        for rule in rules:
            if rule.kind != "mass_balance":
                continue
            spec: MassBalance = rule.spec
            meters: dict[str, list[tuple[float, Channel]]] = {}
            for sensor in catalogue.sensors:
                channels = catalogue.channels_of[sensor.id]
                main = sensor.extra.get("main")
                position = sensor.number("position_m")
                if spec.metric not in channels or not main or not math.isfinite(position) \
                        or not rule.matches(sensor, catalogue.owner_of(sensor), spec.metric):
                    continue
                meters.setdefault(main, []).append((position, catalogue.channels[channels[spec.metric]]))
            for main, found in meters.items():
                if len(found) < 2:
                    continue
                found.sort(key=lambda m: (m[0], m[1].index))
                bindings.append(DistrictBinding(len(bindings), rule, found[0][1], found[-1][1], main))
        return cls(bindings, len(catalogue))

    def update(self, batch: Batch) -> ThresholdFindings:
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        entry, row = self._index.expand(batch.channel)
        if entry.size == 0:
            return empty_findings()
        b, role = self._entry_binding[entry], self._entry_role[entry]
        ts = np.asarray(batch.ts, np.int64)[row]
        value = np.asarray(batch.value, np.float64)[row]
        on_time = ts >= self._flow_ts[role, b]  # per meter: the two report on their own phases
        b, role, ts, value = b[on_time], role[on_time], ts[on_time], value[on_time]
        if b.size == 0:
            return empty_findings()
        order = np.lexsort((role, ts, b))
        b, role, ts, value = b[order], role[order], ts[order], value[order]
        first = np.flatnonzero(np.r_[True, b[1:] != b[:-1]])
        lengths = np.diff(np.r_[first, b.size])
        rank = np.arange(b.size) - np.repeat(first, lengths)
        streams, stamps, stats = [], [], []
        for r in range(int(lengths.max())):
            pick = np.flatnonzero(rank == r)
            stat = self._round(b[pick], role[pick], ts[pick], value[pick])
            streams.append(b[pick])
            stamps.append(ts[pick])
            stats.append(stat)
        return self._machine.update(np.concatenate(streams), np.concatenate(stamps), np.concatenate(stats))

    def _round(self, b: np.ndarray, role: np.ndarray, ts: np.ndarray, value: np.ndarray) -> np.ndarray:
        """One meter reading per district: the leak flow (NaN until paired and warmed up)."""
        self._flow[role, b] = value
        self._flow_ts[role, b] = ts
        inflow, outflow = self._flow[_IN, b], self._flow[_OUT, b]
        paired = (np.abs(self._flow_ts[_IN, b] - self._flow_ts[_OUT, b]) <= self._stale_ms[b]) & (outflow > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            observed = inflow / outflow
        leak = inflow - self.ratio[b] * outflow
        warm = self.learned[b] >= self._warmup[b]
        normal = paired & (~warm | ((leak < self._lowest[b]) & (self._machine.level()[b] == 0)))
        # Warm-up: a running mean; afterwards an exponentially weighted one.
        weight = np.where(warm, self._learn[b], 1.0 / (self.learned[b] + 1))
        learned = np.where(np.isnan(self.ratio[b]), observed, self.ratio[b] + weight * (observed - self.ratio[b]))
        self.ratio[b] = np.where(normal, learned, self.ratio[b])
        self.learned[b] += normal
        stat = np.where(paired & warm, leak, np.nan)
        self.leak_flow[b] = np.where(paired & warm, leak, self.leak_flow[b])
        return stat

    # -- Detector protocol -----------------------------------------------------------------------
    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        self._machine.restore(binding, level, started_at, last_ts)

    def details(self, binding: int) -> dict:
        return {"kind": "mass_balance", "main": self.bindings[binding].main,
                "inflow": _rounded(self._flow[_IN, binding]), "outflow": _rounded(self._flow[_OUT, binding]),
                "ratio": _rounded(self.ratio[binding], 4), "leak_flow": _rounded(self.leak_flow[binding])}

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        """`District of main WM-04-DN800 loses 310 m3/h: inflow 812, outflow 402 x 1.25 usual
        ratio (leak or burst inside) >= orange 200`."""
        b = self.bindings[binding]
        unit = b.channel.unit
        lost = f"{format_number(value)} {unit}"
        if level_after == 0:
            return f"District of main {b.main}: unaccounted flow {lost} back below {level_name(level_before)} " \
                   f"{format_number(limit)} (cleared)"
        return (f"District of main {b.main} loses {lost}: inflow {format_number(float(self._flow[_IN, binding]))}, "
                f"outflow {format_number(float(self._flow[_OUT, binding]))} x usual ratio "
                f"{float(self.ratio[binding]):.3g} (leak or burst inside) >= {level_name(level_after)} "
                f"{format_number(limit)}")


def _rounded(value: float, digits: int = 1) -> float | None:
    return round(float(value), digits) if math.isfinite(value) else None

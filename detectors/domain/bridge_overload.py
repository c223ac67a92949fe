"""Span overload: several strain / deflection sensors of one span loaded together.

A single gauge past its design value may be a faulty gauge or a truck right above it; an
overload (a cluster of heavy vehicles, the Hefei case of mixer trucks) loads the whole span,
so its gauges and its deflection rise together (DOMAIN.md). For every sensor channel the
detector learns a slow baseline (dead load and temperature: exponential smoothing with time
constant `baseline`, frozen while its span is loaded) and expresses each reading as the share
of the design margin the live load uses:

    share = (value - baseline) / (design - baseline)

The span's statistic is the `sensors`-th highest share among its channels read within the last
`window` seconds: the share that at least that many sensors reach together. It feeds a
LevelMachine; one alert per span (asset), reported on the span's first matched sensor.
A whole batch is evaluated at once (each span's gauges found by binary search); baselines move
once per batch, which for the slow dead load and temperature is no loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from detectors.level_machine import LevelMachine
from detectors.threshold import Binding, ThresholdFindings, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule, Threshold
from lifeline.domain_rules.bridge import Overload
from lifeline.levels import level_name

_NO_TS = np.iinfo(np.int64).min
INNOVATION_CAP = 0.1  # a reading moves a baseline by at most 10 % of its design margin (spikes)


class OverloadDetector:
    """Span load levels for every (bridge_overload rule, span) binding."""

    kind = "bridge_overload"

    def __init__(self, bindings: Sequence[Binding], members: Sequence[Sequence[Channel]], n_channels: int):
        self.bindings = tuple(bindings)
        n = len(self.bindings)
        specs: list[Overload] = [b.rule.spec for b in self.bindings]
        self._specs = specs
        self.members = tuple(tuple(m) for m in members)
        width = max((len(m) for m in self.members), default=1)
        slots = [(i, c) for i, group in enumerate(self.members) for c in group]
        #: (slots,) one slot per (binding, member channel)
        self._slot_binding = np.array([i for i, _ in slots], np.int64)
        self._slot_channel = np.array([c.index for _, c in slots], np.int64)
        self._design = np.array([specs[i].design[c.metric] for i, c in slots], np.float64)
        self._tau_s = np.array([specs[i].baseline_s for i, _ in slots], np.float64)
        self._baseline = np.full(len(slots), np.nan)
        self._share = np.zeros(len(slots))
        self._seen = np.full(len(slots), _NO_TS, np.int64)  # ts of the slot's latest reading
        #: (bindings, width) slots of each span, -1 padding
        self._span_slots = np.full((n, width), -1, np.int64)
        start = 0
        for i, group in enumerate(self.members):
            self._span_slots[i, :len(group)] = np.arange(start, start + len(group))
            start += len(group)
        # channel -> slots (CSR), a channel may belong to several rules' spans
        order = np.argsort(self._slot_channel, kind="stable")
        self._by_channel = order
        self._offsets = np.zeros(n_channels + 1, np.int64)
        np.cumsum(np.bincount(self._slot_channel, minlength=n_channels), out=self._offsets[1:])
        self._n_channels = n_channels
        self._k = np.array([s.sensors for s in specs], np.int64)
        self._window_ms = np.array([s.window_s * 1000.0 for s in specs])
        self._quiet_below = np.array([min(s.levels.values()) * s.clear for s in specs]) if n else np.zeros(0)
        self.statistic = np.zeros(n)
        #: (bindings, width) each gauge's share at the binding's latest level change (its message)
        self._at_change = np.zeros((n, width))
        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings],
                                     [Threshold("above", dict(s.levels), s.clear, s.hold_s) for s in specs])

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> OverloadDetector:
        """A binding per (rule, span) with at least `sensors` matched channels of design metrics."""
        bindings: list[Binding] = []
        members: list[list[Channel]] = []
        for rule in rules:
            if rule.kind != "bridge_overload":
                continue
            spec: Overload = rule.spec
            spans: dict[str, list[Channel]] = {}
            for channel in catalogue.channels:
                sensor = channel.sensor
                if channel.metric in spec.design and rule.matches(sensor, catalogue.owner_of(sensor), channel.metric):
                    spans.setdefault(sensor.asset, []).append(channel)
            for group in spans.values():
                if len({c.sensor.id for c in group}) < spec.sensors:
                    continue  # a span with fewer sensors can never show them loaded together
                bindings.append(Binding(len(bindings), rule, replace(group[0], metric="overload", unit="")))
                members.append(group)
        return cls(bindings, members, len(catalogue))

    # -- evaluation ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> ThresholdFindings:
        """Every reading of the batch at once: shares against the baselines as they were at the
        start of the batch, each span's statistic at each of its readings by binary search for
        every gauge's latest reading, then one baseline step per gauge from its quiet readings."""
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        channel = np.asarray(batch.channel, np.int64)
        known = (channel >= 0) & (channel < self._n_channels)
        channel = np.where(known, channel, 0)
        per_row = np.where(known, np.diff(self._offsets)[channel], 0)
        row = np.repeat(np.arange(channel.size), per_row)
        if row.size == 0:
            return empty_findings()
        within = np.arange(row.size) - np.repeat(np.cumsum(per_row) - per_row, per_row)
        slot = self._by_channel[self._offsets[channel[row]] + within]
        ts, value = np.asarray(batch.ts, np.int64)[row], np.asarray(batch.value, np.float64)[row]
        on_time = ts >= self._seen[slot]  # a gauge's late reading is archived, not evaluated
        slot, ts, value = slot[on_time], ts[on_time], value[on_time]
        if slot.size == 0:
            return empty_findings()

        order = np.lexsort((ts, slot))
        slot, ts, value = slot[order], ts[order], value[order]
        first = np.r_[True, slot[1:] != slot[:-1]]
        fresh = np.isnan(self._baseline[slot[first]])
        self._baseline[slot[first][fresh]] = value[first][fresh]  # a new gauge's first reading
        base = self._baseline[slot]
        margin = np.maximum(self._design[slot] - base, 1e-9 * np.abs(self._design[slot]) + 1e-12)
        share = np.maximum((value - base) / margin, 0.0)

        # the touched spans' gauges: their latest earlier reading and this batch's, by (slot, ts)
        b = self._slot_binding[slot]
        spans_slots = self._span_slots[np.unique(b)].ravel()
        spans_slots = spans_slots[spans_slots >= 0]
        had = spans_slots[self._seen[spans_slots] > _NO_TS]
        all_slot = np.r_[had, slot]
        all_ts = np.r_[self._seen[had], ts]
        all_share = np.r_[self._share[had], share]
        merged = np.lexsort((all_ts, all_slot))
        all_slot, all_ts, all_share = all_slot[merged], all_ts[merged], all_share[merged]
        origin = int(all_ts.min())
        span = int(all_ts.max()) - origin + 2
        keys = all_slot * span + (all_ts - origin)

        members = self._span_slots[b]  # (k, width)
        present = members >= 0
        query = np.maximum(members, 0) * span + (ts - origin)[:, None]
        latest = np.searchsorted(keys, query, side="right") - 1
        safe = np.maximum(latest, 0)
        recent = present & (latest >= 0) & (all_slot[safe] == members) & \
            (all_ts[safe] >= (ts - self._window_ms[b])[:, None])
        shares = np.where(recent, all_share[safe], -np.inf)
        ranked = -np.sort(-shares, axis=1)
        kth = ranked[np.arange(b.size), np.minimum(self._k[b], ranked.shape[1]) - 1]
        statistic = np.where(np.isfinite(kth), kth, 0.0)

        # baselines follow dead load and temperature from the quiet readings, never the load
        quiet = statistic < self._quiet_below[b]
        if quiet.any():
            q_slot = slot[quiet]
            count = np.bincount(q_slot, minlength=self._baseline.size)
            mean = np.bincount(q_slot, weights=value[quiet], minlength=self._baseline.size)
            last_quiet = np.full(self._baseline.size, _NO_TS, np.int64)
            np.maximum.at(last_quiet, q_slot, ts[quiet])
            learnt = np.flatnonzero(count)
            before = np.where(self._seen[learnt] > _NO_TS, self._seen[learnt], last_quiet[learnt])
            weight = 1.0 - np.exp(-(last_quiet[learnt] - before) / 1000.0 / self._tau_s[learnt])
            cap = INNOVATION_CAP * np.abs(self._design[learnt] - self._baseline[learnt])
            step = np.clip(mean[learnt] / count[learnt] - self._baseline[learnt], -cap, cap)
            self._baseline[learnt] += weight * step
        last = np.r_[slot[1:] != slot[:-1], True]
        self._seen[slot[last]] = ts[last]
        self._share[slot[last]] = share[last]
        self.statistic[b] = statistic

        found = self._machine.update(b, ts, statistic)
        for binding, t in zip(found.binding.tolist(), found.ts.tolist(), strict=True):  # a few per batch
            at = np.flatnonzero((b == binding) & (ts == t))[-1]
            self._at_change[binding] = np.where(np.isfinite(shares[at]), shares[at], 0.0)
        return found

    # -- Detector protocol -----------------------------------------------------------------------
    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        self._machine.restore(binding, level, started_at, last_ts)

    def _loaded(self, binding: int) -> list[tuple[Channel, float]]:
        """(channel, share) of the span's gauges at its latest level change, most loaded first."""
        pairs = [(channel, float(self._at_change[binding, j])) for j, channel in enumerate(self.members[binding])]
        return sorted(pairs, key=lambda p: -p[1])

    def details(self, binding: int) -> dict:
        return {"kind": "overload", "span": self.bindings[binding].channel.sensor.asset,
                "loaded": [{"sensor": c.sensor.id, "metric": c.metric, "share_pct": round(100 * share, 1)}
                           for c, share in self._loaded(binding)]}

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        sensor = self.bindings[binding].channel.sensor
        spec = self._specs[binding]
        where = f"span {sensor.asset}" + (f" of {sensor.extra['structure']}" if sensor.extra.get("structure") else "")
        if level_after == 0:
            return f"{where}: load back below {100 * limit:.0f} % of the design margin (cleared)"
        together = [f"{c.sensor.id} {c.metric} {100 * s:.0f} %" for c, s in self._loaded(binding) if s >= value]
        return (f"{where}: {len(together)} sensor{'s' if len(together) != 1 else ''} loaded together to >= "
                f"{100 * value:.0f} % of their design margin "
                f"(>= {level_name(level_after)} {100 * limit:.0f} % on {spec.sensors} sensors): overload, e.g. "
                f"clustered heavy vehicles; restrict traffic on the span ({', '.join(together)})")

"""Domain detectors of the gas lifeline: leaks of gas mains into manholes.

`GasLeakDetector` (rule key `gas_leak`) decides, per manhole, how likely its CH4 comes from a
leaking main rather than from sewer biogas, and reports the *leak gas*, likelihood x CH4 in
%LEL, against the rule's levels. The likelihood is a logistic sum of log-odds, one term per
piece of evidence (DOMAIN.md, Gas; weights in `lifeline.domain_rules.gas.DEFAULT_WEIGHTS`):

* ethane: natural gas carries 2-6 % C2H6, biogas none. C2H6 >= `ethane_ratio` x CH4 (by volume,
  1 %LEL CH4 = 500 ppm) and >= `ethane_min` ppm adds `ethane`; an ethane channel showing none
  adds `no_ethane` (strongly negative: the biogas trap);
* level: CH4 in units of `level_ref`, at most twice;
* fluctuation: standard deviation of successive CH4 changes in the window over
  `fluctuation_ref` (leak gas comes in puffs, biogas is steady), at most once;
* trend: least-squares CH4 slope per minute over `trend_ref`, clipped to [0, 1];
* temperature tracking: minus the correlation of CH4 with the manhole temperature, when the
  temperature moved enough (>= 0.3 degC) to tell and the CH4 is steady;
* corroboration: each of the `neighbours` manholes either side on the same `main` whose own
  reading (no older than `stale`) shows ethane or CH4 risen by `rise` above its window minimum.

Of neighbouring manholes with leak gas, only the one with the most raises the alert (one alert
per leak, on the most likely manhole); its `location` is the leak-gas-weighted centroid of it
and its corroborating neighbours along the main. Levels, hysteresis and hold come from a
LevelMachine. State is per manhole in numpy arrays; a batch is evaluated in rounds (one
reading of each manhole per round), so the Python loop runs over rounds, not readings.
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
from lifeline.domain_rules.gas import GasLeak
from lifeline.levels import level_name

PPM_PER_LEL = 500.0  # methane: LEL 5 % vol, so 1 %LEL = 500 ppm
_CAPACITY = 32  # readings kept per manhole for the window statistics
_MIN_TEMP_SPREAD = 0.3  # degC: below this, whether CH4 follows temperature cannot be told
_NO_TS = np.iinfo(np.int64).min
_CH4, _ETHANE, _TEMP = 0, 1, 2


@dataclass(frozen=True)
class ManholeBinding:
    """A gas_leak rule on one manhole; `channel` is its CH4 channel, the alert metric `leak`."""

    index: int
    rule: Rule
    channel: Channel
    ethane: int  # channel index, -1 when the sensor has none
    temp: int
    main: str | None
    position_m: float  # along the main, NaN when unknown

    @property
    def metric(self) -> str:
        return "leak"


def leak_log_odds(spec_weights: np.ndarray, ethane: np.ndarray, ch4: np.ndarray, level_ref: np.ndarray,
                  fluctuation: np.ndarray, trend: np.ndarray, tracking: np.ndarray, corroborating: np.ndarray
                  ) -> np.ndarray:
    """Log-odds that a manhole's CH4 comes from a leak.

    spec_weights : (m, 8) float64, columns in DEFAULT_WEIGHTS order (bias, ethane, no_ethane,
        level, fluctuation, trend, neighbour, temperature)
    ethane : (m,) int8, +1 ethane present, -1 ethane channel shows none, 0 unknown
    ch4 : (m,) %LEL; level_ref : (m,) %LEL
    fluctuation, trend : (m,) scores in [0, 1]
    tracking : (m,) correlation of CH4 with temperature in [0, 1] (0 when it cannot be told)
    corroborating : (m,) neighbouring manholes with gas evidence
    """
    w = spec_weights
    return (w[:, 0] + np.where(ethane > 0, w[:, 1], 0.0) + np.where(ethane < 0, w[:, 2], 0.0)
            + w[:, 3] * np.minimum(np.maximum(ch4, 0.0) / level_ref, 2.0) + w[:, 4] * fluctuation
            + w[:, 5] * trend + w[:, 6] * corroborating - w[:, 7] * tracking * (1.0 - fluctuation))


class GasLeakDetector:
    """Leak likelihood, leak gas and location for every (gas_leak rule, manhole) binding."""

    kind = "gas_leak"

    def __init__(self, bindings: Sequence[ManholeBinding], n_channels: int,
                 neighbours: np.ndarray, mains: dict[str, list[tuple[float, float, float]]]):
        """neighbours : (bindings, 2k) intp, neighbouring bindings on the same main, -1 padded;
        mains : main -> [(position_m, lon, lat)] sorted by position (for locating along it)."""
        self.bindings = tuple(bindings)
        n = len(self.bindings)
        specs: list[GasLeak] = [b.rule.spec for b in self.bindings]
        self._neighbours = neighbours
        self._mains = mains
        entry_binding, entry_role, entry_channel = [], [], []
        for b in self.bindings:
            for role, channel in ((_CH4, b.channel.index), (_ETHANE, b.ethane), (_TEMP, b.temp)):
                if channel >= 0:
                    entry_binding.append(b.index)
                    entry_role.append(role)
                    entry_channel.append(channel)
        #: (entries,) binding and role (ch4, ethane, temp) of each (binding, channel) entry
        self._entry_binding = np.array(entry_binding, np.intp)
        self._entry_role = np.array(entry_role, np.int8)
        self._index = BindingIndex(np.array(entry_channel, np.int64), n_channels)
        self._weights = np.array([list(s.weights.values()) for s in specs], np.float64).reshape(n, 8)
        self._window_s = np.array([s.window_s for s in specs])
        self._ratio = np.array([s.ethane_ratio for s in specs])
        self._ethane_min = np.array([s.ethane_min_ppm for s in specs])
        self._level_ref = np.array([s.level_ref for s in specs])
        self._fluct_ref = np.array([s.fluctuation_ref for s in specs])
        self._trend_ref = np.array([s.trend_ref for s in specs])
        self._rise = np.array([s.rise for s in specs])
        self._stale_ms = np.array([s.stale_s * 1000 for s in specs], np.int64)
        self._has_ethane = np.array([b.ethane >= 0 for b in self.bindings], bool)
        #: (bindings, _CAPACITY) ring buffers: reading time (s since _origin_ms), CH4, temperature
        self._t = np.zeros((n, _CAPACITY))
        self._ch4 = np.zeros((n, _CAPACITY))
        self._temp = np.full((n, _CAPACITY), np.nan)
        self._head = np.zeros(n, np.int64)
        self._count = np.zeros(n, np.int64)
        self._origin_ms: int | None = None
        #: newest CH4 reading evaluated, and the latest ethane / temperature readings with their ts
        self._last_ts = np.full(n, _NO_TS, np.int64)
        self._ethane_value = np.full(n, np.nan)
        self._ethane_ts = np.full(n, _NO_TS, np.int64)
        self._temp_value = np.full(n, np.nan)
        #: latest evaluation per manhole: what the alert shows
        self.ch4 = np.full(n, np.nan)
        self.likelihood = np.zeros(n)
        self.leak_gas = np.zeros(n)
        self.ethane_present = np.zeros(n, bool)
        self.evidence = np.zeros(n, bool)  # ethane or a CH4 rise: corroborates a neighbour
        self.corroborating = np.zeros(n, np.int64)
        #: binding -> the evidence at its latest level change (what details and message show)
        self._shown: dict[int, dict] = {}
        #: (binding, leak gas) -> the evidence of that change, for the latest batch's changes
        self._by_row: dict[tuple[int, float], dict] = {}
        thresholds = [Threshold("above", dict(s.levels), s.clear, s.hold_s) for s in specs]
        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings], thresholds)

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> GasLeakDetector:
        """A binding for every manhole whose CH4 channel a gas_leak rule matches; neighbours are
        the manholes of the same rule and `main`, ordered by `seq` (else `position_m`)."""
        bindings: list[ManholeBinding] = []
        for rule in rules:
            if rule.kind != "gas_leak":
                continue
            spec: GasLeak = rule.spec
            for sensor in catalogue.sensors:
                channels = catalogue.channels_of[sensor.id]
                if spec.ch4 not in channels or not rule.matches(sensor, catalogue.owner_of(sensor), spec.ch4):
                    continue
                bindings.append(ManholeBinding(
                    len(bindings), rule, catalogue.channels[channels[spec.ch4]], channels.get(spec.ethane, -1),
                    channels.get(spec.temp, -1), sensor.extra.get("main"), sensor.number("position_m")))
        width = 2 * max((b.rule.spec.neighbours for b in bindings), default=0)
        neighbours = np.full((len(bindings), width), -1, np.intp)
        groups: dict[tuple[str, str], list[ManholeBinding]] = {}
        for b in bindings:
            if b.main:
                groups.setdefault((b.rule.id, b.main), []).append(b)
        mains: dict[str, list[tuple[float, float, float]]] = {}
        for (_, main), members in groups.items():
            members.sort(key=lambda b: (b.channel.sensor.number("seq"), b.position_m, b.index))
            k = members[0].rule.spec.neighbours
            for i, b in enumerate(members):
                near = [m.index for m in members[max(0, i - k):i] + members[i + 1:i + 1 + k]]
                neighbours[b.index, :len(near)] = near
            mains[main] = sorted((b.position_m, b.channel.sensor.location.lon, b.channel.sensor.location.lat)
                                 for b in members if math.isfinite(b.position_m))
        return cls(bindings, len(catalogue), neighbours, mains)

    # -- evaluation ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> ThresholdFindings:
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        self._by_row.clear()
        entry, row = self._index.expand(batch.channel)
        if entry.size == 0:
            return empty_findings()
        b = self._entry_binding[entry]
        role = self._entry_role[entry]
        ts = np.asarray(batch.ts, np.int64)[row]
        value = np.asarray(batch.value, np.float64)[row]
        on_time = ts >= self._last_ts[b]
        if not on_time.all():
            b, role, ts, value = b[on_time], role[on_time], ts[on_time], value[on_time]
            if b.size == 0:
                return empty_findings()
        if self._origin_ms is None:
            self._origin_ms = int(ts.min())
        # One record per (manhole, ts): the CH4 reading with the ethane and temperature taken with it.
        order = np.lexsort((role, ts, b))
        b, role, ts, value = b[order], role[order], ts[order], value[order]
        starts = np.flatnonzero(np.r_[True, (b[1:] != b[:-1]) | (ts[1:] != ts[:-1])])
        record = np.cumsum(np.r_[False, (b[1:] != b[:-1]) | (ts[1:] != ts[:-1])])
        n_rec = starts.size
        fields = np.full((3, n_rec), np.nan)
        fields[role, record] = value
        rec_b, rec_ts = b[starts], ts[starts]
        first = np.flatnonzero(np.r_[True, rec_b[1:] != rec_b[:-1]])
        lengths = np.diff(np.r_[first, n_rec])
        rank = np.arange(n_rec) - np.repeat(first, lengths)
        parts = []
        for r in range(int(lengths.max())):
            pick = np.flatnonzero(rank == r)
            evaluated = self._round(rec_b[pick], rec_ts[pick], fields[:, pick])
            if evaluated is None:
                continue
            found = self._machine.update(*evaluated)
            if len(found):
                # What each change shows is the evidence of its own round, not a later round's.
                for binding, leak in zip(found.binding.tolist(), found.value.tolist(), strict=True):
                    self._shown[binding] = self._by_row[(binding, leak)] = self._evidence(binding)
                parts.append(found)
        return merge_findings(parts)

    def _round(self, b: np.ndarray, ts: np.ndarray, fields: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """One record per manhole of `b` (distinct): remember its ethane and temperature, and
        for those with a CH4 reading return (binding, ts, leak gas after arbitration)."""
        ch4, ethane, temp = fields
        has = ~np.isnan(ethane)
        self._ethane_value[b[has]] = ethane[has]
        self._ethane_ts[b[has]] = ts[has]
        has = ~np.isnan(temp)
        self._temp_value[b[has]] = temp[has]
        keep = ~np.isnan(ch4)
        if not keep.any():
            return None
        b, ts, ch4 = b[keep], ts[keep], ch4[keep]
        self._last_ts[b] = ts
        t = (ts - self._origin_ms) / 1000.0
        slot = self._head[b]
        self._t[b, slot] = t
        self._ch4[b, slot] = ch4
        self._temp[b, slot] = self._temp_value[b]
        self._head[b] = (slot + 1) % _CAPACITY
        self._count[b] = np.minimum(self._count[b] + 1, _CAPACITY)

        # Window, newest first: valid readings form a prefix (the ring is in time order).
        recency = (self._head[b, None] - 1 - np.arange(_CAPACITY)) % _CAPACITY
        rows = b[:, None]
        tw, cw, temp_w = self._t[rows, recency], self._ch4[rows, recency], self._temp[rows, recency]
        valid = (np.arange(_CAPACITY) < self._count[b, None]) & (tw >= (t - self._window_s[b])[:, None])
        n = valid.sum(axis=1)
        fluctuation = _fluctuation(cw, valid) / self._fluct_ref[b]
        slope_min = _slope(tw, cw, valid) * 60.0
        tracking = _correlation(cw, temp_w, valid)
        low = np.where(valid, cw, np.inf).min(axis=1)

        ethane_fresh = (self._ethane_ts[b] >= ts - self._stale_ms[b]) & ~np.isnan(self._ethane_value[b])
        eth = self._ethane_value[b]
        present = ethane_fresh & (eth >= self._ethane_min[b]) & (eth >= self._ratio[b] * ch4 * PPM_PER_LEL)
        signature = np.where(present, 1, np.where(ethane_fresh & self._has_ethane[b], -1, 0)).astype(np.int8)
        self.ethane_present[b] = present
        self.evidence[b] = present | (ch4 - low >= self._rise[b])

        near = self._neighbours[b]
        fresh = (near >= 0) & (self._last_ts[near] >= (ts - self._stale_ms[b])[:, None])
        corroborating = (fresh & self.evidence[near]).sum(axis=1)
        fluct_score = np.minimum(fluctuation, 1.0)
        trend_score = np.clip(slope_min / self._trend_ref[b], 0.0, 1.0)
        logit = leak_log_odds(self._weights[b], signature, ch4, self._level_ref[b], fluct_score,
                              np.where(n >= 3, trend_score, 0.0), tracking, corroborating)
        likelihood = 1.0 / (1.0 + np.exp(-logit))
        leak = likelihood * np.maximum(ch4, 0.0)
        self.ch4[b] = ch4
        self.likelihood[b] = likelihood
        self.leak_gas[b] = leak
        self.corroborating[b] = corroborating
        # One alert per leak: a manhole whose fresh neighbour has more leak gas stands down.
        rival = np.where(fresh, self.leak_gas[near], 0.0).max(axis=1, initial=0.0)
        return b, ts, np.where(leak >= rival, leak, 0.0)

    # -- Detector protocol -----------------------------------------------------------------------
    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        self._machine.restore(binding, level, started_at, last_ts)

    def location(self, binding: int) -> tuple[float, float, float] | None:
        """(position_m, lon, lat) of the likely leak: the leak-gas-weighted centroid of the manhole
        and its fresh neighbours with gas evidence, along the main; None off a known main."""
        b = self.bindings[binding]
        points = self._mains.get(b.main or "")
        if not points or not math.isfinite(b.position_m):
            return None
        near = [int(j) for j in self._neighbours[binding] if j >= 0 and self.evidence[j]
                and self._last_ts[j] >= self._last_ts[binding] - self._stale_ms[binding]
                and math.isfinite(self.bindings[j].position_m)]
        weights = np.array([self.leak_gas[binding], *(self.leak_gas[j] for j in near)])
        positions = np.array([b.position_m, *(self.bindings[j].position_m for j in near)])
        if weights.sum() <= 0:
            weights = np.r_[1.0, np.zeros(len(near))]
        x = float(np.dot(weights, positions) / weights.sum())
        along = np.array([p[0] for p in points])
        lon = float(np.interp(x, along, [p[1] for p in points]))
        lat = float(np.interp(x, along, [p[2] for p in points]))
        return x, lon, lat

    def _evidence(self, binding: int) -> dict:
        body: dict = {"kind": "gas_leak", "likelihood": round(float(self.likelihood[binding]), 3),
                      "ch4": round(float(self.ch4[binding]), 2), "ethane": bool(self.ethane_present[binding]),
                      "corroborating": int(self.corroborating[binding])}
        where = self.location(binding)
        if where is not None:
            x, lon, lat = where
            body["location"] = {"lon": round(lon, 7), "lat": round(lat, 7)}
            body["position_m"] = round(x, 1)
            body["main"] = self.bindings[binding].main
        return body

    def details(self, binding: int) -> dict:
        """kind, likelihood, ch4, ethane, corroborating and (on a known main) location, position_m, main."""
        return dict(self._shown.get(binding) or self._evidence(binding))

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        """`CH4 37.5 %LEL rising in 3 manholes along main GM-03-DN300, ethane present: likely gas
        leak near MH-03-04 (likelihood 0.97; leak gas 36.4 %LEL >= red 20)`."""
        b = self.bindings[binding]
        shown = self._by_row.get((binding, value)) or self._shown.get(binding) or self._evidence(binding)
        unit = b.channel.unit or "%LEL"
        ch4 = f"CH4 {format_number(shown['ch4'])} {unit}"
        asset = b.channel.sensor.asset
        leak = f"leak gas {format_number(value)} {unit}"
        if level_after == 0:
            return f"{ch4} at {asset}: {leak} back below {level_name(level_before)} {format_number(limit)} (cleared)"
        manholes = 1 + shown["corroborating"]
        where = f"in {manholes} manholes along main {b.main}" if manholes > 1 and b.main else f"at {asset}"
        gas = "ethane present" if shown["ethane"] else "no ethane" if self._has_ethane[binding] else "no ethane channel"
        trend = "rising" if level_after > level_before else "easing"
        return (f"{ch4} {trend} {where}, {gas}: likely gas leak near {asset} "
                f"(likelihood {shown['likelihood']:.2f}; {leak} >= {level_name(level_after)} {format_number(limit)})")


def merge_findings(parts: list[ThresholdFindings]) -> ThresholdFindings:
    """Findings of successive rounds as one, in (binding, ts) order."""
    if not parts:
        return empty_findings()
    if len(parts) == 1:
        return parts[0]
    names = ("binding", "ts", "level_before", "level_after", "value", "limit", "started_at")
    merged = {name: np.concatenate([getattr(p, name) for p in parts]) for name in names}
    order = np.argsort(merged["binding"], kind="stable")  # rounds are in time order already
    return ThresholdFindings(**{name: merged[name][order] for name in names})


def _fluctuation(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(m,) standard deviation of successive changes over the valid prefix of each row (0 if < 2)."""
    both = valid[:, 1:] & valid[:, :-1]
    diffs = np.where(both, values[:, :-1] - values[:, 1:], 0.0)
    k = both.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = diffs.sum(axis=1) / k
        var = np.where(both, (diffs - mean[:, None]) ** 2, 0.0).sum(axis=1) / k
    return np.where(k >= 2, np.sqrt(var), 0.0)


def _slope(t: np.ndarray, values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(m,) least-squares slope per second over the valid readings of each row (0 if undefined)."""
    w = valid.astype(np.float64)
    n = np.maximum(w.sum(axis=1), 1.0)
    dt = (t - (t * w).sum(axis=1)[:, None] / n[:, None]) * w
    dv = (values - (values * w).sum(axis=1)[:, None] / n[:, None]) * w
    stt = (dt * dt).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(stt > 0, (dt * dv).sum(axis=1) / stt, 0.0)


def _correlation(values: np.ndarray, temp: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(m,) correlation of CH4 with temperature in [0, 1] over valid readings with a temperature;
    0 when fewer than 4 or the temperature spread is under _MIN_TEMP_SPREAD."""
    ok = valid & ~np.isnan(temp)
    w = ok.astype(np.float64)
    n = w.sum(axis=1)
    safe_n = np.maximum(n, 1.0)
    tz = np.where(ok, temp, 0.0)
    dv = (values - (values * w).sum(axis=1)[:, None] / safe_n[:, None]) * w
    dtemp = (tz - (tz * w).sum(axis=1)[:, None] / safe_n[:, None]) * w
    spread = np.where(ok, tz, -np.inf).max(axis=1) - np.where(ok, tz, np.inf).min(axis=1)
    svv, stt = (dv * dv).sum(axis=1), (dtemp * dtemp).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = (dv * dtemp).sum(axis=1) / np.sqrt(svv * stt)
    testable = (n >= 4) & (spread >= _MIN_TEMP_SPREAD) & (svv > 0) & (stt > 0)
    return np.where(testable, np.clip(corr, 0.0, 1.0), 0.0)


#: detector key -> Detector.from_rules(catalogue, rules)
BUILDERS = {"gas_leak": GasLeakDetector.from_rules}

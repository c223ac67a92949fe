"""Vectorised multi-level threshold detector with hysteresis and hold time (CONTRACT §2, §3).

One *binding* is one threshold rule applied to one channel; all state lives in numpy arrays
indexed by binding, and `ThresholdDetector.update` evaluates a whole `Batch` with array
operations. `detectors.threshold_reference` implements exactly the same semantics one reading
at a time and is the readable specification; the tests check that the two agree.

Semantics, per binding (levels 1..4 = blue, yellow, orange, red; a rule defines some of them):

* Direction "above": a reading *raises* level L when ``value >= limit[L]``; "below": when
  ``value <= limit[L]``.
* Each defined level has a clear value (hysteresis): for "above"
  ``limit - (1 - clear) * |limit|``, for "below" ``limit + |limit| * (1/clear - 1)``. A value
  *holds* level L when ``value >= clear_value[L]`` ("above") or ``value <= clear_value[L]``
  ("below").
* State: the confirmed level ``C`` (0 = none) and, for each L in 1..4, ``since[L]``: the
  timestamp of the first reading of the current unbroken run of readings whose candidate level
  is >= L (or none).
* For each reading ``(v, t)``: ``candidate = max(raise(v), min(band(v), C))`` where raise/band
  are the highest defined level that ``v`` raises/holds (0 if none), so a value in the
  hysteresis band keeps the current level but cannot raise one. ``since`` is updated, then the
  new level is the highest defined ``L <= candidate`` with ``L <= C`` or
  ``t - since[L] >= hold_ms``. Lowering is immediate; only raising waits for the hold.
* A change of level is a finding row; its ``started_at`` is ``since[lowest defined level]``
  (for a clearing row, the value it had before the clearing reading).
* ``hold_ms = round(rule.threshold.hold_s * 1000)``: timestamps are whole milliseconds.

Ordering: detectors see each channel's readings in timestamp order; a reading older than the
newest one already evaluated for the channel is archived but not evaluated. Precisely: within
a batch the readings of a binding are evaluated in (ts, batch row) order, and a reading whose
ts is older than the binding's ``last_ts`` (the newest ts evaluated in an earlier batch) is
skipped; a reading with ts equal to ``last_ts`` is evaluated.

Vectorisation: the rows of a batch are expanded to bindings (channel -> bindings through CSR
offsets, or a direct map when no channel has several bindings), sorted stably by
(binding, ts) and processed in *rounds*: round k evaluates the k-th reading of every binding
that has at least k + 1 readings, for all those bindings at once. The number of Python
iterations is therefore the largest number of readings any one binding has in the batch, not
the number of readings. When every binding has at most one reading the batch is a single
round and needs no (binding, ts) sort at all. Work arrays inside a round are level-major,
shape (4, m), because numpy is much faster on four long rows than on m rows of four.

Most readings are *quiet*: their binding is at level 0 with no run in progress and they raise
no level, so they change nothing. A round evaluates only the others, and with several readings
per binding the bindings quiet throughout the batch are set aside before the sort. Parameters
are kept per distinct threshold (a rule's bindings share one row), state per binding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors.batching import stable_argsort
from detectors.formatting import format_number
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule
from lifeline.levels import LEVEL_NUMBER, LEVELS, level_name

#: `since` value meaning "no run in progress". The largest int64 is chosen so that the hold
#: test ``since <= t - hold_ms`` is false for it without a separate mask.
NO_SINCE = np.iinfo(np.int64).max
#: `last_ts` of a binding that has evaluated nothing yet: no reading is late.
NO_LAST_TS = np.iinfo(np.int64).min

_N_LEVELS = len(LEVELS)
#: (4, 1) int8 - level number of each row of the level-major (4, m) work arrays.
_LEVEL = np.arange(1, _N_LEVELS + 1, dtype=np.int8)[:, None]


@dataclass(frozen=True, slots=True)
class Binding:
    """One rule applied to one channel; `index` is its position in `ThresholdDetector.bindings`."""

    index: int
    rule: Rule
    channel: Channel

    @property
    def metric(self) -> str:
        """The alert key's metric (CONTRACT §5: one open alert per rule, sensor, metric)."""
        return self.channel.metric


@dataclass(frozen=True)
class ThresholdFindings:
    """Level changes, one row per change, in (binding, ts) order (ties in evaluation order).

    Attributes
    ----------
    binding : (m,) int32
        Binding index.
    ts : (m,) int64
        Epoch ms of the reading that caused the change.
    level_before, level_after : (m,) int8
        Confirmed level before and after the reading, 0 (none) .. 4 (red).
    value : (m,) float64
        The reading's value, in the channel's unit.
    limit : (m,) float64
        Limit of `level_after`, or of `level_before` when `level_after` is 0.
    started_at : (m,) int64
        Epoch ms at which the current condition began (the first reading of the unbroken run at
        or above the rule's lowest level); for a clearing row, that of the condition that ended.
    """

    binding: np.ndarray
    ts: np.ndarray
    level_before: np.ndarray
    level_after: np.ndarray
    value: np.ndarray
    limit: np.ndarray
    started_at: np.ndarray

    def __len__(self) -> int:
        return int(self.binding.shape[0])


def empty_findings() -> ThresholdFindings:
    """Findings with no rows, with the documented dtypes."""
    return ThresholdFindings(
        binding=np.empty(0, np.int32),
        ts=np.empty(0, np.int64),
        level_before=np.empty(0, np.int8),
        level_after=np.empty(0, np.int8),
        value=np.empty(0, np.float64),
        limit=np.empty(0, np.float64),
        started_at=np.empty(0, np.int64),
    )




def hold_ms(rule: Rule) -> int:
    """The rule's hold time in whole milliseconds."""
    return int(round(rule.threshold.hold_s * 1000))


def bind_rules(catalogue: Catalogue, rules: Sequence[Rule], kind: str = "threshold") -> tuple[Binding, ...]:
    """Every (rule, channel) pair for the rules of `kind`, rule-major, channels in catalogue order."""
    bindings: list[Binding] = []
    for rule in rules:
        if rule.kind != kind:
            continue
        for channel in catalogue.channels:
            sensor = channel.sensor
            if rule.matches(sensor, catalogue.owner_of(sensor), channel.metric):
                bindings.append(Binding(len(bindings), rule, channel))
    return tuple(bindings)


class ThresholdDetector:
    """Threshold state of every binding, updated a batch at a time.

    Parameters
    ----------
    bindings : sequence of Binding
        ``bindings[i].index`` must be ``i``.
    n_channels : int
        Number of catalogue channels; batch rows with a channel outside ``0..n_channels-1`` or
        without a binding are ignored.
    """

    def __init__(self, bindings: Sequence[Binding], n_channels: int):
        self.bindings: tuple[Binding, ...] = tuple(bindings)
        n = len(self.bindings)
        self.n_channels = int(n_channels)
        # Bindings are many and rules few: the parameters live in tables with one row per
        # distinct threshold (a "parameter set"; bindings of one rule share it), and each binding
        # holds only the number of its row. That keeps the state near 50 bytes per binding.
        sets: dict[tuple, int] = {}
        rule_of = np.zeros(n, np.int32)
        channel_of = np.zeros(n, np.int32)
        for i, binding in enumerate(self.bindings):
            if binding.index != i:
                raise ValueError(f"binding at position {i} has index {binding.index}")
            if not 0 <= binding.channel.index < self.n_channels:
                raise ValueError(f"binding {i}: channel {binding.channel.index} outside 0..{self.n_channels - 1}")
            threshold = binding.rule.threshold
            if threshold.direction not in ("above", "below"):
                raise ValueError(f"binding {i}: unknown direction {threshold.direction!r}")
            if not threshold.levels:
                raise ValueError(f"binding {i}: rule {binding.rule.id!r} defines no level")
            key = (threshold.direction, tuple(threshold.levels.items()), threshold.clear, hold_ms(binding.rule))
            rule_of[i] = sets.setdefault(key, len(sets))
            channel_of[i] = binding.channel.index
        k = len(sets)
        limits = np.full((k, _N_LEVELS), np.nan)
        above = np.ones(k, bool)
        clear = np.ones(k)
        hold = np.zeros(k, np.int64)
        for (direction, levels, clear_factor, hold_time), row in sets.items():
            for colour, limit in levels:
                limits[row, LEVEL_NUMBER[colour] - 1] = limit
            above[row] = direction == "above"
            clear[row] = clear_factor
            hold[row] = hold_time
        # Same operations in the same order as the scalar reference, so clear values are
        # bit-identical to it (NaN stays NaN for undefined levels).
        margin = np.abs(limits)
        clear_value = np.where(above[:, None], limits - (1.0 - clear)[:, None] * margin,
                               limits + margin * (1.0 / clear - 1.0)[:, None])
        sign = np.where(above, 1.0, -1.0)

        #: (bindings,) int32 - parameter set (row of the tables below) of each binding.
        self._rule = rule_of
        #: (sets, 4) float64 - limit of each level, NaN where the rule does not define it.
        self._limit = limits
        #: (sets, 4) float64 - clear value of each level, NaN where undefined.
        self._clear_value = clear_value
        #: (sets,) float64 - +1 for "above", -1 for "below".
        self._sign = sign
        #: (sets,) int64 - hold time, ms.
        self._hold_ms = hold
        #: (sets, 4) bool - which levels the rule defines.
        self._defined = ~np.isnan(limits)
        #: (sets,) intp - column of the lowest defined level (0 = blue).
        self._lowest = np.argmax(self._defined, axis=1) if k else np.zeros(0, np.intp)
        #: (8, sets) float64 - sign * limit in rows 0..3, sign * clear value in rows 4..7.
        #: Both directions become ">=" tests on sign * value; negation is exact in IEEE
        #: arithmetic, so ``-v >= -limit`` decides exactly as ``v <= limit``. NaN compares
        #: false (undefined level). Level-major, like all per-round work arrays: numpy runs
        #: (4, m) operations as four long loops but (m, 4) ones as m loops of length 4.
        self._signed = np.ascontiguousarray((np.concatenate([limits, clear_value], axis=1) * sign[:, None]).T)
        #: (sets,) float64 - the lowest signed limit: a signed value below it raises no level.
        self._raise_floor = np.nanmin(self._signed[:_N_LEVELS], axis=0) if k else np.zeros(0)

        #: (bindings,) int8 - confirmed level.
        self._level = np.zeros(n, np.int8)
        #: (bindings, 4) int64 - start (epoch ms) of the current run at or above each level,
        #: NO_SINCE when none. Stored level-major (Fortran order): ``_since.T`` is C-contiguous.
        self._since = np.full((_N_LEVELS, n), NO_SINCE, np.int64).T
        #: (bindings,) int64 - newest ts evaluated in an earlier batch, epoch ms.
        self._last_ts = np.full(n, NO_LAST_TS, np.int64)

        per_channel = np.bincount(channel_of, minlength=self.n_channels)
        #: (channels,) int32 - the one binding of each channel (-1 none), when no channel has
        #: several: the common case, in which expanding a batch is one gather. Else None and
        #: the CSR map below is used.
        self._direct: np.ndarray | None = None
        #: CSR map channel -> bindings: those of channel c are _csr[_offsets[c]:_offsets[c+1]];
        #: the stable sort keeps rule order within a channel. Only when `_direct` is None.
        self._offsets: np.ndarray | None = None
        self._csr: np.ndarray | None = None
        if n == 0 or per_channel.max() <= 1:
            self._direct = np.full(self.n_channels, -1, np.int32)
            self._direct[channel_of] = np.arange(n, dtype=np.int32)
        else:
            self._offsets = np.zeros(self.n_channels + 1, np.int64)
            np.cumsum(per_channel, out=self._offsets[1:])
            self._csr = np.argsort(channel_of, kind="stable")

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> ThresholdDetector:
        """A detector with a binding for every (rule, channel) the rule matches (see `bind_rules`)."""
        return cls(bind_rules(catalogue, rules), len(catalogue))

    def level(self) -> np.ndarray:
        """(bindings,) int8 - current confirmed level of each binding (a copy)."""
        return self._level.copy()

    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        """Put a binding back into a confirmed level after a restart.

        Parameters
        ----------
        binding : int
            Binding index.
        level : int
            0, or a level the binding's rule defines.
        started_at : int
            Epoch ms at which the condition began (``raised_at`` of the alert); the run at
            every level up to `level` is taken to have started then. Ignored when `level` is 0.
        last_ts : int
            Epoch ms of the newest reading already evaluated (``updated_at`` of the alert);
            older readings will be late. Must be >= `started_at` when `level` > 0.
        """
        if not 0 <= binding < len(self.bindings):
            raise IndexError(f"binding {binding} outside 0..{len(self.bindings) - 1}")
        if level != 0 and not (1 <= level <= _N_LEVELS and self._defined[self._rule[binding], level - 1]):
            raise ValueError(f"level {level} is not defined by rule {self.bindings[binding].rule.id!r}")
        if level != 0 and started_at > last_ts:
            raise ValueError(f"started_at {started_at} is after last_ts {last_ts}")
        self._level[binding] = level
        self._since[binding] = NO_SINCE
        self._since[binding, :level] = started_at
        self._last_ts[binding] = last_ts

    # -- update -------------------------------------------------------------------------------

    kind = "threshold"

    def details(self, binding: int) -> dict:
        return {"kind": "threshold"}

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        """`ch4 21.5 %LEL >= orange 20`, or for a clearing `... back below blue 5 (cleared)`."""
        b = self.bindings[binding]
        above = b.rule.threshold.direction == "above"
        unit = f" {b.channel.unit}" if b.channel.unit else ""
        shown = f"{b.channel.metric} {format_number(value)}{unit}"
        if level_after == 0:
            return f"{shown} back {'below' if above else 'above'} {level_name(level_before)} " \
                   f"{format_number(limit)} (cleared)"
        return f"{shown} {'>=' if above else '<='} {level_name(level_after)} {format_number(limit)}"

    def update(self, batch: Batch) -> ThresholdFindings:
        """Evaluate a batch; returns the level changes it caused (see the module docstring)."""
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        binding, row = self._expand(np.asarray(batch.channel))
        ts, value = np.asarray(batch.ts, np.int64), np.asarray(batch.value, np.float64)
        if row is not None:
            ts, value = ts[row], value[row]
        on_time = ts >= self._last_ts[binding]
        if not on_time.all():
            binding, ts, value = binding[on_time], ts[on_time], value[on_time]
        if binding.size == 0:
            return empty_findings()

        counts = np.bincount(binding, minlength=len(self.bindings))
        if counts.max() <= 1:
            # At most one reading per binding: the whole batch is a single round. It is
            # evaluated in batch order (most of its readings are quiet, skipped at once by
            # `_round`) and the few level changes are then put in binding order.
            self._last_ts[binding] = ts
            found = self._round(binding, ts, value)
            return empty_findings() if found is None else _take(found, np.argsort(found.binding, kind="stable"))

        # Several readings per binding need the (binding, ts) sort below, which costs more than
        # evaluating them. Set aside the quiet bindings first: at level 0, with no run in
        # progress and no reading in the batch that raises a level (see `_round`), nothing
        # happens to them but their last_ts.
        rule = self._rule[binding]
        live = (self._level > 0) | (self._since.T[0] != NO_SINCE)
        live[binding[value * self._sign[rule] >= self._raise_floor[rule]]] = True
        keep = live[binding]
        if not keep.all():
            quiet = ~keep
            np.maximum.at(self._last_ts, binding[quiet], ts[quiet])
            binding, ts, value = binding[keep], ts[keep], value[keep]
            if binding.size == 0:
                return empty_findings()
        order = stable_argsort(binding, len(self.bindings))
        sorted_binding, sorted_ts = binding[order], ts[order]
        same = sorted_binding[1:] == sorted_binding[:-1]
        if np.any(same & (sorted_ts[1:] < sorted_ts[:-1])):
            # Rare: some channel's readings are out of time order within the batch. The sorted
            # bindings (and `same`) do not depend on the order of ties, only ts does.
            order = np.lexsort((ts, binding))
            sorted_ts = ts[order]
        binding, ts, value = sorted_binding, sorted_ts, value[order]
        # Rank of each reading within its binding = the round that evaluates it.
        first = np.flatnonzero(np.r_[True, ~same])
        lengths = np.diff(np.r_[first, binding.size])
        rank = np.arange(binding.size) - np.repeat(first, lengths)
        last = first + lengths - 1
        self._last_ts[binding[last]] = ts[last]
        # Round-major order; within a round bindings stay ascending and distinct.
        by_round = stable_argsort(rank, int(lengths.max()))
        binding, ts, value = binding[by_round], ts[by_round], value[by_round]
        bounds = np.r_[0, np.cumsum(np.bincount(rank))]
        parts = []
        for k in range(bounds.size - 1):
            part = slice(bounds[k], bounds[k + 1])
            found = self._round(binding[part], ts[part], value[part])
            if found is not None:
                parts.append(found)
        if not parts:
            return empty_findings()
        # Rounds were appended in time order, so a stable sort on binding yields (binding, ts).
        merged = _concat(parts)
        return _take(merged, np.argsort(merged.binding, kind="stable"))

    def _expand(self, channel: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Batch rows -> (binding, row) pairs, rows ascending, bindings of a row in index order.

        Returns
        -------
        binding : (k,) intp
        row : (k,) intp, index into the batch; None when it would be ``arange(len(batch))``
        """
        n = channel.shape[0]
        known: np.ndarray | None = None
        if channel.min() < 0 or channel.max() >= self.n_channels:
            known = (channel >= 0) & (channel < self.n_channels)
            channel = np.where(known, channel, 0)
        if self._direct is not None:
            binding = self._direct[channel].astype(np.intp)
            bound = binding >= 0 if known is None else (binding >= 0) & known
            if bound.all():
                return binding, None
            row = np.flatnonzero(bound)
            return binding[row], row
        per_row = np.diff(self._offsets)[channel]
        if known is not None:
            per_row = np.where(known, per_row, 0)
        row = np.repeat(np.arange(n), per_row)
        # Position of each expanded pair within its row's run of bindings.
        run_start = np.cumsum(per_row) - per_row
        within = np.arange(row.size) - np.repeat(run_start, per_row)
        binding = self._csr[self._offsets[channel[row]] + within]
        return binding, row

    def _round(self, b: np.ndarray, t: np.ndarray, v: np.ndarray) -> ThresholdFindings | None:
        """Evaluate one reading for each of a set of distinct bindings and update their state.

        Parameters
        ----------
        b : (m,) intp, distinct binding indexes (ascending is fastest)
        t : (m,) int64, reading ts, epoch ms; not older than any `since` of the binding
        v : (m,) float64, reading value

        Returns
        -------
        The level changes, in the order of `b`, or None when there are none.
        """
        # Most readings are quiet: at level 0, with no run in progress (no `since` set: a run at
        # any level sets that of level 1) and raising nothing. Such a reading changes nothing -
        # the candidate is 0, so the level stays 0 and every `since` unset - and is skipped.
        rule = np.take(self._rule, b)
        signed = v * np.take(self._sign, rule)
        active = np.flatnonzero((np.take(self._level, b) > 0) | (np.take(self._since.T[0], b) != NO_SINCE)
                                | (signed >= np.take(self._raise_floor, rule)))
        if active.size == 0:
            return None
        if active.size < b.size:
            b, t, v, signed, rule = b[active], t[active], v[active], signed[active], rule[active]
        signed_table = np.take(self._signed, rule, axis=1)
        raised = _highest(signed >= signed_table[:_N_LEVELS])
        held = _highest(signed >= signed_table[_N_LEVELS:])
        before = np.take(self._level, b)
        candidate = np.maximum(raised, np.minimum(held, before))

        since_by_level = self._since.T
        since_before = np.take(since_by_level, b, axis=1)
        # A set `since` is never later than t (readings run in time order, late ones are
        # dropped, restore checks started_at <= last_ts), so min() keeps it and starts an
        # unset one (NO_SINCE is the largest int64) at t.
        since = np.where(candidate >= _LEVEL, np.minimum(since_before, t), NO_SINCE)
        # Levels up to min(before, candidate) need no hold. Above that a level is confirmed once
        # its run is hold_ms old; `since` is NO_SINCE above the candidate, so that never
        # exceeds it. The highest level passing the hold test is a defined one: an undefined
        # level's run always began with that of the next defined level above it.
        held_long = since <= t - np.take(self._hold_ms, rule)
        after = np.maximum(np.minimum(before, candidate), _highest(held_long))

        self._level[b] = after
        for level_since, new_since in zip(since_by_level, since, strict=True):
            level_since[b] = new_since  # row by row: 2x faster than since_by_level[:, b] = since
        changed = np.flatnonzero(after != before)
        if changed.size == 0:
            return None
        cb, c_rule = b[changed], rule[changed]
        c_before, c_after = before[changed], after[changed]
        shown = np.where(c_after > 0, c_after, c_before).astype(np.intp) - 1
        lowest = self._lowest[c_rule]
        started = np.where(c_after > 0, since[lowest, changed], since_before[lowest, changed])
        return ThresholdFindings(
            binding=cb.astype(np.int32),
            ts=t[changed],
            level_before=c_before,
            level_after=c_after,
            value=v[changed],
            limit=self._limit[c_rule, shown],
            started_at=started,
        )


def _highest(mask: np.ndarray) -> np.ndarray:
    """(m,) int8 - highest level (1..4) whose row of a (4, m) bool mask is True, 0 if none."""
    return np.max(mask.view(np.int8) * _LEVEL, axis=0)




def _concat(parts: list[ThresholdFindings]) -> ThresholdFindings:
    if len(parts) == 1:
        return parts[0]
    return ThresholdFindings(*(np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS))


def _take(findings: ThresholdFindings, order: np.ndarray) -> ThresholdFindings:
    return ThresholdFindings(*(getattr(findings, name)[order] for name in _FIELDS))


_FIELDS = ("binding", "ts", "level_before", "level_after", "value", "limit", "started_at")

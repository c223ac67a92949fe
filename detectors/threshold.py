"""Multi-level threshold detector with hysteresis and hold time (CONTRACT §2, §3).

One *binding* is one threshold rule applied to one channel; all state lives in numpy arrays
indexed by binding, and `ThresholdDetector.update` evaluates a whole `Batch` in one call to a
C kernel. `detectors.threshold_reference` implements exactly the same semantics one reading
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

Evaluation: the batch is bound to bindings in evaluation order by
`detectors.batching.bound_readings` (the rows in place when every channel's readings are
already in time order, else sorted once per batch for all detectors), and one call to the C
kernel `detectors/threshold_kernel.c` runs the state machine of `detectors/level_machine.h`
(a transcription of the reference) over all of it, skipping late readings itself. Most readings
are *quiet* - their binding is at level 0 with no run in progress and they reach no limit - and
cost the kernel one comparison. It writes the level changes in evaluation order; they are few,
and a stable sort by binding then gives (binding, ts) order. `update_bindings` takes readings
already bound to bindings (the streams of a `LevelMachine`) and orders them itself, leaving the
batch order that `bound_readings` shares between detectors alone. Parameters are kept per
distinct threshold (a rule's bindings share one row), state per binding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors._order_kernel import by_channel
from detectors._threshold_kernel import evaluate
from detectors.batching import BindingIndex, bound_readings
from detectors.formatting import format_number
from ingest.batch import Batch
from lifeline.catalogue import Catalogue, Channel
from lifeline.config import Rule
from lifeline.levels import LEVEL_NUMBER, LEVELS, level_name

#: `since` value meaning "no run in progress" (NO_SINCE of level_machine.h).
NO_SINCE = np.iinfo(np.int64).max
#: `last_ts` of a binding that has evaluated nothing yet: no reading is late.
NO_LAST_TS = np.iinfo(np.int64).min

_N_LEVELS = len(LEVELS)


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


def _no_findings() -> ThresholdFindings:
    columns = ThresholdFindings(
        binding=np.empty(0, np.int32),
        ts=np.empty(0, np.int64),
        level_before=np.empty(0, np.int8),
        level_after=np.empty(0, np.int8),
        value=np.empty(0, np.float64),
        limit=np.empty(0, np.float64),
        started_at=np.empty(0, np.int64),
    )
    for column in vars(columns).values():
        column.flags.writeable = False
    return columns


_NO_FINDINGS = _no_findings()


def empty_findings() -> ThresholdFindings:
    """Findings with no rows, with the documented dtypes: one shared, read-only instance (most
    batches find nothing in most detectors, and seven new arrays each time cost 13 us)."""
    return _NO_FINDINGS


def hold_ms(rule: Rule) -> int:
    """The rule's hold time in whole milliseconds."""
    return int(round(rule.threshold.hold_s * 1000))


def check_restore(bindings: Sequence[Binding], limit: np.ndarray, rule_of: np.ndarray, binding: int, level: int,
                  started_at: int, last_ts: int) -> None:
    """What every detector on the level machine checks before `restore`: the binding exists,
    `level` is 0 or one its rule defines (``limit[rule_of[binding]]``, NaN where undefined),
    and the run did not start after the newest reading evaluated."""
    if not 0 <= binding < len(bindings):
        raise IndexError(f"binding {binding} outside 0..{len(bindings) - 1}")
    if level != 0 and not (1 <= level <= _N_LEVELS and not np.isnan(limit[rule_of[binding], level - 1])):
        raise ValueError(f"level {level} is not defined by rule {bindings[binding].rule.id!r}")
    if level != 0 and started_at > last_ts:
        raise ValueError(f"started_at {started_at} is after last_ts {last_ts}")


def bind_rules(catalogue: Catalogue, rules: Sequence[Rule], kind: str = "threshold") -> tuple[Binding, ...]:
    """Every (rule, channel) pair for the rules of `kind`, channel-major (channels in catalogue
    order, a channel's rules in configuration order).

    Channel-major because the kernels evaluate a batch grouped by channel
    (`detectors.batching.bound_readings`): binding numbers that follow the channels make every
    state array's reads and writes one sequential sweep, however many rules share the
    channels out (rule-major numbering made one sweep per rule and array, more streams than the
    hardware prefetcher follows)."""
    pairs: list[tuple[int, int, Rule, Channel]] = []
    for position, rule in enumerate(rules):
        if rule.kind != kind:
            continue
        for channel in catalogue.channels:
            sensor = channel.sensor
            if rule.matches(sensor, catalogue.owner_of(sensor), channel.metric):
                pairs.append((channel.index, position, rule, channel))
    pairs.sort(key=lambda pair: pair[:2])
    return tuple(Binding(i, rule, channel) for i, (_, _, rule, channel) in enumerate(pairs))


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
        channel_of = np.zeros(n, np.int64)
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

        #: (bindings,) int32 - parameter set (row of the tables below) of each binding.
        self._rule = rule_of
        #: (sets, 4) float64 - limit of each level, NaN where the rule does not define it.
        self._limit = limits
        #: (sets, 4) float64 - clear value of each level, NaN where undefined.
        self._clear_value = clear_value
        #: (sets,) bool - direction "above" (else "below").
        self._above = above
        #: (sets,) int64 - hold time, ms.
        self._hold_ms = hold
        #: (sets,) float64 - the value from which a reading raises some level: the lowest limit
        #: ("above") or the highest ("below"). The kernel skips readings that reach none of a
        #: binding at rest with one comparison.
        self._reach = (np.where(above, np.nanmin(limits, axis=1), np.nanmax(limits, axis=1)) if k
                       else np.zeros(0))

        #: (bindings,) int8 - confirmed level.
        self._level = np.zeros(n, np.int8)
        #: (bindings, 4) int64 - start (epoch ms) of the current run at or above each level,
        #: NO_SINCE when none. Binding-major, as level_machine.h reads it.
        self._since = np.full((n, _N_LEVELS), NO_SINCE, np.int64)
        #: (bindings,) int64 - newest ts evaluated, epoch ms.
        self._last_ts = np.full(n, NO_LAST_TS, np.int64)
        #: channel -> bindings, for `bound_readings`.
        self._index = BindingIndex(channel_of, self.n_channels)

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
        check_restore(self.bindings, self._limit, self._rule, binding, level, started_at, last_ts)
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
        return self._evaluate(*bound_readings(self._index, batch.channel, batch.ts, batch.value))

    def update_bindings(self, binding: np.ndarray, ts: np.ndarray, value: np.ndarray) -> ThresholdFindings:
        """`update` for readings already bound: row i is a reading of binding ``binding[i]``.

        For a caller that derives its own streams of values (`LevelMachine`): the rows need
        not be in time order, and unlike `update` this leaves the batch order shared through
        `bound_readings` alone.
        """
        binding = np.asarray(binding, np.int32)
        ts, value = np.asarray(ts, np.int64), np.asarray(value, np.float64)
        if binding.size == 0 or not self.bindings:
            return empty_findings()
        if binding.min() < 0 or binding.max() >= len(self.bindings):
            raise ValueError(f"binding numbers must be in 0..{len(self.bindings) - 1}")
        if binding.size > 1 and not (np.diff(binding) > 0).all():
            # Not one reading per binding in binding order (the usual feed): put each binding's
            # readings in (ts, row) order, grouped by binding so that the kernel's state
            # accesses are sequential. A counting sort costs a pass over the bindings, so a
            # few readings are sorted outright.
            order = None
            if binding.size >= len(self.bindings) // 8:
                order = np.empty(binding.size, np.intp)
                if not by_channel(binding, ts, len(self.bindings), order)[1]:
                    order = None  # some binding goes back in time
            if order is None:
                order = np.lexsort((ts, binding))
            binding, ts, value = binding[order], ts[order], value[order]
        return self._evaluate(binding, ts, value)

    def _evaluate(self, binding: np.ndarray, ts: np.ndarray, value: np.ndarray) -> ThresholdFindings:
        """Run the kernel over bound readings (int32 binding, -1 none; each binding's in time order)."""
        # Level changes are few: room for a fraction of the readings, made larger in the rare
        # batch that needs more (the kernel stops where the rows run out).
        capacity = binding.size if binding.size <= 4096 else 4096 + binding.size // 64
        parts = []
        while True:
            found = _empty_rows(capacity)
            consumed, n_found = evaluate(
                binding, ts, value, self._rule, self._limit.reshape(-1), self._clear_value.reshape(-1),
                self._above, self._hold_ms, self._reach, self._level, self._since.reshape(-1), self._last_ts,
                *found)
            if n_found:
                parts.append([column[:n_found] for column in found])
            if consumed == binding.size:
                break
            binding, ts, value = binding[consumed:], ts[consumed:], value[consumed:]
            capacity *= 4
        if not parts:
            return empty_findings()
        columns = parts[0] if len(parts) == 1 else [np.concatenate(c) for c in zip(*parts, strict=True)]
        # Evaluation order is time order within each binding: a stable sort by binding gives
        # (binding, ts) order.
        order = np.argsort(columns[0], kind="stable")
        return ThresholdFindings(*(column[order] for column in columns))


def _empty_rows(capacity: int) -> list[np.ndarray]:
    """Uninitialised finding columns (ThresholdFindings' fields and dtypes) for the kernel."""
    return [np.empty(capacity, dtype) for dtype in _DTYPES]


_DTYPES = (np.int32, np.int64, np.int8, np.int8, np.float64, np.float64, np.int64)

"""Sensor faults: out of physical range, stuck, spikes, impossible rate of change.

A faulty sensor is a maintenance matter, not a hazard: its alerts go to maintenance, and
while a channel is faulty the hazard alerts of that channel are marked ``"confidence":
"low"`` or suppressed (the rule's `on_fault`), so operators are not sent to a broken sensor.
The pipeline asks `QualityDetector.faulty` / `on_fault(channel)` for that.

Checks, per binding (one quality rule on one channel), on each evaluated reading ``x`` at
``t`` (``detectors.quality_reference`` is the readable per-reading version):

* **out_of_range**: ``x < range_min`` or ``x > range_max`` (the sensor type's physical range).
* **spike**: robust z-score against the previous ``spike_window`` readings (Hampel filter;
  Hampel 1974, Pearson 2002): ``med`` = their median, ``mad`` = median of ``|v - med|``,
  ``z = |x - med| / (1.4826 * mad)`` (1.4826 makes the MAD a consistent estimator of the
  standard deviation for normal data); a spike when ``z > spike_threshold``. Skipped until the
  window is full and when ``mad == 0`` (a flat window says nothing about the scale).
* **rate**: ``|x - x_prev| * 1000 / (t - t_prev) > max_rate_per_s`` against the previous
  evaluated reading; skipped when ``t == t_prev`` (no elapsed time to divide by).
* **stuck**: a *run* of consecutive readings with peak-to-peak variation
  ``max - min <= stuck_tolerance``; a reading that would widen it beyond the tolerance starts a
  new run at itself. Stuck when the run holds ``stuck_readings`` readings or more and, if
  ``stuck_seconds`` is set, has lasted at least that long (``t - t_first``). (Keeping only the
  run's min, max, length and start makes this O(1) per binding; for the default tolerance 0 it
  is exactly "the last N readings are identical".)

Every evaluated reading enters the spike window and becomes the previous reading, faulty or
not. A reading is faulty when any check fires; the reported fault is the first of
out_of_range, spike, rate, stuck (a spike also trips the rate check; "spike" says more). The
binding becomes faulty on a faulty reading and stays faulty until ``clear_after`` good
readings in a row. The 0/1 faulty flag drives a LevelMachine with
``flag_threshold(spec.level)``, which gives the alert its level and findings.

Ordering is that of every detector: a binding's readings in (ts, batch row) order, readings
older than the newest evaluated one skipped (equal ts is evaluated).

Evaluation: the whole batch, as `detectors.batching.bound_readings` gives it (each binding's
readings in that order, late ones included, binding -1 for rows without one), goes to one call
of the C kernel `detectors._quality_kernel` (``quality_kernel.c``). It groups the readings by
binding, skips late ones and rows without a binding, runs a loop over each binding's readings
that reads like the reference, updates the state in place, and reports the readings
that changed a binding's faulty flag, with the new flag; array code would need dozens of
passes per reading. It does the reference's double-precision operations in the same order (built
without fused multiply-add) and keeps each spike window in the order a stable sort gives
(`SpikeWindows`), so the two agree bit for bit.

State: each binding's parameters and state are one record of a numpy structured array whose
elements are the kernel's C struct (dtype built from the layout the kernel exports,
`detectors.records`), the fields every reading reads first: pipeline batches are a few thousand
readings spread over all the channels, so separate arrays would cost a cache miss per array per
reading. The detector's attributes (`_prev`, `_faulty`, ...) are views of the fields.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from detectors import _quality_kernel
from detectors.batching import BindingIndex, bound_readings
from detectors.formatting import format_number, with_unit
from detectors.level_machine import LevelMachine, flag_threshold
from detectors.records import records
from detectors.threshold import Binding, ThresholdFindings, bind_rules, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Rule
from lifeline.rule_kinds import Quality

#: Scale that makes the median absolute deviation estimate a normal standard deviation.
MAD_SCALE = 1.4826
#: Fault codes, index = code; 0 = none. Earlier names win when several checks fire.
FAULTS = ("", "out_of_range", "spike", "rate", "stuck")
_RANGE, _SPIKE, _RATE, _STUCK = 1, 2, 3, 4
_NO_TS = np.iinfo(np.int64).min


@dataclass
class SpikeWindows:
    """The previous readings of every binding with a spike check, each window kept sorted.

    Binding i's window is the `_spike_window[i]` elements from `_spike_start[i]` of `values`
    and `slots`; ring slots say which reading is oldest without keeping time order, and the
    sorted order lets each reading be checked with one shift instead of a sort.

    values : (sum of the spike windows,) float64 - the `held` readings, channel unit, ascending
        (equal ones oldest first, as a stable sort of the window in time order puts them)
    slots : (sum of the spike windows,) int32 - ring slot each reading was written to
    held : (bindings,) int32 - readings in the window, up to its length
    next : (bindings,) int32 - ring slot of the next reading; when the window is full, the
        reading in that slot (the oldest) leaves

    `held` and `next` are views of fields of the detector's per-binding records (the kernel
    reads them with the rest of a binding's state); `values` and `slots` are buffers of their own.
    """

    values: np.ndarray
    slots: np.ndarray
    held: np.ndarray
    next: np.ndarray


class QualityDetector:
    """Fault state of every (quality rule, channel) binding.

    Parameters
    ----------
    bindings : sequence of Binding
        ``bindings[i].index == i``; every rule has kind "quality" and a `Quality` spec.
    n_channels : int
        Number of catalogue channels; batch rows of other channels are ignored.
    """

    kind = "quality"

    def __init__(self, bindings: Sequence[Binding], n_channels: int):
        self.bindings: tuple[Binding, ...] = tuple(bindings)
        n = len(self.bindings)
        for i, binding in enumerate(self.bindings):
            if binding.index != i:
                raise ValueError(f"binding at position {i} has index {binding.index}")
        specs: list[Quality] = [b.rule.spec for b in self.bindings]
        self.n_channels = int(n_channels)
        #: (bindings,) int64 - channel of each binding
        self._channel = np.array([b.channel.index for b in self.bindings], np.int64)
        self._index = BindingIndex(self._channel, n_channels)

        #: (bindings,) records - each binding's parameters and state in one C struct
        #: (`quality_kernel.c`'s State), so a reading touches two or three cache lines of it; the
        #: attributes below are views of its fields (never reassigned: assign their elements).
        self._state = records(_quality_kernel.STATE, n)
        state = self._state

        # -- parameters; an unset check gets a value that never fires ---------------------------------
        self._range_min, self._range_max = state["range_min"], state["range_max"]
        self._range_min[:] = [-np.inf if s.range_min is None else s.range_min for s in specs]
        self._range_max[:] = [np.inf if s.range_max is None else s.range_max for s in specs]
        #: int32 - readings that make a run stuck; 0 = no stuck check
        self._stuck_n = state["stuck_n"]
        self._stuck_n[:] = [s.stuck_readings or 0 for s in specs]
        #: int64 - minimum duration of a stuck run, ms (0 when not set)
        self._stuck_ms = state["stuck_ms"]
        self._stuck_ms[:] = [round((s.stuck_seconds or 0.0) * 1000) for s in specs]
        self._stuck_tol = state["stuck_tolerance"]
        self._stuck_tol[:] = [s.stuck_tolerance for s in specs]
        self._spike_threshold = state["spike_threshold"]
        self._spike_threshold[:] = [s.spike_threshold for s in specs]
        #: float64 - |dv/dt| limit per second; inf = no rate check
        self._max_rate = state["max_rate"]
        self._max_rate[:] = [np.inf if s.max_rate_per_s is None else s.max_rate_per_s for s in specs]
        self._clear_after = state["clear_after"]
        self._clear_after[:] = [s.clear_after for s in specs]
        #: bool - only Python reads it (`on_fault`), so it stays out of the record
        self._suppress = np.array([s.on_fault == "suppress" for s in specs], bool)
        #: int32 - readings in the spike window, 0 = no spike check
        self._spike_window = state["spike_window"]
        self._spike_window[:] = [s.spike_window or 0 for s in specs]
        #: int64 - first element of each binding's spike window in `_windows`
        self._spike_start = state["spike_start"]
        self._spike_start[:] = np.cumsum(self._spike_window, dtype=np.int64) - self._spike_window
        size = int(self._spike_window.sum())
        self._windows = SpikeWindows(np.zeros(size), np.zeros(size, np.int32), state["held"], state["next"])

        # -- state ----------------------------------------------------------------------------------
        #: int64 - newest ts evaluated, epoch ms (also the previous reading's ts for the rate)
        self._last_ts = state["last_ts"]
        self._last_ts[:] = _NO_TS
        #: float64 - previous evaluated reading, NaN when none
        self._prev = state["prev"]
        self._prev[:] = np.nan
        #: float64 - min and max of the current run, channel unit
        self._run_min, self._run_max = state["run_min"], state["run_max"]
        #: int32 - readings in the current run
        self._run_count = state["run_count"]
        #: int64 - ts of the run's first reading, epoch ms
        self._run_start = state["run_start"]
        #: bool - faulty now
        self._faulty = state["faulty"]
        #: int32 - good readings in a row while faulty (reset to 0 by the next reading once clear)
        self._good = state["good"]
        #: int8 - code of the latest fault (FAULTS), 0 = none yet
        self._fault = state["fault"]
        #: float64 - the latest faulty reading, and what its check measured: `aux` = run length
        #: (stuck), robust z (spike), |rate| per s (rate); `ref` = run duration s (stuck),
        #: window median (spike), previous reading (rate), the bound crossed (out_of_range)
        self._fault_value, self._fault_aux, self._fault_ref = state["fault_value"], state["fault_aux"], state["fault_ref"]
        #: (channels,) int32 - faulty bindings of each channel; (channels,) bool - any
        self._faulty_bindings = np.zeros(self.n_channels, np.int32)
        self._faulty_channel = np.zeros(self.n_channels, bool)

        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings],
                                     [flag_threshold(s.level) for s in specs])
        #: The kernel's arguments after (binding, ts, value, moved, flag), in `quality_kernel.c`'s
        #: order: the records and the spike windows, which it updates in place.
        self._kernel_arrays = (self._state, self._windows.values, self._windows.slots)

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> QualityDetector:
        """Bind every rule of kind "quality" to every channel it matches (channel-major, `bind_rules`)."""
        return cls(bind_rules(catalogue, rules, "quality"), len(catalogue))

    # -- evaluation ------------------------------------------------------------------------------

    def update(self, batch: Batch) -> ThresholdFindings:
        """Evaluate a batch; fault level changes in (binding, ts) order."""
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        binding, ts, value = bound_readings(self._index, batch.channel, batch.ts, batch.value)
        # Only flag changes go to the level machine: with one level, clear 1.0 and no hold its
        # level is the flag itself, so the readings in between change nothing (same findings and
        # `since` as feeding every reading, which the reference does).
        moved, flag = np.empty(binding.size, np.intp), np.empty(binding.size)
        n_moved = _quality_kernel.evaluate(binding, ts, value, moved, flag, *self._kernel_arrays)
        if n_moved == 0:
            return empty_findings()
        moved, flag = moved[:n_moved], flag[:n_moved]
        stream = binding[moved].astype(np.intp)
        # Keep the per-channel flag: +1 for a binding that became faulty, -1 for one that cleared.
        channel = self._channel[stream]
        np.add.at(self._faulty_bindings, channel, np.where(flag > 0, 1, -1).astype(np.int32))
        self._faulty_channel[channel] = self._faulty_bindings[channel] > 0
        return self._machine.update(stream, ts[moved], flag)

    # -- fault state for the pipeline ------------------------------------------------------------

    @property
    def faulty(self) -> np.ndarray:
        """(catalogue channels,) bool - True while any quality binding of the channel is faulty.

        A read-only view of state kept up to date by `update` and `restore` (O(1) to get).
        """
        view = self._faulty_channel.view()
        view.flags.writeable = False
        return view

    def on_fault(self, channel: int) -> str | None:
        """What to do with hazard alerts of `channel`: "mark" (confidence low), "suppress", or None.

        None while no quality binding of the channel is faulty; "suppress" when any faulty one
        asks for it (the stronger measure wins), else "mark".
        """
        if not 0 <= channel < self.n_channels:
            return None
        index = self._index
        mine = index.grouped[index.offsets[channel]:index.offsets[channel + 1]]
        faulty = mine[self._faulty[mine]]
        if faulty.size == 0:
            return None
        return "suppress" if self._suppress[faulty].any() else "mark"

    # -- Detector protocol -------------------------------------------------------------------------

    def level(self) -> np.ndarray:
        """(bindings,) int8 - confirmed level of each binding (a copy)."""
        return self._machine.level()

    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        """Resume a binding at the level of its open fault alert after a restart.

        The binding is faulty again (if `level` > 0) and needs `clear_after` good readings to
        clear. Reading history is not part of the alert: the next reading has no previous one
        (no rate check) and starts a new stuck run.
        """
        self._machine.restore(binding, level, started_at, last_ts)
        channel = self._channel[binding]
        self._faulty_bindings[channel] += int(level > 0) - int(self._faulty[binding])
        self._faulty_channel[channel] = self._faulty_bindings[channel] > 0
        self._faulty[binding] = level > 0
        self._good[binding] = 0
        self._prev[binding] = np.nan
        self._last_ts[binding] = last_ts

    def details(self, binding: int) -> dict:
        """``{"kind": "fault", "fault": "stuck|spike|out_of_range|rate", "detail": "..."}``.

        Describes the binding's latest faulty reading; `fault` is None before any.
        """
        code = int(self._fault[binding])
        if code == 0:
            return {"kind": "fault", "fault": None, "detail": ""}
        return {"kind": "fault", "fault": FAULTS[code], "detail": self._describe(binding)}

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        """E.g. "sensor fault: ch4 stuck at 3.20 %LEL for 20 readings (maintenance)".

        `value` and `limit` are the 0/1 flag and 0.5, so the text comes from the latest fault.
        """
        channel = self.bindings[binding].channel
        code = int(self._fault[binding])
        fault = FAULTS[code] if code else "fault"
        if level_after == 0:
            spec: Quality = self.bindings[binding].rule.spec
            return (f"sensor fault cleared: {channel.metric} gave {spec.clear_after} good readings in a row "
                    f"after {fault.replace('_', ' ')}")
        return f"sensor fault: {channel.metric} {self._describe(binding)} (maintenance)"

    def _describe(self, binding: int) -> str:
        """The latest fault in words, e.g. "stuck at 3.20 %LEL for 20 readings"."""
        unit = self.bindings[binding].channel.unit
        spec: Quality = self.bindings[binding].rule.spec
        code = int(self._fault[binding])
        value = float(self._fault_value[binding])
        aux, ref = float(self._fault_aux[binding]), float(self._fault_ref[binding])
        if code == _STUCK:
            return f"stuck at {with_unit(value, unit)} for {aux:.0f} readings in {ref:.0f} s"
        if code == _SPIKE:
            return (f"spike to {with_unit(value, unit)}, {aux:.1f} robust sigma from the median "
                    f"{format_number(ref)} of its last {spec.spike_window} readings")
        if code == _RATE:
            per_s = f"{unit}/s" if unit else "/s"
            return (f"jumped from {format_number(ref)} to {with_unit(value, unit)} at {aux:.3g} {per_s}, "
                    f"faster than physically possible ({spec.max_rate_per_s:g} {per_s})")
        if code == _RANGE:
            side = "below its minimum" if value < ref else "above its maximum"
            return f"reads {with_unit(value, unit)}, {side} {format_number(ref)} (outside the sensor's range)"
        return ""

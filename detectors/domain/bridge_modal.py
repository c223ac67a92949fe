"""Natural-frequency tracking of bridge spans from acceleration waveform blocks.

A crack or a failed bearing lowers a span's stiffness and with it its natural frequencies
(DOMAIN.md: a drop of about 5 / 10 / 15 % from the baseline is blue / yellow / orange). Each
acceleration block (CONTRACT §4 waveform: `block_s` seconds at `rate_hz`) gives one estimate
of the tracked mode's frequency:

1. Welch's averaged periodogram (Welch 1967; scipy.signal.welch, Hann window, 50 % overlap,
   zero-padded 4x) of the block;
2. peak picking in the mode's band, refined to the PSD-weighted centroid within +-10 % of the
   peak (ambient vibration excites a narrow band, not a tone: the centroid is steadier);
3. temperature compensation to the reference temperature: f_ref = f / (1 + c (T - T_ref)),
   with T the span's latest temperature reading (girders are stiffer in the cold);
4. the drop in percent from the span's baseline: the median of its first healthy blocks,
   then following healthy blocks with a small weight. Blocks in alarm are never learnt.

The drop feeds a LevelMachine (hysteresis, hold). Blocks of equal length and rate are
analysed in one vectorised Welch call; the stateful baseline runs round by round.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np

from detectors.batching import BindingIndex, rounds
from detectors.level_machine import LevelMachine
from detectors.threshold import Binding, ThresholdFindings, empty_findings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Rule, Threshold
from lifeline.domain_rules.bridge import Modal
from lifeline.levels import level_name

_NO_TS = np.iinfo(np.int64).min
CENTROID_SPAN = 0.10  # the centroid is taken within +-10 % of the picked peak
PAD = 4  # zero-padding factor of each Welch segment: a finer frequency grid to pick from
GAP_SAMPLES = 5  # a gap of more than 5 sample intervals separates two blocks of one channel


def mode_frequency(blocks: np.ndarray, rate_hz: float, segment: int, band_hz: tuple[float, float]) -> np.ndarray:
    """Frequency of the strongest mode in `band_hz` of each block.

    blocks : (b, n) float64 acceleration samples (any unit), n >= 16
    rate_hz : sampling rate; segment : Welch segment length, samples (at most n are used)
    Returns (b,) float64 Hz; NaN where the band holds no spectral line (band above Nyquist).
    """
    nperseg = min(segment, blocks.shape[1])
    # Imported here: scipy.signal is 76 MiB resident, paid by every process that imports the
    # detector registry (each ingestion worker) although most cities have no modal rule.
    from scipy.signal import welch

    f, psd = welch(blocks, fs=rate_hz, nperseg=nperseg, nfft=PAD * nperseg, axis=-1, detrend="constant")
    band = (f >= band_hz[0]) & (f <= band_hz[1])
    if not band.any():
        return np.full(blocks.shape[0], np.nan)
    fb, pb = f[band], psd[:, band]
    peak = fb[np.argmax(pb, axis=1)]
    near = np.abs(fb[None, :] - peak[:, None]) <= CENTROID_SPAN * peak[:, None]
    weight = np.where(near, pb, 0.0)
    total = weight.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (weight * fb[None, :]).sum(axis=1) / total, np.nan)


class ModalDetector:
    """Frequency-drop levels for every (bridge_modal rule, acceleration channel) binding."""

    kind = "bridge_modal"

    def __init__(self, bindings: Sequence[Binding], n_channels: int, rates: Sequence[float],
                 temperature_channels: Sequence[Sequence[int]]):
        self.bindings = tuple(bindings)
        n = len(self.bindings)
        specs: list[Modal] = [b.rule.spec for b in self.bindings]
        self._specs = specs
        self._index = BindingIndex(np.array([b.channel.index for b in self.bindings], np.int64), n_channels)
        self._rate = np.array(rates, np.float64)  # Hz; NaN: inferred from the timestamps
        width = max((len(t) for t in temperature_channels), default=0)
        #: (bindings, width) the span's temperature channels of each binding, -1 padding
        self._temps = np.full((n, max(width, 1)), -1, np.int64)
        for i, t in enumerate(temperature_channels):
            self._temps[i, :len(t)] = t
        self._is_temp = np.zeros(n_channels, bool)
        self._is_temp[self._temps[self._temps >= 0]] = True
        #: (channels,) latest temperature reading of each temperature channel (NaN: none yet)
        self._temp_value = np.full(n_channels, np.nan)
        self._last_ts = np.full(n, _NO_TS, np.int64)
        depth = max((s.baseline_blocks for s in specs), default=1)
        #: (bindings, depth) compensated frequencies of the first healthy blocks (NaN: not yet)
        self._learned = np.full((n, depth), np.nan)
        self._n_learned = np.zeros(n, np.int64)
        self._baseline = np.full(n, np.nan)  # Hz at the reference temperature
        self.frequency_hz = np.full(n, np.nan)  # latest raw estimate
        self.corrected_hz = np.full(n, np.nan)  # latest, at the reference temperature
        self.temperature = np.full(n, np.nan)  # span temperature used for the latest block
        self.drop_pct = np.full(n, np.nan)
        self._lowest = np.array([min(s.levels.values()) for s in specs]) if n else np.zeros(0)
        self._learn = np.array([s.learn for s in specs])
        self._needed = np.array([s.baseline_blocks for s in specs], np.int64)
        self._coefficient = np.array([s.temp_coefficient for s in specs])
        self._reference = np.array([s.reference_temp for s in specs])
        self._machine = LevelMachine([(b.rule, b.channel) for b in self.bindings],
                                     [Threshold("above", dict(s.levels), s.clear, s.hold_s) for s in specs])

    @classmethod
    def from_rules(cls, catalogue: Catalogue, rules: Sequence[Rule]) -> ModalDetector:
        """A binding per acceleration channel a bridge_modal rule matches; its temperature comes
        from the channels of the rule's temperature metric on the same asset (span)."""
        bindings: list[Binding] = []
        rates: list[float] = []
        temps: list[list[int]] = []
        for rule in rules:
            if rule.kind != "bridge_modal":
                continue
            spec: Modal = rule.spec
            temperature_of: dict[str, list[int]] = {}  # asset -> its temperature channels
            for c in catalogue.channels:
                if spec.temperature is not None and c.metric == spec.temperature:
                    temperature_of.setdefault(c.sensor.asset, []).append(c.index)
            for channel in catalogue.channels:
                sensor = channel.sensor
                if channel.metric == spec.temperature or not rule.matches(sensor, catalogue.owner_of(sensor),
                                                                          channel.metric):
                    continue
                # the alert is about the span's natural frequency, not the raw acceleration channel
                bindings.append(Binding(len(bindings), rule, replace(channel, metric="natural_frequency", unit="Hz")))
                rates.append(sensor.number("rate_hz"))
                temps.append(temperature_of.get(sensor.asset, []))
        return cls(bindings, len(catalogue), rates, temps)

    # -- evaluation ----------------------------------------------------------------------------
    def update(self, batch: Batch) -> ThresholdFindings:
        if len(batch) == 0 or not self.bindings:
            return empty_findings()
        channel = np.asarray(batch.channel, np.int64)
        self._note_temperatures(channel, batch.ts, batch.value)
        binding, row = self._index.expand(channel)
        if binding.size == 0:
            return empty_findings()
        ts, value = np.asarray(batch.ts, np.int64)[row], np.asarray(batch.value, np.float64)[row]
        order = np.lexsort((ts, binding))
        binding, ts, value = binding[order], ts[order], value[order]
        block_b, block_ts, block_f = self._blocks(binding, ts, value)
        if block_b.size == 0:
            return empty_findings()
        streams, stamps, stats = [], [], []
        order, bounds = rounds(block_b, block_ts, self._last_ts)
        for r in range(bounds.size - 1):
            pick = order[bounds[r]:bounds[r + 1]]
            b, t = block_b[pick], block_ts[pick]
            self._last_ts[b] = t
            streams.append(b)
            stamps.append(t)
            stats.append(self._round(b, block_f[pick]))
        if not streams:
            return empty_findings()
        return self._machine.update(np.concatenate(streams), np.concatenate(stamps), np.concatenate(stats))

    def _note_temperatures(self, channel: np.ndarray, ts: np.ndarray, value: np.ndarray) -> None:
        known = (channel >= 0) & (channel < self._is_temp.size)
        hit = np.flatnonzero(known)
        hit = hit[self._is_temp[channel[hit]]]
        if hit.size == 0:
            return
        newest = hit[np.argsort(ts[hit], kind="stable")][::-1]
        _, first = np.unique(channel[newest], return_index=True)  # the newest reading of each channel
        self._temp_value[channel[newest[first]]] = value[newest[first]]

    def _blocks(self, binding: np.ndarray, ts: np.ndarray, value: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Split (binding, ts)-sorted samples into blocks and estimate each block's frequency.

        Returns (binding, first-sample ts, frequency Hz) per block of at least min_samples.
        """
        step = np.diff(ts)
        rate = self._rate[binding]
        dt_ms = np.where(np.isfinite(rate) & (rate > 0), 1000.0 / np.where(rate > 0, rate, 1.0), np.nan)
        gap = np.where(np.isfinite(dt_ms[1:]), GAP_SAMPLES * dt_ms[1:], 1000.0)
        starts = np.flatnonzero(np.r_[True, (binding[1:] != binding[:-1]) | (step > gap)])
        lengths = np.diff(np.r_[starts, binding.size])
        out_b, out_ts, out_f = [], [], []
        needed = np.array([self._specs[b].min_samples for b in binding[starts]])
        keep = lengths >= needed
        starts, lengths = starts[keep], lengths[keep]
        # one vectorised Welch per (length, rate, rule): equal blocks stack into a matrix
        groups: dict[tuple[int, float, int], list[int]] = {}
        for s, n in zip(starts.tolist(), lengths.tolist(), strict=True):
            b = int(binding[s])
            fs = float(rate[s]) if np.isfinite(rate[s]) else 1000.0 / float(np.median(np.diff(ts[s:s + n])) or 1.0)
            groups.setdefault((n, fs, id(self._specs[b])), []).append(s)
        for (n, fs, _), first in groups.items():
            first_a = np.array(first, np.int64)
            spec = self._specs[int(binding[first_a[0]])]
            samples = value[first_a[:, None] + np.arange(n)[None, :]]
            out_b.append(binding[first_a])
            out_ts.append(ts[first_a])
            out_f.append(mode_frequency(samples, fs, spec.segment, spec.band_hz))
        if not out_b:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)
        return np.concatenate(out_b), np.concatenate(out_ts), np.concatenate(out_f)

    def _round(self, b: np.ndarray, frequency: np.ndarray) -> np.ndarray:
        """One block per binding: compensate, compare with the baseline, learn; returns the drop %."""
        channels = self._temps[b]
        readings = np.where(channels >= 0, self._temp_value[np.maximum(channels, 0)], np.nan)
        count = np.isfinite(readings).sum(axis=1)
        temps = np.where(count > 0, np.nansum(readings, axis=1) / np.maximum(count, 1), np.nan)  # span mean
        factor = 1.0 + self._coefficient[b] * np.where(np.isfinite(temps), temps - self._reference[b], 0.0)
        corrected = frequency / factor
        self.frequency_hz[b] = frequency
        self.corrected_hz[b] = corrected
        self.temperature[b] = temps
        baseline = self._baseline[b]
        with np.errstate(invalid="ignore"):
            drop = 100.0 * (1.0 - corrected / baseline)
        self.drop_pct[b] = drop
        quiet = self._machine.level()[b] == 0
        healthy = np.isfinite(corrected) & quiet & ~(drop >= self._lowest[b])  # NaN drop: no baseline yet
        # the first healthy blocks form the baseline (median), later ones move it slowly
        filling = healthy & (self._n_learned[b] < self._needed[b])
        if filling.any():
            fb = b[filling]
            self._learned[fb, self._n_learned[fb]] = corrected[filling]
            self._n_learned[fb] += 1
            self._baseline[fb] = np.nanmedian(self._learned[fb], axis=1)
        following = healthy & ~filling
        if following.any():
            fb = b[following]
            w = self._learn[fb]
            self._baseline[fb] = (1.0 - w) * self._baseline[fb] + w * corrected[following]
        return np.where(np.isfinite(baseline), drop, np.nan)

    # -- Detector protocol -----------------------------------------------------------------------
    def restore(self, binding: int, level: int, started_at: int, last_ts: int) -> None:
        self._machine.restore(binding, level, started_at, last_ts)

    def details(self, binding: int) -> dict:
        body: dict = {"kind": "modal"}
        for key, array, digits in (("frequency_hz", self.frequency_hz, 3), ("corrected_hz", self.corrected_hz, 3),
                                   ("baseline_hz", self._baseline, 3), ("drop_pct", self.drop_pct, 2),
                                   ("temperature", self.temperature, 1)):
            if np.isfinite(array[binding]):
                body[key] = round(float(array[binding]), digits)
        return body

    def message(self, binding: int, level_before: int, level_after: int, value: float, limit: float) -> str:
        sensor = self.bindings[binding].channel.sensor
        spec = self._specs[binding]
        where = f"span {sensor.asset}" + (f" of {sensor.extra['structure']}" if sensor.extra.get("structure") else "")
        frequency = float(self.corrected_hz[binding])
        base = float(self._baseline[binding])
        if level_after == 0:
            return (f"{where}: natural frequency {frequency:.2f} Hz back within {limit:g} % of its baseline "
                    f"{base:.2f} Hz (cleared)")
        corrected = f" at {spec.reference_temp:g} degC" if spec.temperature is not None else ""
        return (f"{where}: natural frequency {frequency:.2f} Hz{corrected}, {value:.1f} % below its baseline "
                f"{base:.2f} Hz (>= {level_name(level_after)} {limit:g} %): stiffness loss (cracking, bearing "
                f"damage); inspect the span")

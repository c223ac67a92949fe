"""Sensor and gateway faults: realistic trouble that is not a hazard (DOMAIN.md, generic
techniques). A quality or silence detector should raise maintenance alerts for them; hazard
detectors must not report them at yellow or above (`max_level` "blue" in the truth).

* `sensor_stuck`: every channel of the sensor freezes at the values it read when the fault began.
* `sensor_drift`: the channel's zero drifts linearly towards its alarm side, but stops short of the
  lowest level of any rule watching it (88 %), as a drift caught by calibration would.
* `sensor_spikes`: isolated wild readings (EMI, a loose connector): on average every tenth
  reading, never two in a row, some past the highest level when the channel's rules have a hold
  time (which a single reading cannot complete), otherwise within the safe band.
* `sensor_dropout`: the sensor goes silent (battery, radio coverage) - all or `keep` of its readings lost.
* `gateway_offline`: a gateway loses its uplink; it keeps every reading and publishes them all,
  with their original timestamps, when it comes back (backfill).

Scalar channels only: waveform sensors are left alone.
"""

from __future__ import annotations

import numpy as np

from lifeline.config import Sensor
from simulators.incidents import IncidentBuilder, IncidentKind, Limits, _related_target, bounds, rule_for
from simulators.signals import hash_uniform

SPIKE_SHARE = 0.2  # of every other reading: about one reading in ten
DRIFT_SHARE = 0.7  # a drift covers 70 % of the distance to its bound by the end


def _always(tau: np.ndarray) -> np.ndarray:
    return np.ones_like(tau)


def _scalar(sensor: Sensor) -> bool:
    return "rate_hz" not in sensor.extra


def _interval_ms(b: IncidentBuilder) -> int:
    return max(1, round(b.sensor.interval * 1000))


def _stuck(b: IncidentBuilder) -> None:
    frozen = {m: b.baseline_at_start(m) for m in b.sensor.metrics}
    for metric, value in frozen.items():
        if metric == b.metric:
            b.primary(_always, lambda tau, base, v=value: np.full_like(base, v), value)
        else:
            b.effect(b.sensor, metric, _always, lambda tau, base, v=value: np.full_like(base, v))
    b.description = f"Sensor {b.sensor.id} stuck at {frozen[b.metric]:g} {b.sensor.metrics[b.metric]}"


def _drift(b: IncidentBuilder) -> None:
    upper, lower = bounds(b.config, b.sensor, b.metric)
    start = b.baseline_at_start(b.metric)
    if np.isfinite(upper) or not np.isfinite(lower):
        towards = upper if np.isfinite(upper) else start + 0.1 * abs(start) + 1.0
    else:
        towards = lower
    magnitude = float(b.params.get("magnitude", DRIFT_SHARE * (towards - start)))
    rate = magnitude / max(b.duration_s, 1.0)
    target = _related_target(lambda tau, base: base + rate * tau, upper, lower)
    b.primary(_always, target, start + magnitude)
    b.details = {"drift_per_hour": round(rate * 3600.0, 6)}
    b.description = f"Sensor {b.sensor.id} {b.metric} drifting {rate * 3600:+.3g} {b.sensor.metrics[b.metric]}/h"


def _spikes(b: IncidentBuilder) -> None:
    rule = rule_for(b.config, b.sensor, b.metric)
    upper, lower = bounds(b.config, b.sensor, b.metric)
    interval_ms = _interval_ms(b)
    keys1 = np.array([b.key], dtype=np.uint64)
    if rule is not None and rule.threshold is not None and rule.threshold.hold_s > 0:
        levels = rule.threshold.levels.values()
        wild = max(levels) * 1.3 if rule.threshold.direction == "above" else min(levels) * 0.5
        b.details = {"spikes_past_highest_level": True}
    else:
        wild = upper if np.isfinite(upper) else (lower if np.isfinite(lower) else None)
        b.details = {"spikes_past_highest_level": False}

    def spiky(tau: np.ndarray, base: np.ndarray) -> np.ndarray:
        bucket = np.floor(tau * 1000.0 / interval_ms)
        keys = np.broadcast_to(keys1, tau.shape)
        hit = (bucket % 2 == 0) & (hash_uniform(keys, 220, bucket) < SPIKE_SHARE)
        size = hash_uniform(keys, 221, bucket)
        if wild is None:
            value = base + (0.3 + 0.7 * size) * (np.abs(base) + 1.0) * np.where(size < 0.5, -1.0, 1.0)
        else:
            value = base + (0.4 + 0.6 * size) * (wild - base)
        return np.where(hit, value, base)

    b.primary(_always, spiky, float(wild) if wild is not None else float("nan"))
    b.description = f"Sensor {b.sensor.id} {b.metric} spiking (isolated wild readings)"


def _dropout(b: IncidentBuilder) -> None:
    keep = float(b.params.get("keep", 0.0))
    b.suppress.append((b.sensor_index, keep))
    b.primary(lambda tau: np.zeros_like(tau), lambda tau, base: base, float("nan"))
    b.details = {"readings_kept": keep}
    b.description = f"Sensor {b.sensor.id} silent" + (f" ({100 * keep:.0f} % of readings arrive)" if keep else "")


def _gateway_offline(b: IncidentBuilder) -> None:
    gateway = b.sensor.gateway
    b.offline_gateway = gateway
    b.affected.extend(s for s in b.config.sensors if s.gateway == gateway and s.id != b.sensor.id)
    b.primary(lambda tau: np.zeros_like(tau), lambda tau, base: base, float("nan"))
    b.details = {"backfill": True}
    b.description = f"Gateway {gateway} offline; it backfills its buffered readings when it returns"


_NONE = Limits("above", {"blue": float("inf")}, None)


def _fault(name: str, duration_s: float, build, detectors: tuple[str, ...], description: str) -> IncidentKind:
    return IncidentKind(name, "", "", "", "blue", _NONE, duration_s, 15.0, build, hazard=False,
                        detectors=detectors, alarm_reporting=False, max_level="blue", select=_scalar,
                        description=description)


FAULT_KINDS: dict[str, IncidentKind] = {k.name: k for k in (
    _fault("sensor_stuck", 2 * 3600.0, _stuck, ("quality",), "sensor frozen at one value"),
    _fault("sensor_drift", 4 * 3600.0, _drift, ("quality", "change"), "sensor zero drifting"),
    _fault("sensor_spikes", 2 * 3600.0, _spikes, ("quality",), "isolated wild readings"),
    _fault("sensor_dropout", 3600.0, _dropout, ("deadman",), "sensor silent"),
    _fault("gateway_offline", 2400.0, _gateway_offline, ("deadman",), "gateway offline, then backfill"),
)}

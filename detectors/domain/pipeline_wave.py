"""Negative pressure waves: finding wave fronts in pressure samples and timing them between loggers.

A burst sends a pressure drop both ways along the main at the wave speed a. A logger sees a
*front* when its pressure falls by at least `min_drop` within `front` samples: the mean of the
`pre` samples before the front minus the mean of the last `post` samples (Hefei practice and
DOMAIN.md: a sudden drop beyond a rate). The arrival-time difference between two loggers is the
lag of the peak of the cross-correlation of their pressure derivatives (scipy.signal.correlate),
refined to a fraction of a sample by a parabola through the peak; with the loggers L metres
apart the burst lies x = (L + a * dt) / 2 from the upstream one, dt = upstream minus downstream.
"""

from __future__ import annotations

import numpy as np

POST_SAMPLES = 3  # samples averaged at the bottom of a front
FRONT_RISE_MS = 100.0  # a burst front takes about this long to pass a logger


def front_drops(values: np.ndarray, run_start: np.ndarray, front: np.ndarray, pre: np.ndarray) -> np.ndarray:
    """Pressure fall across a front ending at each sample; NaN where the run is too short.

    values : (n,) float64, samples of several runs (contiguous samples of one logger) back to back
    run_start : (n,) intp, index of the first sample of each sample's run
    front, pre : (n,) intp, samples across the front and averaged before it, per sample

    Returns (n,) float64: mean(values[j-front-pre+1 : j-front+1]) - mean(values[j-POST+1 : j+1]).
    """
    n = values.shape[0]
    cs = np.r_[0.0, np.cumsum(values)]
    j = np.arange(n)
    first = j - front - pre + 1
    ok = first >= run_start
    first_c = np.clip(first, 0, n)
    pre_end = np.clip(j - front + 1, 0, n)
    post_start = np.clip(j - POST_SAMPLES + 1, 0, n)
    with np.errstate(invalid="ignore", divide="ignore"):
        before = (cs[pre_end] - cs[first_c]) / pre
        after = (cs[j + 1] - cs[post_start]) / POST_SAMPLES
    return np.where(ok, before - after, np.nan)


def arrival_difference_ms(ts_a: np.ndarray, v_a: np.ndarray, ts_b: np.ndarray, v_b: np.ndarray, step_ms: float,
                          max_lag_ms: float) -> float | None:
    """Arrival time at logger a minus at logger b (ms) of the same wave, from the peak of the
    cross-correlation of the pressure derivatives on a common grid of `step_ms`; None when
    the two records do not overlap. Lags are searched within +-max_lag_ms."""
    start, end = max(ts_a[0], ts_b[0]) - max_lag_ms, min(ts_a[-1], ts_b[-1]) + max_lag_ms
    start, end = max(start, min(ts_a[0], ts_b[0])), min(end, max(ts_a[-1], ts_b[-1]))
    if end - start < 8 * step_ms:
        return None
    grid = np.arange(start, end + step_ms / 2, step_ms)
    # Derivatives over the rise time of a front (a matched filter against sample noise).
    k = max(1, round(FRONT_RISE_MS / step_ms))
    pa, pb = np.interp(grid, ts_a, v_a), np.interp(grid, ts_b, v_b)
    da, db = pa[k:] - pa[:-k], pb[k:] - pb[:-k]
    if not da.any() or not db.any():
        return None
    from scipy.signal import correlate, correlation_lags  # here: 76 MiB resident (see bridge_modal)

    corr = correlate(da, db, mode="full", method="auto")
    lags = correlation_lags(da.size, db.size, mode="full")
    within = np.abs(lags) * step_ms <= max_lag_ms + step_ms
    corr = np.where(within, corr, -np.inf)
    peak = int(np.argmax(corr))
    shift = 0.0
    if 0 < peak < corr.size - 1 and np.isfinite(corr[peak - 1]) and np.isfinite(corr[peak + 1]):
        left, mid, right = corr[peak - 1], corr[peak], corr[peak + 1]
        curvature = left - 2 * mid + right
        if curvature < 0:
            shift = 0.5 * (left - right) / curvature
    return float((lags[peak] + shift) * step_ms)


def burst_position(length_m: float, wave_speed: float, dt_up_minus_down_s: float) -> float:
    """Metres from the upstream logger: x = (L + a * dt) / 2, within the segment."""
    return float(min(max((length_m + wave_speed * dt_up_minus_down_s) / 2.0, 0.0), length_m))

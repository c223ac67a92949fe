"""Trend slopes and time-to-threshold forecasts: behaviour, and vectorised == scalar reference."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from detectors import _trend_kernel
from detectors.trend import TrendDetector
from detectors.trend_reference import ReferenceTrend
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import parse_config

CITY = textwrap.dedent("""\
    gateways: [{id: g, owner: o}]
    sensors:
      - {id: M1, gateway: g, domain: gas, metrics: {ch4: "%LEL"}, interval: 10}
      - {id: M2, gateway: g, domain: gas, metrics: {ch4: "%LEL"}, interval: 10}
      - {id: T1, gateway: g, domain: hazard, metrics: {pressure: MPa}, interval: 10}
    rules:
      - id: ch4-level
        match: {metric: ch4}
        threshold: {above: {blue: 5, yellow: 10, orange: 20, red: 25}, clear: 0.9}
      - id: ch4-rising
        match: {metric: ch4}
        trend: {window: 120, rising: {yellow: 1.5, red: 4.5}, clear: 0.8}
      - id: ch4-forecast
        match: {metric: ch4}
        trend: {window: 120, forecast: {threshold: ch4-level, horizon: 600}}
    """)


def detector_and_catalogue(text: str = CITY):
    config = parse_config(text)
    catalogue = Catalogue(config)
    return TrendDetector.from_rules(catalogue, config.rules), catalogue, config


def batch(rows: list[tuple[int, int, float]]) -> Batch:
    channel, ts, value = zip(*rows, strict=True) if rows else ((), (), ())
    return Batch(np.array(channel, np.int32), np.array(ts, np.int64), np.array(value, np.float64))


T0 = 1_763_798_400_000


def test_bindings_pair_forecasts_with_the_channels_threshold():
    detector, catalogue, _ = detector_and_catalogue()
    kinds = [(b.rule.id, b.channel.sensor.id) for b in detector.bindings]
    # Channel-major: each channel's rules together, in configuration order.
    assert kinds == [("ch4-rising", "M1"), ("ch4-forecast", "M1"), ("ch4-rising", "M2"), ("ch4-forecast", "M2")]
    assert [p.id for p in detector.paired[1::2]] == ["ch4-level", "ch4-level"]
    assert detector.paired[0] is not None and detector.paired[0].id == "ch4-level"  # a slope rule's limits too


def test_slope_over_irregular_samples_and_forecast_eta():
    detector, catalogue, _ = detector_and_catalogue()
    rising_m1, forecast_m1, rising_m2 = 0, 1, 2  # channel-major bindings (see the test above)
    # CH4 rising 2 %LEL per minute, sampled at irregular times; M2 flat.
    times = [0, 7, 19, 30, 44, 60]
    rows = [(0, T0 + s * 1000, 3.0 + 2.0 * s / 60) for s in times] + [(1, T0 + s * 1000, 1.0) for s in times]
    findings = detector.update(batch(rows))
    assert math.isclose(detector.slope_per_min[rising_m1], 2.0, rel_tol=1e-9)
    assert detector.slope_per_min[rising_m2] == 0.0
    # Rising 2/min raises the slope rule at yellow (>= 1.5).
    raised = [(int(b), int(a)) for b, a in zip(findings.binding, findings.level_after, strict=True)]
    assert (rising_m1, 2) in raised
    # At 5 %LEL rising 2/min: blue (5) is reached; yellow 10 is 2.5 min away, orange 20 in 7.5 min,
    # red 25 in 10 min: all within the 10 min horizon, so the forecast level is red.
    forecast = detector.forecast(forecast_m1)
    assert forecast == {"level": "red", "eta_s": 600, "slope_per_min": 2.0}
    assert (forecast_m1, 4) in raised
    details = detector.details(forecast_m1)
    assert details["kind"] == "forecast" and details["forecast"]["level"] == "red"
    message = detector.message(forecast_m1, 0, 4, 5.0, 3.5)
    assert "red expected; red in 10 min" in message


def test_window_is_in_seconds_and_old_points_leave_it():
    detector, _, _ = detector_and_catalogue()
    # A fast rise long ago, then flat readings for more than the 120 s window.
    rows = [(0, T0 + s * 1000, 3.0 + s) for s in range(0, 10)]
    rows += [(0, T0 + (200 + s) * 1000, 13.0) for s in range(0, 130, 10)]
    detector.update(batch(rows))
    assert detector.slope_per_min[0] == 0.0
    assert detector.forecast(1) is None  # flat: no level is forecast (binding 1: M1's forecast)


def test_late_readings_are_not_evaluated():
    detector, _, _ = detector_and_catalogue()
    detector.update(batch([(0, T0 + s * 1000, 3.0 + s / 60) for s in (0, 10, 20)]))
    before = detector.slope_per_min[0]
    detector.update(batch([(0, T0 + 5000, 90.0)]))
    assert detector.slope_per_min[0] == before


def test_readings_of_one_instant_have_no_slope():
    # Three readings with one timestamp (say a gateway resending): no time passed, so no slope;
    # summed naively, Ctt is a rounding residue and the "slope" -85 per second.
    detector, catalogue, config = detector_and_catalogue()
    reference = ReferenceTrend(catalogue, list(config.rules))
    same_instant = batch([(0, T0 + 3, 0.0), (0, T0 + 3, 1.0), (0, T0 + 3, 0.0)])
    reference.update(batch([(1, T0, 0.0)]))  # the time origin: t = 0.003 s gives the residue
    detector.update(batch([(1, T0, 0.0)]))
    assert len(reference.update(same_instant)) == 0
    assert len(detector.update(same_instant)) == 0
    assert math.isnan(detector.slope_per_min[0])
    assert [math.isnan(stat) for b, _, stat in reference.statistics if b == 0] == [True] * 3


def test_a_window_that_slides_for_hours_keeps_the_slope_of_its_readings():
    # The window is kept as running moments; after thousands of readings entering and leaving
    # it the slope is still that of the readings in it, computed afresh.
    detector, _, _ = detector_and_catalogue()
    rng = np.random.default_rng(3)
    ms = np.cumsum(rng.integers(1_000, 20_000, 5000))
    values = 10 + 1e-5 * ms + rng.normal(0, 0.5, ms.size)
    for part in np.array_split(np.arange(ms.size), 50):
        detector.update(batch([(0, T0 + int(ms[i]), float(values[i])) for i in part]))
    t = ms / 1000
    recent = t >= t[-1] - 120
    recent[: ms.size - 64] = False  # at most max_points (64) readings
    expected = np.polyfit(t[recent], values[recent], 1)[0] * 60
    assert math.isclose(detector.slope_per_min[0], expected, rel_tol=1e-9)


values = st.floats(min_value=0.0, max_value=40.0, allow_nan=False, width=32).map(float)


@st.composite
def batches(draw):
    out = []
    clock = 0
    for _ in range(draw(st.integers(1, 4))):
        rows = []
        for _ in range(draw(st.integers(0, 12))):
            channel = draw(st.integers(0, 2))
            jitter = draw(st.integers(-15_000, 40_000))
            rows.append((channel, T0 + max(0, clock + jitter), draw(values)))
        clock += draw(st.integers(0, 60_000))
        out.append(rows)
    return out


@st.composite
def cities(draw):
    window = draw(st.sampled_from([30, 60, 120, 300]))
    horizon = draw(st.sampled_from([60, 300, 900]))
    hold = draw(st.sampled_from([0, 15]))
    yellow = draw(st.floats(0.25, 3.0, width=32).map(float))
    red = yellow + draw(st.floats(0.5, 6.0, width=32).map(float))
    return CITY.replace("window: 120, rising: {yellow: 1.5, red: 4.5}, clear: 0.8",
                        f"window: {window}, rising: {{yellow: {yellow!r}, red: {red!r}}}, clear: 0.8, for: {hold}, "
                        f"max_points: {draw(st.sampled_from([3, 8, 64]))}") \
               .replace("window: 120, forecast: {threshold: ch4-level, horizon: 600}",
                        f"window: {window}, forecast: {{threshold: ch4-level, horizon: {horizon}}}, for: {hold}")


def _near_a_boundary(reference: ReferenceTrend) -> bool:
    """Slopes computed in a different summation order may differ in the last bits; a case
    whose statistic sits within that noise of a limit or clear value decides nothing."""
    for b, _ts, stat in reference.statistics:
        if math.isnan(stat):
            continue
        spec = reference.bindings[b].rule.spec
        edges = [lim for lim in spec.levels.values()] + [lim * spec.clear for lim in spec.levels.values()]
        if any(abs(stat - edge) <= 1e-7 * max(1.0, abs(edge)) for edge in edges):
            return True
    return False


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cities(), batches())
def test_vectorised_matches_the_scalar_reference(city, feed):
    config = parse_config(city)
    catalogue = Catalogue(config)
    fast = TrendDetector.from_rules(catalogue, config.rules)
    slow = ReferenceTrend(catalogue, list(config.rules))
    found_fast, found_slow = [], []
    for rows in feed:
        found_fast.append(fast.update(batch(rows)))
        found_slow.append(slow.update(batch(rows)))
    assume(not _near_a_boundary(slow))
    for a, b in zip(found_fast, found_slow, strict=True):
        for name in ("binding", "ts", "level_before", "level_after", "started_at"):
            assert getattr(a, name).tolist() == getattr(b, name).tolist(), name
        slope_rows = [i for i, binding in enumerate(a.binding) if fast.bindings[binding].rule.spec.direction]
        np.testing.assert_allclose(a.value[slope_rows], b.value[slope_rows], rtol=1e-9, atol=1e-12)
    last = {}
    for b, _ts, stat in slow.statistics:
        last[b] = stat
    for b, stat in last.items():
        spec = slow.bindings[b].rule.spec
        if spec.direction is not None and not math.isnan(stat):
            assert math.isclose(fast.slope_per_min[b], stat, rel_tol=1e-9, abs_tol=1e-9)


def test_the_kernel_refuses_arrays_it_would_read_or_write_out_of_range():
    detector, _, _ = detector_and_catalogue()
    detector.update(batch([(0, T0, 1.0), (1, T0, 2.0)]))
    state, ring = detector._state, detector._t.base
    n = len(detector.bindings)

    def advance(binding, ts=None, value=None, statistic=None, feed=None, fed=None, state=state, ring=ring):
        m = len(binding)
        _trend_kernel.advance(state, ring, detector._origin_ms, detector._capacity, binding,
                              np.full(m, T0 + 1000, np.int64) if ts is None else ts,
                              np.ones(m) if value is None else value,
                              np.empty(m) if statistic is None else statistic, detector._hot,
                              np.zeros(n, bool) if feed is None else feed,
                              np.empty(m, np.intp) if fed is None else fed)

    before = state.copy(), ring.copy(), detector._hot.copy()
    with pytest.raises(ValueError, match="binding 4 outside"):
        advance(np.array([0, n], np.int32))
    with pytest.raises(ValueError, match="binding -2 outside"):
        advance(np.array([-1, -2], np.int32))
    with pytest.raises(ValueError, match="binding"):
        advance(np.array([0], np.intp))
    with pytest.raises(ValueError, match="ts"):
        advance(np.array([0], np.int32), ts=np.full(1, 1000, np.int32))
    with pytest.raises(ValueError, match="value: expected 2 elements"):
        advance(np.array([0, 1], np.int32), value=np.ones(3))
    with pytest.raises(ValueError, match="statistic"):
        advance(np.array([0], np.int32), statistic=np.empty(1, np.float32))
    with pytest.raises(ValueError, match="feed"):
        advance(np.array([0], np.int32), feed=np.zeros(n + 1, bool))
    with pytest.raises(ValueError, match="fed"):
        advance(np.array([0, 1], np.int32), fed=np.empty(1, np.intp))
    with pytest.raises(ValueError, match="ring: expected"):
        advance(np.array([0], np.int32), ring=ring[:-1])
    # Records of another layout, or plain arrays, are not taken for the state or the ring.
    with pytest.raises(ValueError, match="state: expected a 1-d array of .*-byte record"):
        advance(np.array([0], np.int32), state=np.zeros(n * state.itemsize // 8))
    with pytest.raises(ValueError, match="state: expected"):
        advance(np.array([0], np.int32), state=np.zeros(n, [("last_ts", "<i8"), ("head", "<i4"), ("live", "<i4")]))
    with pytest.raises(ValueError, match="ring: expected"):
        advance(np.array([0], np.int32), ring=detector._t.copy())
    with pytest.raises(ValueError, match="ring: expected"):  # the bindings are counted by the records
        advance(np.array([0], np.int32), state=state[:-1])
    for name in state.dtype.names:
        np.testing.assert_array_equal(state[name], before[0][name], err_msg=name)
    np.testing.assert_array_equal(ring, before[1])
    np.testing.assert_array_equal(detector._hot, before[2])
    advance(np.array([0, 1], np.int32))  # the same arguments, in range, are taken
    assert detector._live[0] == 2
    # A ring position outside its ring (a corrupted record) stops the batch when a reading
    # reaches it, before anything of that binding is read or written; the readings before it
    # were evaluated.
    ring_1 = ring[1 * detector._capacity:2 * detector._capacity].copy()
    record_1 = state[1].copy()
    detector._head[1] = detector._max_points[1]
    with pytest.raises(ValueError, match="binding 1: ring"):
        advance(np.array([0, 1], np.int32), ts=np.full(2, T0 + 2000, np.int64))
    assert detector._live[0] == 3
    for name in state.dtype.names:  # binding 1's record is as it was, but for the corrupted head
        if name != "head":
            assert state[1][name].tobytes() == record_1[name].tobytes(), name
    np.testing.assert_array_equal(ring[1 * detector._capacity:2 * detector._capacity], ring_1)


def test_state_is_one_cache_aligned_record_per_binding_viewed_by_the_attributes():
    detector, _, _ = detector_and_catalogue()
    assert detector._state.ctypes.data % 64 == 0 and detector._state.dtype.itemsize % 64 == 0
    detector.update(batch([(0, T0 + s * 1000, 3.0 + s) for s in (0, 10, 20)]))
    # The kernel wrote the records; the attributes see it (they are views, not copies).
    assert detector._live[0] == 3 == detector._state["live"][0]
    assert detector.slope_per_min[0] == detector._state["slope_per_min"][0] == pytest.approx(60.0)
    assert detector._t[:3].tolist() == [0.0, 10.0, 20.0] and detector._v[:3].tolist() == [3.0, 13.0, 23.0]


def test_the_kernel_skips_rows_without_a_binding_and_late_readings():
    detector, _, _ = detector_and_catalogue()
    detector.update(batch([(0, T0, 1.0), (1, T0, 2.0)]))
    n = len(detector.bindings)
    binding = np.array([-1, 0, 0, 0], np.int32)
    ts = np.array([T0 + 9000, T0 + 2000, T0 + 1000, T0 + 2000], np.int64)  # T0 + 1000 comes late
    statistic = np.zeros(4)
    feed, fed = np.zeros(n, bool), np.full(4, -1, np.intp)
    feed[0] = True  # binding 0 goes to the level machine: all its rows, late ones too (the machine skips them)
    n_fed = _trend_kernel.advance(detector._state, detector._t.base, detector._origin_ms, detector._capacity,
                                  binding, ts, np.ones(4), statistic, detector._hot, feed, fed)
    assert fed[:n_fed].tolist() == [1, 2, 3]
    assert np.isnan(statistic[0]) and np.isnan(statistic[2])
    assert detector._live[0] == 3  # the first reading, then the two at T0 + 2000: equal ts is evaluated
    assert detector._last_ts[0] == T0 + 2000

"""Threshold detector: edge cases, and property tests against the scalar reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import _threshold_kernel
from detectors.batching import stable_argsort
from detectors.threshold import (
    NO_SINCE,
    Binding,
    ThresholdDetector,
    ThresholdFindings,
    empty_findings,
)
from detectors.threshold_reference import ReferenceThresholdDetector, level_specs
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Config, Gateway, Location, Rule, Sensor, Threshold, parse_config
from lifeline.levels import LEVELS

FIELDS = ("binding", "ts", "level_before", "level_after", "value", "limit", "started_at")
DTYPES = (np.int32, np.int64, np.int8, np.int8, np.float64, np.float64, np.int64)


# -- helpers -----------------------------------------------------------------------------------


def make_catalogue(n_sensors: int = 3, metrics: tuple[str, ...] = ("m0", "m1")) -> Catalogue:
    gateways = (Gateway("g0", "water-co"), Gateway("g1", "gas-co"))
    sensors = tuple(
        Sensor(id=f"s{i}", gateway=f"g{i % 2}", domain="gas", type="t", asset=f"a{i}",
               location=Location(0.0, 0.0), metrics={m: "u" for m in metrics}, interval=60.0)
        for i in range(n_sensors))
    return Catalogue(Config(gateways=gateways, sensors=sensors))


def rule(rule_id: str = "r", direction: str = "above", clear: float = 1.0, hold_s: float = 0.0,
         match: dict[str, tuple[str, ...]] | None = None, **levels: float) -> Rule:
    return Rule(rule_id, match if match is not None else {}, Threshold(direction, levels, clear, hold_s))


def single(rule_: Rule) -> tuple[ThresholdDetector, ReferenceThresholdDetector]:
    """Both detectors for one rule bound to channel 0 of a one-channel catalogue."""
    catalogue = make_catalogue(1, ("m",))
    return ThresholdDetector.from_rules(catalogue, [rule_]), ReferenceThresholdDetector.from_rules(catalogue, [rule_])


def batch(rows: list[tuple[int, int, float]]) -> Batch:
    if not rows:
        return Batch.empty()
    channel, ts, value = zip(*rows, strict=True)
    return Batch(np.array(channel, np.int32), np.array(ts, np.int64), np.array(value, np.float64))


def series(values: list[float], step: int = 1000, start: int = 0, channel: int = 0) -> Batch:
    return batch([(channel, start + i * step, v) for i, v in enumerate(values)])


def rows(findings: ThresholdFindings) -> list[tuple]:
    return [tuple(getattr(findings, f)[i].item() for f in FIELDS) for i in range(len(findings))]


def assert_same(got: ThresholdFindings, want: ThresholdFindings) -> None:
    for name, dtype in zip(FIELDS, DTYPES, strict=True):
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == dtype, (name, a.dtype)
        assert b.dtype == dtype, (name, b.dtype)
        assert np.array_equal(a, b), (name, rows(got), rows(want))


def assert_same_state(det: ThresholdDetector, ref: ReferenceThresholdDetector) -> None:
    assert np.array_equal(det.level(), ref.level())
    for i, state in enumerate(ref.states):
        since = [NO_SINCE if s is None else s for s in state.since[1:]]
        assert det._since[i].tolist() == since, (i, det._since[i], state.since)
        if state.last_ts is not None:
            assert det._last_ts[i] == state.last_ts
        else:
            assert det._last_ts[i] == np.iinfo(np.int64).min


def run_both(det: ThresholdDetector, ref: ReferenceThresholdDetector, b: Batch) -> ThresholdFindings:
    got = det.update(b)
    assert_same(got, ref.update(b))
    assert_same_state(det, ref)
    return got


# -- binding ------------------------------------------------------------------------------------


def test_from_rules_binds_matching_channels_channel_major() -> None:
    catalogue = make_catalogue(3, ("ch4", "temp"))
    r1 = rule("r1", match={"metric": ("ch4",)}, red=10)
    r2 = rule("r2", match={"owner": ("gas-co",)}, red=10)  # s1 is on g1 (gas-co)
    det = ThresholdDetector.from_rules(catalogue, [r1, r2])
    got = [(b.index, b.rule.id, b.channel.sensor.id, b.channel.metric) for b in det.bindings]
    assert got == [
        (0, "r1", "s0", "ch4"), (1, "r1", "s1", "ch4"), (2, "r2", "s1", "ch4"),
        (3, "r2", "s1", "temp"), (4, "r1", "s2", "ch4"),
    ]
    assert all(isinstance(b, Binding) for b in det.bindings)
    assert det.level().dtype == np.int8 and det.level().shape == (5,)


def test_from_rules_with_parsed_config() -> None:
    config = parse_config("""
gateways: [{id: g, owner: city}]
sensors:
  - {id: a, gateway: g, domain: gas, metrics: {ch4: "%LEL"}}
  - {id: b, gateway: g, domain: bridge, metrics: {strain: ue}}
rules:
  - id: gas-high
    match: {domain: gas, metric: ch4}
    threshold: {above: {yellow: 10, red: 25}, clear: 0.8, for: 5}
""")
    catalogue = Catalogue(config)
    det = ThresholdDetector.from_rules(catalogue, config.rules)
    assert [(b.channel.sensor.id, b.channel.metric) for b in det.bindings] == [("a", "ch4")]
    found = det.update(batch([(0, 0, 30.0), (1, 0, 1e9), (0, 5000, 30.0)]))
    assert rows(found) == [(0, 5000, 0, 4, 30.0, 25.0, 0)]


def test_no_bindings_and_empty_batches() -> None:
    det = ThresholdDetector.from_rules(make_catalogue(), [])
    assert len(det.update(series([1.0, 2.0]))) == 0
    det = ThresholdDetector.from_rules(make_catalogue(), [rule(red=1)])
    assert_same(det.update(Batch.empty()), empty_findings())
    assert len(empty_findings()) == 0


def test_rows_without_binding_or_unknown_channel_are_ignored() -> None:
    catalogue = make_catalogue(2, ("m",))
    det = ThresholdDetector.from_rules(catalogue, [rule(match={"id": ("s1",)}, red=5)])
    found = det.update(batch([(0, 0, 100.0), (7, 0, 100.0), (-1, 0, 100.0), (1, 0, 100.0)]))
    assert rows(found) == [(0, 0, 0, 4, 100.0, 5.0, 0)]


# -- levels, hysteresis, hold ----------------------------------------------------------------------


def test_above_raise_escalate_deescalate_clear_with_hysteresis() -> None:
    det, ref = single(rule(clear=0.5, blue=10, red=20))  # clear values 5 and 10
    found = run_both(det, ref, series([9, 10, 25, 12, 10, 9, 5, 4.9, 7]))
    assert rows(found) == [
        (0, 1000, 0, 1, 10.0, 10.0, 1000),
        (0, 2000, 1, 4, 25.0, 20.0, 1000),
        (0, 5000, 4, 1, 9.0, 10.0, 1000),   # 12 and 10 still hold red (clear value 10)
        (0, 7000, 1, 0, 4.9, 10.0, 1000),   # clearing row: limit and start of the ended condition
    ]
    assert det.level().tolist() == [0]


def test_band_cannot_raise() -> None:
    det, ref = single(rule(clear=0.5, red=10))
    assert len(run_both(det, ref, series([6, 9.99, 7]))) == 0
    assert rows(run_both(det, ref, series([10, 6], start=10_000))) == [(0, 10_000, 0, 4, 10.0, 10.0, 10_000)]


def test_below_with_negative_limits_keeps_hysteresis_on_the_safe_side() -> None:
    # below -10 with clear 0.5: clear value -10 + 10 * (2 - 1) = 0 (not -10 / 0.5 = -20)
    r = rule(direction="below", clear=0.5, red=-10)
    assert level_specs(r)[0].clear_value == 0.0
    det, ref = single(r)
    found = run_both(det, ref, series([-5, -10, -1, 0, 0.5]))
    assert rows(found) == [(0, 1000, 0, 4, -10.0, -10.0, 1000), (0, 4000, 4, 0, 0.5, -10.0, 1000)]


def test_above_with_negative_limit() -> None:
    # above -10 with clear 0.5: clear value -10 - 0.5 * 10 = -15
    det, ref = single(rule(clear=0.5, red=-10))
    found = run_both(det, ref, series([-11, -10, -15, -15.5]))
    assert rows(found) == [(0, 1000, 0, 4, -10.0, -10.0, 1000), (0, 3000, 4, 0, -15.5, -10.0, 1000)]


def test_hold_delays_raising_only() -> None:
    det, ref = single(rule(hold_s=2, yellow=10, red=20))
    found = run_both(det, ref, series([10, 20, 25, 25, 11, 5]))
    assert rows(found) == [
        (0, 2000, 0, 2, 25.0, 10.0, 0),      # yellow run began at 0, red at 1000
        (0, 3000, 2, 4, 25.0, 20.0, 0),
        (0, 4000, 4, 2, 11.0, 10.0, 0),      # lowering is immediate
        (0, 5000, 2, 0, 5.0, 10.0, 0),
    ]


def test_hold_restarts_after_a_broken_run() -> None:
    det, ref = single(rule(hold_s=1, red=10))
    found = run_both(det, ref, series([10, 5, 10, 10, 10], step=600))
    assert rows(found) == [(0, 2400, 0, 4, 10.0, 10.0, 1200)]


def test_hold_of_zero_raises_at_once_and_equal_hold_boundary() -> None:
    det, ref = single(rule(hold_s=0.5, red=1))
    found = run_both(det, ref, series([1, 1, 1], step=250))
    assert rows(found) == [(0, 500, 0, 4, 1.0, 1.0, 0)]  # t - since == hold is enough


# -- ordering -------------------------------------------------------------------------------------


def test_out_of_order_within_a_batch_is_sorted() -> None:
    det, ref = single(rule(red=10))
    found = run_both(det, ref, batch([(0, 3000, 1.0), (0, 1000, 50.0), (0, 2000, 2.0)]))
    assert rows(found) == [(0, 1000, 0, 4, 50.0, 10.0, 1000), (0, 2000, 4, 0, 2.0, 10.0, 1000)]


def test_equal_timestamps_keep_batch_order() -> None:
    det, ref = single(rule(red=10))
    found = run_both(det, ref, batch([(0, 1000, 50.0), (0, 1000, 1.0), (0, 1000, 60.0)]))
    assert [r[3] for r in rows(found)] == [4, 0, 4]


def test_late_readings_are_not_evaluated_but_equal_ts_is() -> None:
    det, ref = single(rule(red=10))
    run_both(det, ref, series([1, 2], start=5000))  # last_ts 6000
    assert len(run_both(det, ref, batch([(0, 5999, 99.0)]))) == 0
    assert rows(run_both(det, ref, batch([(0, 6000, 99.0)]))) == [(0, 6000, 0, 4, 99.0, 10.0, 6000)]
    # within one batch an earlier reading is not late, only against earlier batches
    found = run_both(det, ref, batch([(0, 9000, 1.0), (0, 7000, 1.0), (0, 4000, 99.0)]))
    assert rows(found) == [(0, 7000, 4, 0, 1.0, 10.0, 6000)]


def test_several_rules_on_one_channel() -> None:
    catalogue = make_catalogue(2, ("m",))
    rules = [rule("hi", red=10), rule("lo", direction="below", yellow=0, red=-5)]
    det = ThresholdDetector.from_rules(catalogue, rules)
    ref = ReferenceThresholdDetector.from_rules(catalogue, rules)
    assert len(det.bindings) == 4
    found = run_both(det, ref, batch([(1, 2000, -6.0), (0, 1000, 11.0), (1, 1000, 12.0), (0, 2000, -1.0)]))
    assert [(r[0], r[1], r[3]) for r in rows(found)] == [
        (0, 1000, 4), (0, 2000, 0), (1, 2000, 2), (2, 1000, 4), (2, 2000, 0), (3, 2000, 4)]


# -- restore and level ---------------------------------------------------------------------------------


def test_restore_then_clear_reports_restored_start() -> None:
    det, ref = single(rule(hold_s=60, yellow=10, red=20))
    for d in (det, ref):
        d.restore(0, 4, started_at=100, last_ts=5000)
    assert det.level().tolist() == [4]
    assert len(run_both(det, ref, batch([(0, 4000, 0.0)]))) == 0  # late
    found = run_both(det, ref, series([15, 0], start=6000))
    assert rows(found) == [(0, 6000, 4, 2, 15.0, 10.0, 100), (0, 7000, 2, 0, 0.0, 10.0, 100)]


def test_restore_rejects_undefined_level() -> None:
    det, _ = single(rule(red=20))
    with pytest.raises(ValueError):
        det.restore(0, 2, 0, 0)
    with pytest.raises(IndexError):
        det.restore(1, 4, 0, 0)
    with pytest.raises(ValueError):
        det.restore(0, 4, started_at=10, last_ts=9)  # a condition cannot start after the newest reading


def test_level_is_a_copy() -> None:
    det, _ = single(rule(red=1))
    det.level()[0] = 3
    assert det.level().tolist() == [0]


def test_bindings_must_be_numbered_in_order() -> None:
    catalogue = make_catalogue(1, ("m",))
    binding = Binding(1, rule(red=1), catalogue.channels[0])
    with pytest.raises(ValueError):
        ThresholdDetector([binding], len(catalogue))


# -- property tests against the reference -------------------------------------------------------------

N_SENSORS = 3
METRICS = ("m0", "m1")
N_CHANNELS = N_SENSORS * len(METRICS)
HOLDS = (0.0, 0.001, 0.5, 1.0, 2.0, 3.7)
CLEARS = (1.0, 0.95, 0.5, 0.3, 0.1)


@st.composite
def thresholds(draw: st.DrawFn) -> Threshold:
    direction = draw(st.sampled_from(["above", "below"]))
    colours = draw(st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4, unique=True))
    colours = [c for c in LEVELS if c in colours]
    limits = sorted(draw(st.lists(st.integers(-40, 40), min_size=len(colours), max_size=len(colours),
                                  unique=True)))
    scale = draw(st.sampled_from([1.0, 0.5, 0.1]))
    values = [x * scale for x in limits]
    if direction == "below":
        values.reverse()
    clear = draw(st.sampled_from(CLEARS) | st.floats(0.01, 1.0))
    hold = draw(st.sampled_from(HOLDS))
    return Threshold(direction, dict(zip(colours, values, strict=True)), clear, hold)


@st.composite
def rules_strategy(draw: st.DrawFn, max_rules: int = 3) -> list[Rule]:
    n = draw(st.integers(1, max_rules))
    rules = []
    for i in range(n):
        match: dict[str, tuple[str, ...]] = {}
        if draw(st.booleans()):
            ids = draw(st.lists(st.sampled_from([f"s{k}" for k in range(N_SENSORS)]), min_size=1, unique=True))
            match["id"] = tuple(ids)
        if draw(st.booleans()):
            match["metric"] = (draw(st.sampled_from(METRICS)),)
        rules.append(Rule(f"r{i}", match, draw(thresholds())))
    return rules


def interesting_values(rules: list[Rule]) -> list[float]:
    values = [0.0]
    for r in rules:
        for spec in level_specs(r):
            for x in (spec.limit, spec.clear_value):
                values += [x, float(np.nextafter(x, np.inf)), float(np.nextafter(x, -np.inf))]
    return values


@st.composite
def scenarios(draw: st.DrawFn, one_per_channel: bool = False, max_rules: int = 3):
    rules = draw(rules_strategy(max_rules))
    pool = interesting_values(rules)
    value = st.sampled_from(pool) | st.floats(-60, 60, allow_nan=False)
    channel = st.integers(0, N_CHANNELS - 1)
    batches = []
    clock = 0
    for _ in range(draw(st.integers(1, 5))):
        # Timestamps wander around a moving clock so that some readings are late, some equal.
        clock += draw(st.sampled_from([0, 250, 1000, 3000]))
        ts = st.integers(max(0, clock - 3000), clock + 3000).map(lambda t: t - t % 250)
        if one_per_channel:
            chans = draw(st.lists(channel, max_size=N_CHANNELS, unique=True))
            batch_rows = [(c, draw(ts), draw(value)) for c in chans]
        else:
            batch_rows = draw(st.lists(st.tuples(channel, ts, value), max_size=25))
        batches.append(batch(batch_rows))
    restores = draw(st.lists(st.tuples(st.integers(0, 100), st.integers(0, 4), st.integers(0, 3000),
                                       st.integers(0, 3000)), max_size=3))
    return rules, batches, restores


def check_scenario(rules: list[Rule], batches: list[Batch], restores: list[tuple[int, int, int, int]]) -> None:
    catalogue = make_catalogue(N_SENSORS, METRICS)
    det = ThresholdDetector.from_rules(catalogue, rules)
    ref = ReferenceThresholdDetector.from_rules(catalogue, rules)
    for b, level, started, last in restores:
        if not det.bindings:
            break
        b %= len(det.bindings)
        defined = [0] + [s.level for s in level_specs(det.bindings[b].rule)]
        level = defined[level % len(defined)]
        det.restore(b, level, started, max(started, last))
        ref.restore(b, level, started, max(started, last))
    assert_same_state(det, ref)
    for b in batches:
        run_both(det, ref, b)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_matches_reference(scenario) -> None:
    check_scenario(*scenario)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(one_per_channel=True, max_rules=1))
def test_matches_reference_one_reading_per_binding(scenario) -> None:
    # One rule and at most one reading per channel: the single-round, direct-map fast path.
    check_scenario(*scenario)


@settings(max_examples=100, deadline=None)
@given(rules_strategy(), st.lists(st.floats(-60, 60), min_size=1, max_size=40),
       st.lists(st.integers(0, 2000), min_size=1, max_size=40))
def test_long_series_in_one_batch_equals_reading_by_reading(rules, values, steps) -> None:
    # Batching must not matter when readings arrive in time order.
    catalogue = make_catalogue(N_SENSORS, METRICS)
    whole = ThresholdDetector.from_rules(catalogue, rules)
    piecewise = ThresholdDetector.from_rules(catalogue, rules)
    ts = np.cumsum(steps)
    readings = [(i % N_CHANNELS, int(ts[i % len(ts)]) + i // len(ts) * 100_000, v)
                for i, v in enumerate(values)]
    readings.sort(key=lambda r: r[1])
    found = whole.update(batch(readings))
    parts = [piecewise.update(batch([r])) for r in readings]
    got = sorted(rows(found))
    want = sorted(r for p in parts for r in rows(p))
    assert got == want
    assert np.array_equal(whole.level(), piecewise.level())


@pytest.mark.parametrize("upper", [1, 300, 1 << 16, (1 << 16) + 1, 1 << 20, 1 << 40])
def test_stable_argsort_matches_numpy(upper: int) -> None:
    keys = np.random.default_rng(upper).integers(0, upper, 5000)
    assert np.array_equal(stable_argsort(keys, upper), np.argsort(keys, kind="stable"))


@pytest.mark.parametrize("shuffle", [False, True])
def test_larger_random_batches_match_reference(shuffle: bool) -> None:
    # Many bindings per round, overlapping rules, repeated and shuffled readings.
    catalogue = make_catalogue(500, ("a", "b", "c"))
    rules = [
        rule("r1", match={"metric": ("a", "b")}, clear=0.8, hold_s=2, blue=10, yellow=20, red=40),
        rule("r2", direction="below", clear=0.5, hold_s=0, blue=0, orange=-10, red=-20),
        rule("r3", match={"owner": ("gas-co",)}, clear=0.9, hold_s=1, red=30),
    ]
    det = ThresholdDetector.from_rules(catalogue, rules)
    ref = ReferenceThresholdDetector.from_rules(catalogue, rules)
    rng = np.random.default_rng(7)
    value = rng.uniform(-30, 50, len(catalogue))
    for k in range(6):
        n = len(catalogue) * 4
        channel = rng.integers(0, len(catalogue), n).astype(np.int32)
        ts = (k * 4000 + rng.integers(-1500, 4000, n) // 250 * 250).astype(np.int64)
        value = value + rng.normal(0, 6, len(catalogue))
        values = value[channel] + rng.normal(0, 3, n)
        if not shuffle:
            order = np.argsort(ts, kind="stable")
            channel, ts, values = channel[order], ts[order], values[order]
        run_both(det, ref, Batch(channel, ts, values))


# -- the C kernel ---------------------------------------------------------------------------------


def kernel_args(det: ThresholdDetector, binding, ts, value, capacity: int = 8) -> list:
    found = [np.empty(capacity, dtype) for dtype in DTYPES]
    return [np.asarray(binding), np.asarray(ts), np.asarray(value), det._rule, det._limit.reshape(-1),
            det._clear_value.reshape(-1), det._above, det._hold_ms, det._reach, det._level,
            det._since.reshape(-1), det._last_ts, *found]


def state_of(det: ThresholdDetector) -> tuple:
    return det._level.copy(), det._since.copy(), det._last_ts.copy()


def test_kernel_refuses_bad_arguments_and_leaves_the_state_alone() -> None:
    catalogue = make_catalogue(2, ("m",))
    det = ThresholdDetector.from_rules(catalogue, [rule(hold_s=1, yellow=10, red=20)])
    det.update(series([15.0, 25.0]))  # some state to keep
    before = state_of(det)
    good = kernel_args(det, np.array([0, 1], np.int32), np.array([5000, 5000], np.int64), np.array([30.0, 30.0]))
    bad_cases = {
        "binding int64": (0, np.array([0, 1], np.int64)),
        "binding past the end": (0, np.array([0, 2], np.int32)),
        "binding below -1": (0, np.array([-2, 0], np.int32)),
        "ts shorter": (1, np.array([5000], np.int64)),
        "value float32": (2, np.array([30.0, 30.0], np.float32)),
        "rule row past the table": (3, np.array([0, 1], np.int32)),
        "rule table short": (3, np.zeros(1, np.int32)),
        "limit not whole rows": (4, np.zeros(3)),
        "above not bool": (6, np.ones(1, np.int8)),
        "level outside 0..4": (9, np.array([0, 5], np.int8)),
        "since too short": (10, np.full(4, NO_SINCE, np.int64)),
        "state read-only": (11, np.full(2, -1, np.int64)),
        "findings of unequal length": (13, np.empty(7, np.int64)),
    }
    for name, (position, array) in bad_cases.items():
        if name == "state read-only":
            array.flags.writeable = False
        args = list(good)
        args[position] = array
        with pytest.raises(ValueError):
            _threshold_kernel.evaluate(*args)
        for got, want in zip(state_of(det), before, strict=True):
            assert np.array_equal(got, want), name
    shared = list(good)
    shared[12] = shared[0]  # findings written over the binding numbers being read
    with pytest.raises(ValueError):
        _threshold_kernel.evaluate(*shared)
    memory = np.zeros(8, np.uint8)  # valid rule rows and levels, but in the same bytes
    shared = list(good)
    shared[3], shared[9] = memory.view(np.int32), memory[:2].view(np.int8)
    with pytest.raises(ValueError):
        _threshold_kernel.evaluate(*shared)
    shared[9] = np.zeros(2, np.int8)
    shared[10], shared[11] = shared[10].copy(), shared[11].copy()
    assert _threshold_kernel.evaluate(*shared) == (2, 1)  # apart, the same arrays are fine
    for got, want in zip(state_of(det), before, strict=True):
        assert np.array_equal(got, want)
    assert _threshold_kernel.evaluate(*good) == (2, 1)  # with good arguments it runs: binding 0 goes red
    with pytest.raises(ValueError):
        det.update_bindings(np.array([0, 2]), np.array([1, 2]), np.array([1.0, 2.0]))


def test_kernel_checks_the_bindings_of_a_small_batch_one_by_one() -> None:
    # Far fewer readings than bindings: only the rule rows and levels of those read are checked.
    det = ThresholdDetector.from_rules(make_catalogue(40, ("m",)), [rule(red=10)])
    before = state_of(det)
    for position, array in ((3, np.where(np.arange(40) == 7, 1, 0).astype(np.int32)),
                            (9, np.where(np.arange(40) == 7, 5, 0).astype(np.int8))):
        args = kernel_args(det, np.array([7], np.int32), np.array([0], np.int64), np.array([50.0]))
        args[position] = array
        with pytest.raises(ValueError):
            _threshold_kernel.evaluate(*args)
        args = kernel_args(det, np.array([6], np.int32), np.array([0], np.int64), np.array([50.0]))
        args[position] = array
        args[9] = args[9].copy()  # binding 7 is not read: the call runs, on copies of the state
        args[10], args[11] = args[10].copy(), args[11].copy()
        assert _threshold_kernel.evaluate(*args) == (1, 1)
        for got, want in zip(state_of(det), before, strict=True):
            assert np.array_equal(got, want)


def test_kernel_stops_when_the_findings_are_full_and_resumes() -> None:
    det, ref = single(rule(red=10))
    values = [50.0, 1.0] * 3
    args = kernel_args(det, np.zeros(6, np.int32), np.arange(6, dtype=np.int64) * 1000, np.array(values), capacity=4)
    assert _threshold_kernel.evaluate(*args) == (4, 4)  # the fifth reading could need a row: not evaluated
    assert det._last_ts[0] == 3000
    ref.update(series(values[:4]))
    assert_same_state(det, ref)


def test_more_findings_than_the_first_capacity() -> None:
    # A flapping channel: a change for every reading, more than the rows first set aside.
    det, ref = single(rule(red=10))
    run_both(det, ref, series([50.0, 1.0] * 3000))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(max_rules=1))
def test_update_bindings_matches_update(scenario) -> None:
    # One rule: a channel has one binding at most, and its readings are that binding's stream.
    rules, batches, _ = scenario
    catalogue = make_catalogue(N_SENSORS, METRICS)
    by_batch = ThresholdDetector.from_rules(catalogue, rules)
    by_binding = ThresholdDetector.from_rules(catalogue, rules)
    binding_of = {b.channel.index: b.index for b in by_batch.bindings}
    for b in batches:
        rows_ = [i for i in range(len(b)) if int(b.channel[i]) in binding_of]
        stream = np.array([binding_of[int(b.channel[i])] for i in rows_], np.int32)
        assert_same(by_binding.update_bindings(stream, b.ts[rows_], b.value[rows_]), by_batch.update(b))


@pytest.mark.parametrize("per_batch", [3, 10, 200])  # sorted outright; counting sort; in order or not
def test_update_bindings_matches_the_reference(per_batch: int) -> None:
    catalogue = make_catalogue(40, ("m",))
    rules = [rule(clear=0.8, hold_s=1, yellow=10, red=20)]
    det = ThresholdDetector.from_rules(catalogue, rules)
    ref = ReferenceThresholdDetector.from_rules(catalogue, rules)
    rng = np.random.default_rng(per_batch)
    for k in range(8):
        stream = rng.integers(0, 40, per_batch).astype(np.int32)
        ts = k * 2000 + rng.integers(0, 8, per_batch) * 250
        if k % 2:  # each stream in time order, streams interleaved
            order = np.argsort(ts, kind="stable")
            stream, ts = stream[order], ts[order]
        value = rng.uniform(0, 30, per_batch)
        assert_same(det.update_bindings(stream, ts, value), ref.update(Batch(stream, ts, value)))
        assert_same_state(det, ref)

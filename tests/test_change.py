"""Change detection (CUSUM, EWMA on a learned baseline): behaviour, and vectorised == reference."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import _change_kernel
from detectors.change import ChangeDetector
from detectors.change_reference import ReferenceChangeDetector
from detectors.threshold import NO_SINCE, ThresholdDetector, ThresholdFindings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Config, Gateway, Location, Rule, Sensor, Threshold, parse_config
from lifeline.levels import LEVELS
from lifeline.rule_kinds import Change

FIELDS = ("binding", "ts", "level_before", "level_after", "value", "limit", "started_at")
T0 = 1_763_798_400_000
STEP = 10_000  # ms between readings


# -- helpers -------------------------------------------------------------------------------------


def make_catalogue(n_sensors: int = 1, metrics: tuple[str, ...] = ("strain",), unit: str = "microstrain") -> Catalogue:
    sensors = tuple(
        Sensor(id=f"s{i}", gateway="g", domain="bridge", type="t", asset=f"a{i}", location=Location(0.0, 0.0),
               metrics={m: unit for m in metrics}, interval=10.0)
        for i in range(n_sensors))
    return Catalogue(Config(gateways=(Gateway("g", "city"),), sensors=sensors))


def change_rule(rule_id: str = "c", method: str = "cusum", levels: dict[str, float] | None = None, k: float = 0.5,
                lam: float = 0.2, warmup: int = 30, learn: float = 0.01, direction: str = "both",
                hold_s: float = 0.0, match: dict[str, tuple[str, ...]] | None = None) -> Rule:
    if levels is None:
        levels = {"yellow": 5.0, "orange": 8.0, "red": 12.0} if method == "cusum" else {
            "yellow": 3.0, "orange": 4.0, "red": 5.0}
    spec = Change(method=method, levels=levels, k=k, lam=lam, warmup=warmup, learn=learn, direction=direction,
                  hold_s=hold_s)
    return Rule(rule_id, match or {}, None, kind="change", spec=spec)


def single(rule: Rule) -> ChangeDetector:
    return ChangeDetector.from_rules(make_catalogue(), [rule])


def series(values, start: int = 0, channel: int = 0) -> Batch:
    """Readings of one channel every STEP ms, the first at T0 + start * STEP."""
    values = np.asarray(values, np.float64)
    ts = T0 + (start + np.arange(values.size, dtype=np.int64)) * STEP
    return Batch(np.full(values.size, channel, np.int32), ts, values)


def rows(found: ThresholdFindings) -> list[tuple]:
    return [tuple(getattr(found, f)[i].item() for f in FIELDS) for i in range(len(found))]


def reading_index(ts: int) -> int:
    return (ts - T0) // STEP


def steady(n: int, mean: float = 120.0, sigma: float = 1.0) -> np.ndarray:
    """Deterministic 'noise': alternately mean + sigma and mean - sigma."""
    return mean + sigma * np.where(np.arange(n) % 2 == 0, 1.0, -1.0)


# -- binding -------------------------------------------------------------------------------------


def test_binds_change_rules_only_from_a_parsed_config() -> None:
    config = parse_config(textwrap.dedent("""\
        gateways: [{id: g, owner: city}]
        sensors:
          - {id: B1, gateway: g, domain: bridge, metrics: {strain: microstrain, temp: degC}}
          - {id: B2, gateway: g, domain: bridge, metrics: {strain: microstrain}}
        rules:
          - id: strain-high
            match: {metric: strain}
            threshold: {above: {red: 500}}
          - id: strain-shift
            match: {metric: strain}
            change: {method: cusum, k: 0.5, levels: {yellow: 5, orange: 8, red: 12}, warmup: 20}
          - id: temp-shift
            match: {sensor: B1, metric: temp}
            change: {method: ewma, lambda: 0.2, direction: up}
        """))
    det = ChangeDetector.from_rules(Catalogue(config), config.rules)
    assert det.kind == "change"
    assert [(b.index, b.rule.id, b.channel.sensor.id, b.channel.metric) for b in det.bindings] == [
        (0, "strain-shift", "B1", "strain"), (1, "temp-shift", "B1", "temp"), (2, "strain-shift", "B2", "strain")]
    assert det.level().tolist() == [0, 0, 0]
    assert len(ChangeDetector.from_rules(Catalogue(config), []).update(series([1.0]))) == 0


# -- behaviour -----------------------------------------------------------------------------------


def test_cusum_catches_a_two_sigma_step_that_never_crosses_a_fixed_threshold() -> None:
    catalogue = make_catalogue()
    det = ChangeDetector.from_rules(catalogue, [change_rule()])
    # The design-value threshold at 5 sigma above the normal strain.
    fixed = ThresholdDetector.from_rules(catalogue, [Rule("fixed", {}, Threshold("above", {"red": 125.0}, 1.0, 0))])
    values = np.r_[steady(60), steady(30) + 2.0]  # a 2 sigma step at reading 60
    assert values.max() < 125.0
    found = det.update(series(values))
    assert len(fixed.update(series(values))) == 0
    raised = [(reading_index(ts), after) for ts, after in zip(found.ts, found.level_after, strict=True)]
    # Nothing before the step; then yellow, orange and red within a few readings of it.
    assert [after for _, after in raised] == [2, 3, 4]
    assert all(60 <= i <= 70 for i, _ in raised)
    assert found.value[0] >= 5.0 and found.limit.tolist() == [5.0, 8.0, 12.0]
    assert found.started_at[0] == found.ts[0]


def test_warm_up_gives_no_verdict() -> None:
    det = single(change_rule(warmup=5))
    wild = [0.0, 1000.0, -1000.0, 5.0, 7.0]
    assert len(det.update(series(wild))) == 0
    assert det.details(0)["statistic"] is None
    assert det.baseline(0) is not None  # formed by the 5th reading
    mean, sigma = det.baseline(0)
    assert mean == np.mean(wild) and math.isclose(sigma, np.std(wild, ddof=1))
    # The first reading after the warm-up is judged: far outside the baseline -> an alarm.
    found = det.update(series([1e6], start=5))
    assert rows(found)[0][3] == 4
    assert det.details(0)["statistic"] == 12.0  # CUSUM capped at the highest level


def test_warm_up_is_per_binding_and_readings_before_it_complete_have_no_baseline() -> None:
    det = single(change_rule(warmup=3))
    det.update(series([1.0, 2.0]))
    assert det.baseline(0) is None
    assert det.details(0)["baseline"] is None


def test_normal_readings_are_learned_alarm_readings_are_not() -> None:
    det = single(change_rule(warmup=10, learn=0.1))
    det.update(series(steady(10)))
    mean0, _ = det.baseline(0)
    det.update(series([120.5, 119.5, 120.5], start=10))  # normal: learned
    mean1, _ = det.baseline(0)
    assert mean1 != mean0
    found = det.update(series(steady(10, mean=126.0), start=13))  # 6 sigma up: alarm
    assert found.level_after.max() > 0
    # From the reading that led to the alarm on, the baseline stays where it was.
    assert det.baseline(0)[0] == mean1


def test_slow_rise_is_not_absorbed_into_the_baseline() -> None:
    # A slow CH4 rise of 0.1 sigma per reading, with a baseline that learns quickly.
    det = single(change_rule(warmup=20, learn=0.1, direction="up"))
    det.update(series(steady(20, mean=2.0, sigma=0.1)))
    ramp = 2.0 + 0.01 * np.arange(1, 200) + steady(199, mean=0.0, sigma=0.1)
    found = det.update(series(ramp, start=20))
    assert 4 in found.level_after.tolist()  # reaches red despite learning
    assert det.level()[0] == 4
    # The baseline froze once the statistic passed the lowest level: it lags far behind.
    assert det.baseline(0)[0] < 2.5 < ramp[-1]


def test_alarm_clear_restarts_the_cusum() -> None:
    det = single(change_rule(warmup=10))
    det.update(series(steady(10)))
    up = det.update(series(steady(200, mean=125.0), start=10))  # long alarm
    assert det.level()[0] == 4 and len(up) == 3
    assert det.details(0)["statistic"] == 12.0  # the sum is capped at red, not ~900
    back = det.update(series(steady(30), start=210))
    assert back.level_after.tolist()[-1] == 0
    cleared_at = reading_index(int(back.ts[-1])) - 210
    # Bounded by the cap: back at the mean the sum falls by k per reading, (12 - 0.8 * 5) / 0.5 = 16.
    assert cleared_at <= 16
    # After the restart the sum begins again at 0: a normal reading gives a small statistic.
    assert det.details(0)["statistic"] < 1.0


def test_ewma_detects_shift_and_direction_filters_its_sign() -> None:
    catalogue = make_catalogue(1)
    rules = [change_rule("both", method="ewma"), change_rule("up", method="ewma", direction="up"),
             change_rule("down", method="ewma", direction="down")]
    det = ChangeDetector.from_rules(catalogue, rules)
    det.update(series(steady(30)))
    found = det.update(series(steady(20, mean=117.5), start=30))  # 2.5 sigma down
    raised = {int(b) for b in found.binding[found.level_after > 0]}
    assert raised == {0, 2}
    assert det.details(0)["method"] == "ewma"
    assert det.message(2, 0, 4, 5.3, 5.0).startswith("strain EWMA 5.3 sigma below baseline 119.9 microstrain")


def test_hold_time_delays_the_level() -> None:
    det = single(change_rule(warmup=10, hold_s=30))
    det.update(series(steady(10)))
    found = det.update(series(steady(20, mean=130.0), start=10))
    first = rows(found)[0]
    # The statistic passed yellow at once; the level waits 30 s (3 readings).
    assert first[2] == 0 and first[3] >= 2 and reading_index(first[1]) == 13
    assert first[6] == T0 + 10 * STEP  # started when the run began


def test_zero_sigma_baseline_is_floored() -> None:
    # Bindings (channel-major): 0 cusum/ch0, 1 ewma/ch0, 2 cusum/ch1, 3 ewma/ch1; both channels
    # constant in warm-up.
    det = ChangeDetector.from_rules(make_catalogue(2, ("m",)), [change_rule(warmup=5), change_rule(
        "e", method="ewma", warmup=5)])
    det.update(Batch(np.repeat(np.array([0, 1], np.int32), 5), np.tile(T0 + np.arange(5) * STEP, 2),
                     np.r_[np.full(5, 50.0), np.zeros(5)]))
    assert det.baseline(0) == (50.0, 0.05)  # 0.1 % of the mean
    assert det.baseline(2) == (0.0, 1e-9)  # absolute floor for a zero mean
    det.update(Batch(np.array([0, 1], np.int32), np.full(2, T0 + 5 * STEP), np.array([50.01, 0.0])))
    assert det.details(0)["statistic"] == 0.0  # z = 0.2, below the allowance k
    assert det.level().tolist() == [0, 0, 0, 0]
    det.update(Batch(np.array([0, 1], np.int32), np.full(2, T0 + 6 * STEP), np.array([51.0, 1.0])))
    stats = [det.details(i)["statistic"] for i in range(4)]
    assert all(math.isfinite(s) for s in stats), stats
    assert det.level().tolist() == [4, 4, 4, 4]


def test_details_and_message() -> None:
    det = single(change_rule(warmup=10))
    det.update(series(steady(10, mean=120.3)))
    found = det.update(series([127.0, 127.0], start=10))
    details = det.details(0)
    assert details["kind"] == "change" and details["method"] == "cusum"
    assert details["baseline"]["mean"] == 120.3 and math.isclose(details["baseline"]["sigma"], 1.0540925533894598)
    assert details["statistic"] == round(float(found.value[-1]), 3)
    assert details["reading"] == 127.0
    b, ts, before, after, value, limit, _ = rows(found)[-1]
    message = det.message(b, before, after, value, limit)
    assert message == f"strain CUSUM {value:.1f} sigma above baseline 120.3 microstrain (orange >= 8)"
    assert det.message(0, 3, 0, 3.2, 8.0) == "strain back to baseline 120.3 microstrain: CUSUM 3.2 sigma, under orange 8"


def test_restore_resumes_the_level_and_warms_up_again() -> None:
    det = single(change_rule(warmup=5))
    det.restore(0, 3, T0 - 60_000, T0 - 1)
    assert det.level().tolist() == [3]
    assert len(det.update(series([1.0, 1.0], start=-10))) == 0  # late: skipped
    assert len(det.update(series(steady(5)))) == 0  # warm-up: no verdict, alarm stays
    assert det.level().tolist() == [3]
    found = det.update(series([120.0], start=5))
    assert rows(found) == [(0, T0 + 5 * STEP, 3, 0, float(found.value[0]), 8.0, T0 - 60_000)]


def test_restore_baseline_skips_the_warm_up() -> None:
    det = single(change_rule(warmup=30))
    det.restore_baseline(0, 100.0, 2.0)
    found = det.update(series([112.0]))
    assert rows(found)[0][3] == 2 and found.value[0] == 5.5  # z = 6, minus k


# -- kernel input checks --------------------------------------------------------------------------


def kernel_batch(det: ChangeDetector, binding: np.ndarray, ts: np.ndarray | None = None,
                 value: np.ndarray | None = None, replace: dict[str, np.ndarray] | None = None,
                 found_size: int | None = None) -> int:
    """Call the kernel on readings of `det`'s bindings, with some of its arrays (by attribute) replaced."""
    ts = np.full(binding.size, T0, np.int64) if ts is None else ts
    value = np.full(binding.size, 1.0) if value is None else value
    arrays = list(det._kernel_arrays)
    for name, array in (replace or {}).items():
        arrays[[a is getattr(det, name) for a in arrays].index(True)] = array
    size = binding.size if found_size is None else found_size
    found = [np.empty(size, dtype) for dtype in (np.int32, np.int64, np.int8, np.int8, np.float64, np.float64, np.int64)]
    return _change_kernel.evaluate(binding, ts, value, *found, 1e-3, 1e-9, *arrays)


def test_kernel_refuses_wrong_arrays_and_binding_numbers_with_state_untouched() -> None:
    det = ChangeDetector.from_rules(make_catalogue(2), [change_rule(warmup=2)])
    pair = np.array([0, 1], np.int32)
    assert kernel_batch(det, pair) == 0  # well-formed: evaluated (warm-up, no finding)
    assert det._count.tolist() == [1, 1]
    assert kernel_batch(det, np.array([-1, 1], np.int32)) == 0  # -1: a row without a binding, skipped
    assert det._count.tolist() == [1, 2]
    # Byte for byte: the records hold NaNs, and a record array has no elementwise NaN equality.
    # Wrong records are built by indexing, which keeps the dtype (concatenating would pack it).
    before = [a.tobytes() for a in det._kernel_arrays]
    read_only = det._state.copy()
    read_only.flags.writeable = False
    other_rule = det._state.copy()
    other_rule["rule"][1] = 1  # the rule has row 0 only
    without_level = np.zeros(2, [(name, det._state.dtype.fields[name][0]) for name in det._state.dtype.names
                                 if name != "level"])
    wrong = [
        ({"binding": np.array([0, 1], np.int64)}, "binding: expected a 1-d array of 4-byte integer"),
        ({"value": np.array([1, 2], np.int64)}, "value: expected a 1-d array of 8-byte float"),
        ({"ts": np.full(3, T0, np.int64)}, "ts: expected 2 elements, got 3"),
        ({"value": np.ones(4)[::2]}, "value: not a contiguous array"),
        ({"found_size": 1}, "found_binding: expected 2 elements, got 1"),
        ({"replace": {"_since": np.full(12, NO_SINCE, np.int64)}}, "since: expected 8 elements, got 12"),
        ({"replace": {"_state": det._state[[0, 1, 0]]}}, "since: expected 12 elements, got 8"),
        ({"replace": {"_state": np.zeros(2)}}, r"state: expected a 1-d array of \d+-byte record"),
        ({"replace": {"_state": without_level}}, r"state: expected a 1-d array of \d+-byte record"),
        ({"replace": {"_state": det._state[[[0, 1], [0, 1]]]}}, "state: expected a 1-d array"),
        ({"replace": {"_state": det._state[[0, 0, 1, 1]][::2]}}, "state: not a contiguous writable array"),
        ({"replace": {"_state": read_only}}, "state: not a contiguous writable array"),
        ({"replace": {"_k": np.zeros(2)}}, "k: expected 1 elements, got 2"),
        ({"replace": {"_hold_ms": np.zeros(1, np.int32)}}, "hold_ms: expected a 1-d array of 8-byte integer"),
        ({"binding": np.array([0, 2], np.int32)}, r"binding\[1\] = 2: not a binding"),
        ({"binding": np.array([-1, -2], np.int32)}, r"binding\[1\] = -2: not a binding"),
        # A corrupted record is refused when a reading takes it (the readings before it are
        # evaluated): binding 1 alone here, so nothing changes.
        ({"binding": np.array([1, 1], np.int32), "replace": {"_state": other_rule}},
         "binding 1: rule row 1 is not one of the 1 rules"),
    ]
    for case, message in wrong:
        replaced = {name: array.tobytes() for name, array in case.get("replace", {}).items()}
        with pytest.raises(ValueError, match=message):
            kernel_batch(det, case.get("binding", pair), case.get("ts"), case.get("value"), case.get("replace"),
                         case.get("found_size"))
        assert [a.tobytes() for a in det._kernel_arrays] == before
        assert {name: array.tobytes() for name, array in case.get("replace", {}).items()} == replaced


def test_state_records_are_the_kernels_struct_and_the_attributes_view_them() -> None:
    det = ChangeDetector.from_rules(make_catalogue(2), [change_rule(warmup=2), change_rule("e", method="ewma")])
    itemsize, fields = _change_kernel.STATE
    assert det._state.dtype.itemsize == itemsize
    assert {name: offset for name, _, offset in fields} == {
        name: det._state.dtype.fields[name][1] for name in det._state.dtype.names}
    assert det._rule.tolist() == [0, 1, 0, 1]
    det.restore_baseline(1, 10.0, 2.0)
    det.restore(1, 2, T0 - 10, T0 - 1)
    record = det._state[1]
    assert (record["mean"], record["var"], record["level"], record["last_ts"]) == (10.0, 4.0, 2, T0 - 1)
    det.update(series([12.0], channel=0))
    assert det._state["last_value"].tolist()[:2] == [12.0, 12.0]
    assert np.shares_memory(det._value, det._state)


# -- vectorised == reference ---------------------------------------------------------------------

CATALOGUE = make_catalogue(3, ("m0", "m1"), unit="u")
N_CHANNELS = len(CATALOGUE)


@st.composite
def rules(draw) -> list[Rule]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        method = draw(st.sampled_from(["cusum", "ewma"]))
        chosen = draw(st.sets(st.sampled_from(LEVELS), min_size=1))
        colours = [c for c in LEVELS if c in chosen]
        limits = sorted(draw(st.lists(st.floats(0.25, 12.0), min_size=len(colours), max_size=len(colours),
                                      unique=True)))
        out.append(change_rule(
            f"r{i}", method=method, levels=dict(zip(colours, limits, strict=True)),
            k=draw(st.sampled_from([0.0, 0.25, 0.5, 1.0])), lam=draw(st.sampled_from([0.1, 0.3, 1.0])),
            warmup=draw(st.integers(2, 5)), learn=draw(st.sampled_from([0.0, 0.05, 0.3])),
            direction=draw(st.sampled_from(["up", "down", "both"])), hold_s=draw(st.sampled_from([0.0, 1.0, 3.0])),
            match=draw(st.sampled_from([{}, {"metric": ("m0",)}, {"metric": ("m1",)}, {"id": ("s0",)}]))))
    return out


NOISE = st.one_of(st.floats(-1.0, 1.0), st.sampled_from([0.0, 0.5, -0.5, 1.0]))
#: Channels, most readings on a few so that warm-ups complete and levels move; -1 and
#: N_CHANNELS are unknown channels (ignored).
CHANNELS = st.sampled_from([0, 0, 0, 0, 1, 1, 1, 2, 3, 4, 5, -1, N_CHANNELS])


@st.composite
def batches(draw) -> list[Batch]:
    """Several batches; several readings per channel, equal and out-of-order ts, late readings."""
    out = []
    clock = 0
    for _ in range(draw(st.integers(1, 6))):
        # Each batch has its own regime: readings are the regime's level plus noise, so the
        # baseline of a channel shifts between batches (and alarms rise and clear).
        regime = draw(st.sampled_from([0.0, 0.0, 2.0, 5.0, -5.0, 30.0]))
        readings = draw(st.lists(st.tuples(CHANNELS, st.integers(-3, 8), NOISE), min_size=3, max_size=50))
        channel = np.array([c for c, _, _ in readings], np.int32)
        ts = np.array([T0 + (clock + dt) * 1000 for _, dt, _ in readings], np.int64)
        value = np.array([regime + v for _, _, v in readings], np.float64)
        out.append(Batch(channel, ts, value))
        clock += draw(st.integers(0, 6))
    return out


def assert_same(det: ChangeDetector, ref: ReferenceChangeDetector, batch: Batch) -> ThresholdFindings:
    got, want = det.update(batch), ref.update(batch)
    # Exact equality, no tolerance: both compute every statistic with the same IEEE-754
    # operations in the same order (elementwise numpy ops, no reductions or fused operations),
    # so the statistics are bit-identical and ties at a level limit are decided alike.
    for name in FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), (name, rows(got), rows(want))
    states = ref.states
    assert np.array_equal(det.level(), ref.level())
    assert det._count.tolist() == [s.count for s in states]
    for array, name in ((det._mean, "mean"), (det._var, "var"), (det._upper, "upper"), (det._lower, "lower"),
                        (det._ewma, "ewma"), (det._stat, "stat"), (det._value, "value")):
        assert np.array_equal(array, [getattr(s, name) for s in states], equal_nan=True), name
    assert det._last_ts.tolist() == [np.iinfo(np.int64).min if s.last_ts is None else s.last_ts for s in states]
    return got


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), batches(), st.booleans())
def test_vectorised_matches_reference(rule_list: list[Rule], work: list[Batch], restore: bool) -> None:
    det = ChangeDetector.from_rules(CATALOGUE, rule_list)
    ref = ReferenceChangeDetector.from_rules(CATALOGUE, rule_list)
    if restore and det.bindings:
        level = LEVELS.index(next(iter(det.bindings[0].rule.spec.levels))) + 1
        det.restore(0, level, T0 - 5000, T0)
        ref.restore(0, level, T0 - 5000, T0)
    for batch in work:
        assert_same(det, ref, batch)


def test_vectorised_matches_reference_on_long_shuffled_feeds() -> None:
    """Many rounds per batch: 6 channels x ~40 readings per batch, shuffled, with shifts."""
    rng = np.random.default_rng(3)
    rule_list = [change_rule("a", warmup=8, learn=0.05, hold_s=20), change_rule(
        "b", method="ewma", warmup=8, learn=0.02, direction="up", match={"metric": ("m0",)}),
        change_rule("c", direction="down", k=0.25, warmup=4, learn=0.0, match={"id": ("s1",)})]
    det = ChangeDetector.from_rules(CATALOGUE, rule_list)
    ref = ReferenceChangeDetector.from_rules(CATALOGUE, rule_list)
    base = rng.normal(0, 1, N_CHANNELS) * 10
    raised = cleared = 0
    for k in range(12):
        n = 240
        channel = rng.integers(0, N_CHANNELS, n).astype(np.int32)
        ts = T0 + (k * 40 + rng.integers(-5, 40, n)) * 1000
        # A shift on about a third of the channels in each batch, gone again in the next.
        shift = np.where(rng.random(N_CHANNELS) < 0.3, rng.normal(0, 6, N_CHANNELS), 0.0)
        value = base[channel] + shift[channel] + rng.normal(0, 1, n)
        found = assert_same(det, ref, Batch(channel, ts.astype(np.int64), value))
        raised += int(np.sum(found.level_after > found.level_before))
        cleared += int(np.sum(found.level_after == 0))
    assert raised > 10 and cleared > 5  # the feed did raise and clear alarms


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), batches())
def test_a_batch_in_one_call_equals_its_readings_one_at_a_time(rule_list: list[Rule], work: list[Batch]) -> None:
    """The kernel evaluates a batch as `bound_readings` orders it (each binding's readings in
    (ts, row) order, channels interleaved, rows without a binding, late readings): the same
    findings and state as feeding the readings one batch each in that order."""
    whole = ChangeDetector.from_rules(CATALOGUE, rule_list)
    single_readings = ChangeDetector.from_rules(CATALOGUE, rule_list)
    for batch in work:
        got = whole.update(batch)
        parts = []
        for row in np.lexsort((np.arange(len(batch)), batch.ts)):  # time order, ties in row order
            parts.append(single_readings.update(Batch(batch.channel[row:row + 1], batch.ts[row:row + 1],
                                                      batch.value[row:row + 1])))
        want = [r for part in parts for r in rows(part)]
        assert rows(got) == sorted(want, key=lambda r: r[0])  # stable: (binding, ts)
        for name in ("_level", "_since", "_last_ts", "_count", "_mean", "_var", "_upper", "_lower", "_ewma",
                     "_stat", "_value"):
            assert np.array_equal(getattr(whole, name), getattr(single_readings, name), equal_nan=True), name


def test_restore_checks_like_the_threshold_detector() -> None:
    det = single(change_rule(levels={"yellow": 5.0, "red": 12.0}))
    with pytest.raises(ValueError, match="level 3 is not defined"):
        det.restore(0, 3, T0, T0)
    with pytest.raises(ValueError, match="after last_ts"):
        det.restore(0, 2, T0 + 1, T0)
    with pytest.raises(IndexError):
        det.restore(1, 0, T0, T0)
    det.restore(0, 4, T0 - 5000, T0)
    assert det.level().tolist() == [4]
    assert det._since[0:4].tolist() == [T0 - 5000] * 4 and det._last_ts[0] == T0
    det.restore(0, 0, T0, T0 + 10)
    assert det.level().tolist() == [0] and det._since[0:4].tolist() == [np.iinfo(np.int64).max] * 4

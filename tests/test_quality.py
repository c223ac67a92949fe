"""Sensor faults (range, stuck, spike, rate): behaviour, and vectorised == reference."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors import _quality_kernel
from detectors.quality import MAD_SCALE, QualityDetector
from detectors.quality_reference import ReferenceQualityDetector, median
from detectors.threshold import ThresholdFindings
from ingest.batch import Batch
from lifeline.catalogue import Catalogue
from lifeline.config import Config, Gateway, Location, Rule, Sensor, parse_config
from lifeline.levels import LEVELS
from lifeline.rule_kinds import Quality

FIELDS = ("binding", "ts", "level_before", "level_after", "value", "limit", "started_at")
T0 = 1_763_798_400_000
STEP = 10_000  # ms between readings


# -- helpers -------------------------------------------------------------------------------------


def make_catalogue(n_sensors: int = 1, metrics: tuple[str, ...] = ("ch4",), unit: str = "%LEL") -> Catalogue:
    sensors = tuple(
        Sensor(id=f"s{i}", gateway="g", domain="gas", type="t", asset=f"a{i}", location=Location(0.0, 0.0),
               metrics={m: unit for m in metrics}, interval=10.0)
        for i in range(n_sensors))
    return Catalogue(Config(gateways=(Gateway("g", "gas-co"),), sensors=sensors))


def quality_rule(rule_id: str = "q", range_min: float | None = None, range_max: float | None = None,
                 stuck_readings: int | None = None, stuck_seconds: float | None = None,
                 stuck_tolerance: float = 0.0, spike_window: int | None = None, spike_threshold: float = 6.0,
                 max_rate_per_s: float | None = None, level: str = "blue", on_fault: str = "mark",
                 clear_after: int = 3, match: dict[str, tuple[str, ...]] | None = None) -> Rule:
    spec = Quality(range_min=range_min, range_max=range_max, stuck_readings=stuck_readings,
                   stuck_seconds=stuck_seconds, stuck_tolerance=stuck_tolerance, spike_window=spike_window,
                   spike_threshold=spike_threshold, max_rate_per_s=max_rate_per_s, level=level,
                   on_fault=on_fault, clear_after=clear_after)
    return Rule(rule_id, match or {}, None, kind="quality", spec=spec)


def single(rule: Rule) -> QualityDetector:
    return QualityDetector.from_rules(make_catalogue(), [rule])


def series(values, start: int = 0, channel: int = 0, step: int = STEP) -> Batch:
    values = np.asarray(values, np.float64)
    ts = T0 + (start + np.arange(values.size, dtype=np.int64)) * step
    return Batch(np.full(values.size, channel, np.int32), ts, values)


def rows(found: ThresholdFindings) -> list[tuple]:
    return [tuple(getattr(found, f)[i].item() for f in FIELDS) for i in range(len(found))]


def transitions(found: ThresholdFindings, step: int = STEP) -> list[tuple[int, int]]:
    """(reading index, level after) of each finding."""
    return [((int(ts) - T0) // step, int(after)) for ts, after in zip(found.ts, found.level_after, strict=True)]


def noisy(n: int, mean: float = 3.0) -> np.ndarray:
    """A live sensor: small, never-repeating variation."""
    return mean + 0.05 * np.sin(np.arange(n) * 1.7) + 0.001 * np.arange(n)


# -- binding -------------------------------------------------------------------------------------


def test_binds_quality_rules_from_a_parsed_config() -> None:
    config = parse_config(textwrap.dedent("""\
        gateways: [{id: g, owner: gas-co}]
        sensors:
          - {id: M1, gateway: g, domain: gas, metrics: {ch4: "%LEL", temp: degC}}
        rules:
          - id: ch4-sensor
            match: {metric: ch4}
            quality: {range: {min: 0, max: 100}, stuck: {readings: 20}, spike: {window: 9}, max_rate: 5,
                      level: blue, on_fault: suppress, clear_after: 3}
        """))
    det = QualityDetector.from_rules(Catalogue(config), config.rules)
    assert det.kind == "quality"
    assert [(b.rule.id, b.channel.metric) for b in det.bindings] == [("ch4-sensor", "ch4")]
    assert det.faulty.tolist() == [False, False]


# -- each fault, and clearing --------------------------------------------------------------------


def test_out_of_range_detected_and_cleared_after_clear_after_good_readings() -> None:
    det = single(quality_rule(range_min=0.0, range_max=100.0, level="yellow", clear_after=3))
    found = det.update(series([3.0, 150.0, 3.1, 3.2, 3.3, 3.4]))
    assert transitions(found) == [(1, 2), (4, 0)]  # faulty at 150, clear at the 3rd good reading
    assert rows(found)[0][4:] == (1.0, 0.5, T0 + STEP)
    assert det.details(0) == {"kind": "fault", "fault": "out_of_range",
                              "detail": "reads 150 %LEL, above its maximum 100 (outside the sensor's range)"}
    assert det.message(0, 0, 2, 1.0, 0.5) == ("sensor fault: ch4 reads 150 %LEL, above its maximum 100 "
                                              "(outside the sensor's range) (maintenance)")
    assert det.message(0, 2, 0, 0.0, 0.5) == ("sensor fault cleared: ch4 gave 3 good readings in a row "
                                              "after out of range")
    found = det.update(series([-1.0], start=6))
    assert det.details(0)["detail"].startswith("reads -1 %LEL, below its minimum 0")


def test_a_faulty_reading_while_clearing_restarts_the_count() -> None:
    det = single(quality_rule(range_max=100.0, clear_after=3))
    found = det.update(series([150.0, 1.0, 1.1, 150.0, 1.0, 1.1, 1.2]))
    assert transitions(found) == [(0, 1), (6, 0)]


def test_stuck_detected_after_n_identical_readings() -> None:
    det = single(quality_rule(stuck_readings=20))
    found = det.update(series(np.r_[noisy(5), np.full(25, 3.2), noisy(5)]))
    assert transitions(found) == [(24, 1), (32, 0)]  # 20th identical reading; 3rd good one after
    det2 = single(quality_rule(stuck_readings=20))
    det2.update(series(np.r_[noisy(5), np.full(20, 3.2)]))
    assert det2.message(0, 0, 1, 1.0, 0.5) == "sensor fault: ch4 stuck at 3.2 %LEL for 20 readings in 190 s (maintenance)"
    assert det2.details(0)["fault"] == "stuck"


def test_stuck_respects_tolerance_and_minimum_duration() -> None:
    wobble = 3.2 + 0.04 * np.where(np.arange(30) % 2 == 0, 1.0, -1.0)  # peak to peak 0.08
    assert transitions(single(quality_rule(stuck_readings=10, stuck_tolerance=0.1)).update(series(wobble))) == [(9, 1)]
    assert len(single(quality_rule(stuck_readings=10, stuck_tolerance=0.05)).update(series(wobble))) == 0
    # 10 readings are not enough until the run has also lasted 150 s (15 intervals).
    det = single(quality_rule(stuck_readings=10, stuck_seconds=150))
    assert transitions(det.update(series(np.full(30, 1.0)))) == [(15, 1)]


def test_spike_detected_against_rolling_median_and_mad() -> None:
    det = single(quality_rule(spike_window=9, spike_threshold=6.0, clear_after=2))
    values = np.r_[noisy(12), 40.0, noisy(5)]
    found = det.update(series(values))
    assert transitions(found) == [(12, 1), (14, 0)]
    assert det.details(0)["fault"] == "spike"
    assert det.details(0)["detail"].startswith("spike to 40 %LEL, ")
    assert "robust sigma from the median 3.0" in det.details(0)["detail"]
    # A small bump is within the robust spread.
    assert len(single(quality_rule(spike_window=9)).update(series(np.r_[noisy(12), 3.1, noisy(5)]))) == 0


def test_spike_check_skipped_when_mad_is_zero_or_window_not_full() -> None:
    det = single(quality_rule(spike_window=5))
    assert len(det.update(series([1.0, 1.0, 1.0, 1.0, 1.0, 50.0]))) == 0  # flat window: MAD 0
    det = single(quality_rule(spike_window=5))
    assert len(det.update(series([1.0, 1.1, 0.9, 50.0]))) == 0  # only 3 previous readings


def test_impossible_rate_of_change() -> None:
    det = single(quality_rule(max_rate_per_s=1.0, clear_after=1))
    # 10 s apart: +5 is 0.5 /s (fine), +20 is 2 /s (impossible).
    found = det.update(series([0.0, 5.0, 25.0, 26.0]))
    assert transitions(found) == [(2, 1), (3, 0)]
    assert det.details(0)["detail"] == ("jumped from 5 to 25 %LEL at 2 %LEL/s, faster than physically "
                                        "possible (1 %LEL/s)")
    # Same timestamp: no elapsed time, no rate.
    det = single(quality_rule(max_rate_per_s=1.0))
    assert len(det.update(Batch(np.zeros(2, np.int32), np.full(2, T0), np.array([0.0, 100.0])))) == 0


def test_first_fault_named_when_several_checks_fire() -> None:
    det = single(quality_rule(range_max=100.0, max_rate_per_s=1.0))
    det.update(series([1.0, 500.0]))
    assert det.details(0)["fault"] == "out_of_range"


# -- per-channel flag for the pipeline -------------------------------------------------------------


def test_faulty_flag_per_channel_and_on_fault() -> None:
    catalogue = make_catalogue(3)
    rules = [quality_rule("mark", range_max=100.0, clear_after=2),
             quality_rule("suppress", range_max=50.0, on_fault="suppress", clear_after=2, match={"id": ("s1",)})]
    det = QualityDetector.from_rules(catalogue, rules)
    det.update(Batch(np.array([0, 1, 2], np.int32), np.full(3, T0), np.array([1.0, 1.0, 1.0])))
    assert det.faulty.tolist() == [False, False, False]
    assert [det.on_fault(c) for c in range(3)] == [None, None, None]
    det.update(Batch(np.array([0, 1, 2], np.int32), np.full(3, T0 + STEP), np.array([200.0, 70.0, 1.0])))
    assert det.faulty.tolist() == [True, True, False]
    assert [det.on_fault(c) for c in range(3)] == ["mark", "suppress", None]
    assert det.on_fault(99) is None
    det.update(Batch(np.array([0, 0, 1], np.int32), T0 + np.array([2, 3, 2]) * STEP, np.array([1.0, 1.0, 1.0])))
    assert det.faulty.tolist() == [False, True, False]


def test_restore_makes_the_binding_faulty_until_clear_after_good_readings() -> None:
    det = single(quality_rule(range_max=100.0, level="orange", clear_after=2))
    det.restore(0, 3, T0 - 60_000, T0 - STEP)
    assert det.faulty.tolist() == [True] and det.level().tolist() == [3]
    found = det.update(series([1.0, 1.0, 1.0]))
    assert rows(found) == [(0, T0 + STEP, 3, 0, 0.0, 0.5, T0 - 60_000)]


# -- the kernel: spike statistics, refusing bad arrays ------------------------------------------------


READING = st.sampled_from([0.0, -0.0, 1.0, 2.5, -3.0, 1e-9, 7.25]) | st.floats(-1e6, 1e6)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 80).flatmap(lambda w: st.lists(READING, min_size=w, max_size=w)), st.lists(READING, max_size=30))
def test_spike_median_and_mad_equal_the_plain_definition(window: list[float], earlier: list[float]) -> None:
    # A threshold of 0 makes every reading far from the median a spike, whose details are the
    # window median and the robust z. The earlier readings have left the window by then.
    det = single(quality_rule(spike_window=len(window), spike_threshold=0.0))
    det.update(series(earlier + window + [1e9]))
    centre = median(window)
    mad = median([abs(v - centre) for v in window])
    if mad > 0:
        assert det.details(0)["fault"] == "spike"
        assert det._fault_ref[0] == centre and np.signbit(det._fault_ref[0]) == np.signbit(centre)
        assert det._fault_aux[0] == abs(1e9 - centre) / (MAD_SCALE * mad)
    else:
        assert det._fault_value[0] != 1e9  # not a spike: the latest fault, if any, is an earlier reading


def kernel_call(det: QualityDetector, binding: np.ndarray, ts: np.ndarray | None = None,
                value: np.ndarray | None = None, arrays: tuple | None = None) -> int:
    ts = np.full(binding.size, T0, np.int64) if ts is None else ts
    value = np.ones(binding.size) if value is None else value
    moved, flag = np.empty(binding.size, np.intp), np.empty(binding.size)
    return _quality_kernel.evaluate(binding, ts, value, moved, flag, *(arrays or kernel_arrays(det)))


def kernel_arrays(det: QualityDetector) -> tuple[np.ndarray, ...]:
    return det._kernel_arrays


def test_kernel_refuses_wrong_dtype_length_and_bindings_and_changes_nothing() -> None:
    det = QualityDetector.from_rules(make_catalogue(3), [quality_rule(range_max=10.0, spike_window=4)])
    one = np.array([1], np.int32)
    assert kernel_call(det, one, value=np.array([50.0])) == 1  # well-formed: binding 1 becomes faulty
    assert det._faulty.tolist() == [False, True, False]
    # Bytes of the live arrays, not copies: a copy of a record array need not copy its padding.
    before = [a.tobytes() for a in kernel_arrays(det)]
    state, windows, slots = kernel_arrays(det)
    with pytest.raises(ValueError, match="binding"):
        kernel_call(det, one.astype(np.intp))
    with pytest.raises(ValueError, match="value"):
        kernel_call(det, one, value=np.array([50.0], np.float32))
    with pytest.raises(ValueError, match="ts: expected 1 elements, got 2"):
        kernel_call(det, one, ts=np.full(2, T0, np.int64))
    with pytest.raises(ValueError, match="state: expected a 1-d array of .*record"):  # plain numbers, not records
        kernel_call(det, one, arrays=(state["prev"].copy(), windows, slots))
    with pytest.raises(ValueError, match="state: expected a 1-d array of .*record"):  # records of another size
        kernel_call(det, one, arrays=(np.zeros(3, [("prev", "<f8"), ("faulty", "?")]), windows, slots))
    read_only = state.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="state"):
        kernel_call(det, one, arrays=(read_only, windows, slots))
    with pytest.raises(ValueError, match="slots: expected 12 elements"):
        kernel_call(det, one, arrays=(state, windows, slots[:-1]))
    with pytest.raises(ValueError, match="binding 3"):  # past the 3 records
        kernel_call(det, np.array([0, 3], np.int32))
    with pytest.raises(ValueError, match="binding 2"):  # past the 2 records given
        kernel_call(det, np.array([0, 2], np.int32), arrays=(state[:2], windows, slots))
    with pytest.raises(ValueError, match="binding -2"):
        kernel_call(det, np.array([-1, -2], np.int32))
    beyond = state.copy()
    beyond["spike_start"][2] = 9  # binding 2's window would end past the 12-element buffer
    # (a corrupted record is refused when its readings come up: earlier ones are evaluated)
    with pytest.raises(ValueError, match="binding 2: spike window"):
        kernel_call(det, np.array([2], np.int32), arrays=(beyond, windows, slots))
    wrapped = state.copy()
    wrapped["next"][0] = 4  # the next ring slot of binding 0, past its 4-reading window
    with pytest.raises(ValueError, match="binding 0: spike window"):
        kernel_call(det, np.array([0], np.int32), arrays=(wrapped, windows, slots))
    with pytest.raises(ValueError, match="moved"):
        _quality_kernel.evaluate(one, np.full(1, T0), np.ones(1), np.empty(0, np.intp), np.empty(1),
                                 *kernel_arrays(det))
    with pytest.raises(ValueError, match="flag"):
        _quality_kernel.evaluate(one, np.full(1, T0), np.ones(1), np.empty(1, np.intp), np.empty(0),
                                 *kernel_arrays(det))
    with pytest.raises(TypeError, match="8 arguments"):
        _quality_kernel.evaluate(one, np.full(1, T0), np.ones(1), np.empty(1, np.intp), np.empty(1), state)
    # Byte for byte: the records hold NaNs (`prev`), and nothing may have been written.
    assert [a.tobytes() for a in kernel_arrays(det)] == before


def test_record_fields_are_the_detectors_arrays() -> None:
    """The attributes are views of the kernel's records: what the kernel writes, they show."""
    det = QualityDetector.from_rules(make_catalogue(2), [quality_rule(range_max=10.0, spike_window=4)])
    assert det._state.dtype.itemsize == 152 and det._state.dtype.fields["fault_value"][1] == 128
    for view in (det._prev, det._faulty, det._last_ts, det._windows.held, det._range_max, det._fault_ref):
        assert np.shares_memory(view, det._state)
    det.update(series([1.0, 2.0, 3.0, 4.0, 50.0], channel=1))
    assert det._state["faulty"].tolist() == [False, True] and det._windows.held.tolist() == [0, 4]
    assert det._state["fault_ref"][1] == 10.0 and det._state["prev"][1] == 50.0


def test_kernel_skips_unbound_and_late_readings_and_reports_each_flag_change() -> None:
    det = QualityDetector.from_rules(make_catalogue(2), [quality_rule(range_max=10.0, clear_after=1)])
    binding = np.array([-1, 0, 1, 0, 0, 0, -1], np.int32)
    ts = T0 + np.array([0, 1, 1, 2, 1, 3, 9], np.int64) * 1000  # binding 0's reading at 1 s comes late
    value = np.array([50.0, 50.0, 1.0, 1.0, 50.0, 50.0, 50.0])
    moved, flag = np.full(7, -9, np.intp), np.full(7, -9.0)
    n_moved = _quality_kernel.evaluate(binding, ts, value, moved, flag, *kernel_arrays(det))
    # Binding 0 became faulty, cleared and became faulty again; its late reading and the rows
    # without a binding were not evaluated.
    assert n_moved == 3
    assert moved[:3].tolist() == [1, 3, 5] and flag[:3].tolist() == [1.0, 0.0, 1.0]
    assert det._last_ts.tolist() == [T0 + 3000, T0 + 1000]
    assert det._faulty.tolist() == [True, False]


# -- vectorised == reference ---------------------------------------------------------------------

CATALOGUE = make_catalogue(3, ("m0", "m1"), unit="u")
N_CHANNELS = len(CATALOGUE)


@st.composite
def rules(draw) -> list[Rule]:
    out = []
    for i in range(draw(st.integers(1, 3))):
        checks = draw(st.sets(st.sampled_from(["range", "stuck", "spike", "rate"]), min_size=1))
        low = draw(st.sampled_from([None, -8.0, 0.0]))
        out.append(quality_rule(
            f"r{i}",
            range_min=low if "range" in checks else None,
            range_max=draw(st.sampled_from([None, 8.0, 20.0])) if "range" in checks else None,
            stuck_readings=draw(st.integers(2, 5)) if "stuck" in checks else None,
            stuck_seconds=draw(st.sampled_from([None, 1.0, 4.5])) if "stuck" in checks else None,
            stuck_tolerance=draw(st.sampled_from([0.0, 0.5])),
            spike_window=draw(st.integers(3, 6)) if "spike" in checks else None,
            spike_threshold=draw(st.sampled_from([1.0, 3.0, 6.0])),
            max_rate_per_s=draw(st.sampled_from([0.5, 2.0])) if "rate" in checks else None,
            level=draw(st.sampled_from(LEVELS)), on_fault=draw(st.sampled_from(["mark", "suppress"])),
            clear_after=draw(st.integers(1, 3)),
            match=draw(st.sampled_from([{}, {"metric": ("m0",)}, {"id": ("s0",)}]))))
    return out


#: Repeated values (stuck runs, flat windows) mixed with noise, spikes and out-of-range values.
VALUES = st.one_of(st.sampled_from([1.0, 1.0, 1.0, 1.25, 2.0, 30.0, -10.0]), st.floats(-2.0, 4.0))
CHANNELS = st.sampled_from([0, 0, 0, 0, 1, 1, 1, 2, 3, 4, 5, -1, N_CHANNELS])


@st.composite
def batches(draw) -> list[Batch]:
    """Several batches; several readings per channel, equal and out-of-order ts, late readings."""
    out = []
    clock = 0
    for _ in range(draw(st.integers(1, 6))):
        readings = draw(st.lists(st.tuples(CHANNELS, st.integers(-3, 8), VALUES), min_size=3, max_size=50))
        channel = np.array([c for c, _, _ in readings], np.int32)
        ts = np.array([T0 + (clock + dt) * 1000 for _, dt, _ in readings], np.int64)
        value = np.array([v for _, _, v in readings], np.float64)
        out.append(Batch(channel, ts, value))
        clock += draw(st.integers(0, 6))
    return out


def assert_same(det: QualityDetector, ref: ReferenceQualityDetector, batch: Batch) -> ThresholdFindings:
    got, want = det.update(batch), ref.update(batch)
    # Exact equality: the checks use the same IEEE-754 operations in the same order as the
    # reference (the medians sort the same values), so every comparison is decided alike.
    for name in FIELDS:
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype and np.array_equal(a, b), (name, rows(got), rows(want))
    states = ref.states
    assert np.array_equal(det.level(), ref.level())
    assert np.array_equal(det.faulty, ref.faulty)
    assert det._faulty.tolist() == [s.faulty for s in states]
    assert det._good.tolist() == [s.good for s in states]
    assert det._run_count.tolist() == [s.run_count for s in states]
    assert [FAULTS_BY_CODE[c] for c in det._fault.tolist()] == [s.fault for s in states]
    assert det._last_ts.tolist() == [np.iinfo(np.int64).min if s.last_ts is None else s.last_ts for s in states]
    assert np.array_equal(det._prev, [np.nan if s.prev is None else s.prev for s in states], equal_nan=True)
    return got


FAULTS_BY_CODE = ("", "out_of_range", "spike", "rate", "stuck")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), batches(), st.booleans())
def test_vectorised_matches_reference(rule_list: list[Rule], work: list[Batch], restore: bool) -> None:
    det = QualityDetector.from_rules(CATALOGUE, rule_list)
    ref = ReferenceQualityDetector.from_rules(CATALOGUE, rule_list)
    if restore and det.bindings:
        level = LEVELS.index(det.bindings[0].rule.spec.level) + 1
        det.restore(0, level, T0 - 5000, T0)
        ref.restore(0, level, T0 - 5000, T0)
    for batch in work:
        assert_same(det, ref, batch)


def test_vectorised_matches_reference_on_long_shuffled_feeds() -> None:
    """Many rounds per batch, two spike window lengths, faults rising and clearing."""
    rng = np.random.default_rng(5)
    rule_list = [
        quality_rule("a", range_min=-50, range_max=50, spike_window=7, spike_threshold=4, max_rate_per_s=3,
                     clear_after=3),
        quality_rule("b", stuck_readings=6, stuck_seconds=20, stuck_tolerance=0.01, spike_window=4,
                     match={"metric": ("m0",)}, clear_after=2, on_fault="suppress"),
    ]
    det = QualityDetector.from_rules(CATALOGUE, rule_list)
    ref = ReferenceQualityDetector.from_rules(CATALOGUE, rule_list)
    raised = cleared = 0
    kinds: set[int] = set()
    for k in range(12):
        n = 240
        channel = rng.integers(0, N_CHANNELS, n).astype(np.int32)
        ts = T0 + (k * 40 + rng.integers(-5, 40, n)) * 1000
        value = rng.normal(0, 1, n)
        stuck = np.isin(channel, rng.integers(0, N_CHANNELS, 2))
        value[stuck] = 2.0
        hit = rng.random(n) < 0.03
        value[hit] = rng.choice([80.0, -80.0, 15.0], hit.sum())
        found = assert_same(det, ref, Batch(channel, ts.astype(np.int64), value))
        raised += int(np.sum(found.level_after > 0))
        cleared += int(np.sum(found.level_after == 0))
        kinds |= set(det._fault.tolist())
    assert raised > 10 and cleared > 10
    assert kinds >= {1, 2, 3, 4}  # every kind of fault occurred


def test_a_binding_with_more_readings_than_one_kernel_run_matches_the_reference() -> None:
    """The kernel takes a binding's readings in runs of at most 256; a batch of 1,000 readings
    of one channel (spikes, a stuck stretch, out-of-range values) crosses several runs."""
    rng = np.random.default_rng(11)
    rule = quality_rule(range_min=-50, range_max=50, stuck_readings=20, spike_window=9, spike_threshold=5,
                        max_rate_per_s=40, clear_after=3)
    catalogue = make_catalogue()
    det, ref = QualityDetector.from_rules(catalogue, [rule]), ReferenceQualityDetector.from_rules(catalogue, [rule])
    value = rng.normal(0, 1, 1_000)
    value[rng.random(1_000) < 0.02] = 30.0
    value[400:430] = 1.5
    value[700:703] = 90.0
    found = assert_same(det, ref, series(value))
    assert int(np.sum(found.level_after > 0)) >= 5 and set(det._fault.tolist()) - {0}

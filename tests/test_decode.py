"""The telemetry decoder on its own: shapes, waveform blocks, per-reading-object rejection."""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decode import TelemetryDecoder
from ingest.rejection import REASONS
from lifeline.catalogue import Catalogue
from lifeline.config import load_config
from tests.conftest import DATA

CATALOGUE = Catalogue(load_config(DATA / "city.yaml"))
DECODER = TelemetryDecoder(CATALOGUE, retention_days=30)
NOW = 1_763_798_400_000


def decode(payload, gateway="gw-gas-01"):
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return DECODER.decode(gateway, raw, NOW)


def channel(sensor: str, metric: str) -> int:
    return CATALOGUE.channels_of[sensor][metric]


def test_contract_example_single_and_list_forms():
    result = decode({"GAS-0001": [{"ts": NOW, "values": {"ch4": 3.2, "temp": 14.1}},
                                  {"ts": NOW + 60_000, "values": {"ch4": 3.4}}],
                     "GAS-0002": {"ts": NOW, "values": {"ch4": 0.0}}})
    assert result.rejections == []
    rows = sorted(zip(result.batch.channel.tolist(), result.batch.ts.tolist(), result.batch.value.tolist(),
                      strict=True))
    assert rows == sorted([(channel("GAS-0001", "ch4"), NOW, 3.2), (channel("GAS-0001", "temp"), NOW, 14.1),
                           (channel("GAS-0001", "ch4"), NOW + 60_000, 3.4), (channel("GAS-0002", "ch4"), NOW, 0.0)])
    assert result.batch.channel.dtype == np.int32 and result.batch.ts.dtype == np.int64


def test_missing_ts_uses_arrival_and_booleans_count_as_numbers():
    result = decode({"GAS-0002": {"values": {"ch4": True}}})
    assert result.batch.ts.tolist() == [NOW] and result.batch.value.tolist() == [1.0]


def test_waveform_block_expands_with_fractional_dt():
    result = decode({"BR-ACC-01": {"ts": NOW, "dt": 2.5, "values": {"acc_z": [0.012, 0.015, -0.004, 0.0]}}},
                    gateway="gw-bridge-01")
    assert result.rejections == []
    assert result.batch.ts.tolist() == [NOW, NOW + 2, NOW + 5, NOW + 7]
    assert result.batch.value.tolist() == [0.012, 0.015, -0.004, 0.0]


def test_waveform_block_is_rejected_whole():
    for bad in ({"ts": NOW, "dt": 10, "values": {"acc_z": [0.1, "x", 0.2]}},
                {"ts": NOW, "values": {"acc_z": [0.1, 0.2]}},
                {"ts": NOW, "dt": 0, "values": {"acc_z": [0.1]}},
                {"ts": NOW, "dt": 10, "values": {"acc_z": []}}):
        result = decode({"BR-ACC-01": bad}, gateway="gw-bridge-01")
        assert len(result.batch) == 0 and len(result.rejections) == 1, bad


def test_one_bad_reading_object_does_not_lose_its_neighbours():
    result = decode({"GAS-0001": [{"ts": NOW, "values": {"ch4": 1.0}}, {"ts": NOW + 1, "values": {"ch4": None}},
                                  {"ts": NOW + 2, "values": {"ch4": 2.0}}]})
    assert result.batch.value.tolist() == [1.0, 2.0]
    assert [(r.reason, r.sensor) for r in result.rejections] == [("invalid_value", "GAS-0001")]


def test_out_of_range_numbers_are_invalid_values_not_invalid_json():
    result = decode(b'{"GAS-0001": {"ts": %d, "values": {"ch4": 1e999}}, "GAS-0002": {"values": {"ch4": 2}}}' % NOW)
    assert [r.reason for r in result.rejections] == ["invalid_value"]
    assert result.batch.value.tolist() == [2.0]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(payload):
    result = DECODER.decode("gw-gas-01", payload, NOW)
    assert all(r.reason in REASONS for r in result.rejections)
    assert np.isfinite(result.batch.value).all()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["GAS-0001", "GAS-0002", "PIPE-0001", "X", ""]), json_values, max_size=4))
def test_arbitrary_json_shapes_are_accepted_or_rejected_with_a_reason(document):
    result = DECODER.decode("gw-gas-01", json.dumps(document).encode(), NOW)
    assert all(r.reason in REASONS and r.detail for r in result.rejections)
    assert np.isfinite(result.batch.value).all()
    assert set(result.batch.channel.tolist()) <= {channel("GAS-0001", "ch4"), channel("GAS-0001", "temp"),
                                                  channel("GAS-0002", "ch4")}

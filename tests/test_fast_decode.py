"""The fast decoding path accepts exactly what the precise decoder accepts, message by message.

The precise `TelemetryDecoder` is the reference: for any group of messages, the fast path's
batch plus the precise decoding of the messages it hands back must hold the same readings as
decoding every message precisely.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.decode import TelemetryDecoder
from ingest.fast_decode import FastDecoder
from lifeline.catalogue import Catalogue
from lifeline.config import load_config
from tests.conftest import DATA

CATALOGUE = Catalogue(load_config(DATA / "city.yaml"))
PRECISE = TelemetryDecoder(CATALOGUE, retention_days=30)
FAST = FastDecoder(CATALOGUE, PRECISE.retention_ms)
NOW = 1_763_798_400_000
DAY = 86_400_000


def rows(channel, ts, value) -> list[tuple[int, int, float]]:
    return sorted(zip(channel.tolist(), ts.tolist(), value.tolist(), strict=True))


def precise_rows(group) -> list[tuple[int, int, float]]:
    out = []
    for gateway, payload, received in group:
        batch = PRECISE.decode(gateway, payload, received).batch
        out += rows(batch.channel, batch.ts, batch.value)
    return sorted(out)


def fast_rows(group) -> tuple[list[tuple[int, int, float]], list[int]]:
    batch, unusual = FAST.decode_many(group)
    out = rows(batch.channel, batch.ts, batch.value)
    for i in unusual:
        again = PRECISE.decode(*group[i]).batch
        out += rows(again.channel, again.ts, again.value)
    return sorted(out), unusual


# Mostly well-formed reading objects with the odd wrong part, so both paths get exercised.
timestamps = st.one_of(st.none(), st.integers(NOW - 40 * DAY, NOW + 10 * 60_000),
                       st.sampled_from([-1, 0, 2**62, 2**62 + 1, 2**63, -(2**63)]))
numbers = st.one_of(st.floats(-1e6, 1e6), st.integers(-10**6, 10**6), st.booleans(),
                    st.sampled_from([1e308, 10**400, "3.2", None]))
metric_names = st.sampled_from(["ch4", "temp", "c2h6", "h2s"])


@st.composite
def reading_objects(draw):
    reading = {"values": draw(st.dictionaries(metric_names, numbers, max_size=3))}
    ts = draw(timestamps)
    if ts is not None:
        reading["ts"] = ts
    if draw(st.integers(0, 20)) == 0:
        reading["dt"] = 10
    return reading


documents = st.dictionaries(
    st.sampled_from(["GAS-0001", "GAS-0002", "PIPE-0001", "NOPE"]),
    st.one_of(reading_objects(), st.lists(reading_objects(), max_size=3)), max_size=3)


@st.composite
def messages(draw):
    gateway = draw(st.sampled_from(["gw-gas-01", "gw-gas-01", "gw-water-01", "gw-unknown"]))
    if draw(st.integers(0, 30)) == 0:
        payload = draw(st.binary(max_size=20))
    else:
        payload = json.dumps(draw(documents)).encode()
    return gateway, payload, NOW + draw(st.integers(0, 1000))


@settings(max_examples=400, deadline=None)
@given(st.lists(messages(), max_size=6))
def test_fast_path_accepts_exactly_what_the_precise_decoder_accepts(group):
    fast, _ = fast_rows(group)
    assert fast == precise_rows(group)


def test_clean_messages_stay_on_the_fast_path_and_missing_ts_is_the_arrival_time():
    group = [("gw-gas-01", json.dumps({"GAS-0001": [{"ts": NOW, "values": {"ch4": 3.2, "temp": 14.1}},
                                                     {"values": {"ch4": 3}}]}).encode(), NOW + 5),
             ("gw-gas-01", json.dumps({"GAS-0002": {"ts": NOW - 1000, "values": {"ch4": 0.5}}}).encode(), NOW)]
    batch, unusual = FAST.decode_many(group)
    assert unusual == []
    ch4 = CATALOGUE.channels_of["GAS-0001"]["ch4"]
    assert (ch4, NOW + 5, 3.0) in rows(batch.channel, batch.ts, batch.value)
    assert batch.channel.dtype == np.int32 and batch.ts.dtype == np.int64 and len(batch) == 4


def test_an_unusual_message_goes_back_whole_without_losing_its_neighbours():
    good = json.dumps({"GAS-0002": {"ts": NOW, "values": {"ch4": 0.5}}}).encode()
    stale = json.dumps({"GAS-0001": [{"ts": NOW, "values": {"ch4": 1.0}},
                                     {"ts": NOW - 31 * DAY, "values": {"ch4": 2.0}}]}).encode()
    group = [("gw-gas-01", good, NOW), ("gw-gas-01", stale, NOW), ("gw-water-01", good, NOW)]
    batch, unusual = FAST.decode_many(group)
    assert unusual == [1, 2]  # a stale reading; a sensor of another gateway
    assert len(batch) == 1

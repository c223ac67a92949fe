"""The fast decoding path accepts exactly what the precise decoder accepts, message by message.

The precise `TelemetryDecoder` is the reference: for any group of messages, the fast path's
batch plus the precise decoding of the messages it hands back must hold the same readings as
decoding every message precisely.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest import _payload_parser
from ingest.decode import TelemetryDecoder
from ingest.fast_decode import FastDecoder
from ingest.rejection import MAX_PAYLOAD_BYTES
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


# -- the C parser (ingest/payload_parser.c) against the precise decoder, byte by byte ----------

def bit_rows(channel, ts, value) -> list[tuple[int, int, int]]:
    """Rows with the value's bits, so that -0.0 and 0.0 differ."""
    bits = np.ascontiguousarray(value, np.float64).view(np.int64)
    return sorted(zip(channel.tolist(), ts.tolist(), bits.tolist(), strict=True))


def assert_same_readings_as_precise(group) -> list[int]:
    batch, unusual = FAST.decode_many(group)
    fast = bit_rows(batch.channel, batch.ts, batch.value)
    precise = []
    for i, (gateway, payload, received) in enumerate(group):
        decoded = PRECISE.decode(gateway, payload, received).batch
        own = bit_rows(decoded.channel, decoded.ts, decoded.value)
        precise += own
        if i in unusual:
            fast += own
    assert sorted(fast) == sorted(precise)
    return unusual


blanks = st.sampled_from(["", "", "", " ", "\n", "\t", "\r\n  ", "\x0b", "\xa0"])  # the last two are not JSON
sensor_names = st.sampled_from(["GAS-0001", "GAS-0002", "PIPE-0001", "NOPE", "GAS-000", "GAS-00011", "",
                                "GAS-0001\u00e9", "\u6c14-0001", "GAS\\u002d0001", "GAS-0001\\n", "ts"])
metric_literals = st.sampled_from(["ch4", "temp", "c2h6", "CH4", "ch4 ", "\u00e9", "ch\\u0034", "ch4\\/",
                                   "values", ""])
strict_numbers = st.builds(
    lambda sign, whole, fraction, exponent: f"{sign}{whole}{fraction}{exponent}",
    st.sampled_from(["", "-"]),
    st.one_of(st.just("0"), st.from_regex(r"\A[1-9][0-9]{0,24}\Z")),
    st.one_of(st.just(""), st.from_regex(r"\A\.[0-9]{1,25}\Z")),
    st.one_of(st.just(""), st.from_regex(r"\A[eE][+-]?[0-9]{1,4}\Z")))
number_literals = st.one_of(
    strict_numbers,
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.integers(-(10**30), 10**30).map(str),
    st.sampled_from(["-0", "-0.0", "0e0", "-0e-5", "01", "-01", "00", "1.", ".5", "1e", "1e+", "+1", "-",
                     "--1", "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "true", "false",
                     "null", '"3.2"', "[1.5, 2]", "{}", "0x10", "1_0", "\u0661", "2.2250738585072011e-308",
                     "4.9e-324", "1.7976931348623157e308", "1.7976931348623159e308", "9007199254740993",
                     "123456789012345678901234567890", "1" * 70, "0." + "0" * 70 + "1"]))
ts_literals = st.one_of(
    st.integers(NOW - 40 * DAY, NOW + 10 * 60_000).map(str),
    st.sampled_from(["0", "-0", "01", f"0{NOW}", "-1", f"{NOW}.0", f"{NOW}e0", "1e3", str(2**62),
                     str(2**62 + 1), str(2**64), "9" * 25, "null", f'"{NOW}"', "true", "[]"]))


@st.composite
def json_object(draw, members) -> str:
    """`members` joined into an object, with JSON (and not quite JSON) whitespace around tokens."""
    parts = [f"{draw(blanks)}{key}{draw(blanks)}:{draw(blanks)}{value}{draw(blanks)}"
             for key, value in members]
    return "{" + draw(blanks) + ",".join(parts) + draw(blanks) + "}"


@st.composite
def reading_texts(draw) -> str:
    fields = []
    metrics = draw(st.lists(st.tuples(metric_literals, number_literals), max_size=3))  # repeats included
    if draw(st.integers(0, 15)):
        fields.append(('"values"', draw(json_object([(f'"{m}"', v) for m, v in metrics]))))
    if draw(st.integers(0, 3)):
        fields.append(('"ts"', draw(ts_literals)))
    extra = draw(st.integers(0, 25))
    if extra == 0:
        fields.append(('"dt"', "10"))
    elif extra == 1:
        fields.append(draw(st.sampled_from(fields or [('"values"', "{}")])))  # a repeated key
    elif extra == 2:
        fields.append((draw(st.sampled_from(['"TS"', '"t\\u0073"', '"value"', '""'])), "1"))
    return draw(json_object(draw(st.permutations(fields))))


@st.composite
def payload_texts(draw) -> bytes:
    members = []
    for sensor in draw(st.lists(sensor_names, max_size=3)):  # a repeated sensor included
        readings = draw(st.lists(reading_texts(), max_size=3))
        if readings and draw(st.booleans()):
            body = readings[0]
        else:
            body = "[" + draw(blanks) + ",".join(readings) + draw(blanks) + "]"
        members.append((f'"{sensor}"', body))
    text = draw(blanks) + draw(json_object(members)) + draw(blanks)
    return text.encode()


@st.composite
def mutated(draw, payloads) -> bytes:
    """A payload, sometimes with a byte inserted, replaced or removed, or cut short."""
    payload = bytearray(draw(payloads))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(payload)))
        byte = draw(st.sampled_from(b'{}[]",:\\ 0123456789.eE+-tfnu\x00\x1f\x7f\x80\xc3\xff'))
        kind = draw(st.sampled_from(["insert", "replace", "delete", "truncate"]))
        if kind == "insert":
            payload.insert(at, byte)
        elif at < len(payload) and kind == "replace":
            payload[at] = byte
        elif at < len(payload) and kind == "delete":
            del payload[at]
        elif kind == "truncate":
            del payload[at:]
    return bytes(payload)


adversarial_messages = st.tuples(st.sampled_from(["gw-gas-01", "gw-gas-01", "gw-water-01", "gw-unknown"]),
                                 st.one_of(payload_texts(), mutated(payload_texts())),
                                 st.integers(NOW, NOW + 1000))


@settings(max_examples=600, deadline=None)
@given(st.lists(adversarial_messages, max_size=5))
def test_parser_accepts_only_what_the_precise_decoder_accepts_the_same_way(group):
    assert_same_readings_as_precise(group)


def test_clean_variants_stay_on_the_fast_path_and_unusual_ones_go_back():
    clean = [b'{}', b' \r\n\t{ } ', b'{"GAS-0001": []}',
             b'{"GAS-0001": {"values": {"ch4": 1}, "ts": %d}}' % NOW,
             b'{"GAS-0001":[{"values":{"ch4":-0,"temp":-0.0}},{"values":{"ch4":1e2},"ts":%d}],'
             b'"GAS-0002":{"values":{"ch4":1.5E-3}}}' % NOW]
    unusual = [b'{"GAS-0001": {"values": {"ch4": 1, "ch4": 2}}}',  # a repeated metric
               # a repeated sensor
               b'{"GAS-0001": {"values": {"ch4": 1}}, "GAS-0001": {"values": {"ch4": 2}}}',
               b'{"GAS-0001": {"values": {"ch4": 1}, "values": {"temp": 2}}}',
               b'{"GAS-0001": {"ts": %d, "ts": %d, "values": {"ch4": 1}}}' % (NOW, NOW),
               b'{"GAS\\u002d0001": {"values": {"ch4": 1}}}', b'{"GAS-0001": {"values": {"ch\\u0034": 1}}}',
               b'{"GAS-0001": {"values": {}}}', b'{"GAS-0001": {"ts": %d}}' % NOW, b'{"GAS-0001": null}',
               b'{"GAS-0001": [[]]}', b'{"GAS-0001": {"values": {"ch4": 01}}}',
               b'{"GAS-0001": {"values": {"ch4": true}}}',
               b'{"GAS-0001": {"values": {"ch4": 1e400}}}', b'{"GAS-0001": {"ts": 01, "values": {"ch4": 1}}}',
               b'{"GAS-0001": {"ts": -0, "values": {"ch4": 1}}}',
               b'{"GAS-0001": {"dt": 1, "values": {"ch4": [1]}}}',
               b'{"GAS-0001": {"values": {"ch4": 1}}} x', b'{"GAS-0001": {"values": {"ch4": 1}}', b'[]', b'',
               b'\xef\xbb\xbf{}', b'{"PIPE-0001": {"values": {"pressure": 1}}}']
    group = [("gw-gas-01", payload, NOW) for payload in clean + unusual]
    assert assert_same_readings_as_precise(group) == list(range(len(clean), len(group)))


def test_the_sign_of_zero_is_kept_as_msgspec_decodes_it():
    group = [("gw-gas-01", b'{"GAS-0001": {"values": {"ch4": -0, "temp": -0.0}}}', NOW)]
    batch, unusual = FAST.decode_many(group)
    assert unusual == [] and np.signbit(batch.value).tolist() == [False, True]
    assert_same_readings_as_precise(group)


def test_a_payload_over_the_limit_goes_back_even_when_clean():
    head = b'{"GAS-0002": {"values": {"ch4": 1}}}'
    group = [("gw-gas-01", head + b" " * (MAX_PAYLOAD_BYTES - len(head)), NOW),
             ("gw-gas-01", head + b" " * (MAX_PAYLOAD_BYTES - len(head) + 1), NOW)]
    assert assert_same_readings_as_precise(group) == [1]


# The parser's own contract: argument checks, bounded writes, no crash on any bytes.
TABLE = _payload_parser.table({"A": {"x": 0, "y": 1}, "B": {"x": 2}})


def parse_into(payloads, cap) -> tuple[int, np.ndarray, tuple[np.ndarray, ...]]:
    """Parses into arrays of `cap` rows, views of longer ones whose tail must stay untouched."""
    columns = (np.full(cap + 4, -7, np.int32), np.full(cap + 4, -7, np.int64), np.full(cap + 4, -7.0))
    counts = np.full(len(payloads) + 4, -7, np.int64)
    rows = _payload_parser.parse(payloads, [TABLE] * len(payloads), 1000, *(c[:cap] for c in columns),
                                 counts[:len(payloads)])
    assert all((c[cap:] == -7).all() for c in columns) and (counts[len(payloads):] == -7).all()
    return rows, counts[:len(payloads)], columns


PARSER_SAMPLE = (b'{"A": {"values": {"x": 1.5, "y": -2}, "ts": 7},'
                 b' "B": [{"values": {"x": 0}}, {"values": {"x": 3e1}}]}')


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=60), mutated(st.just(PARSER_SAMPLE))), max_size=6),
       st.integers(0, 8))
def test_parser_never_writes_past_its_arrays_whatever_the_bytes(payloads, cap):
    rows, counts, (channel, ts, value) = parse_into(payloads, cap)
    assert 0 <= rows <= cap and rows == counts[counts > 0].sum()
    assert ((counts == -1) | (counts >= 0)).all()
    assert np.isin(channel[:rows], [0, 1, 2]).all() and (ts[:rows] >= -1).all()


def test_a_message_that_does_not_fit_goes_back_and_the_next_ones_still_fit():
    payloads = [b'{"A": {"values": {"x": 1}}}', b'{"A": {"values": {"x": 2, "y": 3}}}',
                b'{"B": {"values": {"x": 4}}}']
    rows, counts, (channel, ts, value) = parse_into(payloads, 2)
    assert rows == 2 and counts.tolist() == [1, -1, 1]
    assert channel[:2].tolist() == [0, 2] and ts[:2].tolist() == [-1, -1] and value[:2].tolist() == [1.0, 4.0]


def test_parser_refuses_wrong_arguments():
    good = (np.empty(4, np.int32), np.empty(4, np.int64), np.empty(4), np.empty(1, np.int64))
    payload = [b"{}"]
    for call, error in [
        (lambda: _payload_parser.parse(payload, [TABLE], 10, *good[:3]), TypeError),
        (lambda: _payload_parser.parse(b"{}", [TABLE], 10, *good), TypeError),
        (lambda: _payload_parser.parse(payload, TABLE, 10, *good), TypeError),
        (lambda: _payload_parser.parse(payload, [TABLE, TABLE], 10, *good), ValueError),
        (lambda: _payload_parser.parse(payload, ["gw-gas-01"], 10, *good), TypeError),
        (lambda: _payload_parser.parse(payload, [TABLE], -1, *good), ValueError),
        (lambda: _payload_parser.parse(payload, [TABLE], 10.0, *good), TypeError),
        (lambda: _payload_parser.parse(payload, [TABLE], 10, np.empty(4, np.int64), *good[1:]), ValueError),
        (lambda: _payload_parser.parse(payload, [TABLE], 10, good[0], np.empty(3, np.int64), *good[2:]),
         ValueError),
        (lambda: _payload_parser.parse(payload, [TABLE], 10, *good[:2], np.empty(4, np.float32), good[3]),
         ValueError),
        (lambda: _payload_parser.parse(payload, [TABLE], 10, *good[:3], np.empty(2, np.int64)), ValueError),
        (lambda: _payload_parser.parse(payload, [TABLE], 10, *good[:3], np.empty((1, 1), np.int64)),
         ValueError),
        (lambda: _payload_parser.parse(payload, [TABLE], 10, good[0][::2], *good[1:]), ValueError),
        (lambda: _payload_parser.parse(payload, [TABLE], 10, *good[:3], np.frombuffer(bytes(8), np.int64)),
         ValueError),
        (lambda: _payload_parser.table([("A", {"x": 0})]), TypeError),
        (lambda: _payload_parser.table({1: {"x": 0}}), TypeError),
        (lambda: _payload_parser.table({"A": ["x"]}), TypeError),
        (lambda: _payload_parser.table({"A": {"x": 1.0}}), TypeError),
        (lambda: _payload_parser.table({"A": {"x": True}}), TypeError),
        (lambda: _payload_parser.table({"A": {"x": -1}}), ValueError),
        (lambda: _payload_parser.table({"A": {"x": 2**31}}), ValueError),
        (lambda: _payload_parser.table({"A": {"x": 2**80}}), ValueError),
        (lambda: _payload_parser.table({"\ud800": {"x": 0}}), ValueError),
    ]:
        with pytest.raises(error):
            call()
    assert _payload_parser.parse(payload, [TABLE], 10, *good) == 0 and good[3].tolist() == [0]

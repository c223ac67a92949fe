"""Bad input at the edges: the payload decoder and the REST API under generated garbage.

Complements tests/test_decode.py (arbitrary bytes, arbitrary JSON shapes): here deep nesting,
numbers beyond float64 and int64, wrong types at every place of a valid message, oversize
payloads, unicode (and lone surrogate) ids, then the same through MQTT into a running service,
and the REST API driven by schemathesis from the app's own OpenAPI schema. Nothing may raise,
answer 500 or stop ingestion; every rejection has a reason; memory stays bounded.
"""

from __future__ import annotations

import collections
import json
import random
import re
import time
import tracemalloc

import numpy as np
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.dead_letters import DeadLetters
from ingest.decode import FUTURE_TOLERANCE_MS, TelemetryDecoder
from ingest.rejection import MAX_PAYLOAD_BYTES, REASONS
from lifeline.broker import PrivateBroker
from lifeline.catalogue import Catalogue
from lifeline.config import load_config
from tests.conftest import DATA
from tests.service import Gateway, RunningService, now_ms, wait_for

CATALOGUE = Catalogue(load_config(DATA / "city.yaml"))
DECODER = TelemetryDecoder(CATALOGUE, retention_days=30)
NOW = 1_763_798_400_000
DAY_MS = 86_400_000


def check(result, payload: bytes = b"") -> None:
    """What must hold for any input: reasons from the contract with a detail, only finite
    values at accepted times, everything encodable for the errors topic."""
    for rejection in result.rejections:
        assert rejection.reason in REASONS and rejection.detail, rejection
        rejection.error_message()  # valid UTF-8 JSON for `{prefix}/{gateway}/errors`
    batch = result.batch
    assert np.isfinite(batch.value).all()
    assert ((batch.ts >= NOW - 30 * DAY_MS) & (batch.ts <= NOW + FUTURE_TOLERANCE_MS)).all()
    assert len(batch.channel) == len(batch.ts) == len(batch.value)


def decode(payload: bytes, gateway: str = "gw-gas-01"):
    result = DECODER.decode(gateway, payload, NOW)
    check(result, payload)
    return result


# -- the decoder --------------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(depth=st.integers(1, 200_000), kind=st.sampled_from("[{"), where=st.sampled_from(["top", "values", "ts", "metric"]))
def test_deep_nesting_is_refused_with_a_reason(depth, kind, where):
    opened = (b"[" * depth + b"]" * depth) if kind == "[" else (b'{"a":' * depth + b"1" + b"}" * depth)
    payload = {
        "top": opened,
        "values": b'{"GAS-0001": {"values": ' + opened + b"}, \"GAS-0002\": {\"ts\": %d, \"values\": {\"ch4\": 1}}}" % NOW,
        "ts": b'{"GAS-0001": {"ts": ' + opened + b', "values": {"ch4": 1}}}',
        "metric": b'{"GAS-0001": {"ts": %d, "values": {"ch4": ' % NOW + opened + b"}}}",
    }[where]
    result = decode(payload)
    assert result.rejections or len(result.batch)


big_ints = st.one_of(st.integers(), st.integers(2**63 - 5, 2**63 + 5), st.integers(-(2**63) - 5, -(2**63) + 5),
                     st.integers(10**300, 10**4000), st.integers(-(10**4000), -(10**300)))
number_tokens = st.one_of(big_ints.map(str), st.floats(allow_nan=False, allow_infinity=False).map(repr),
                          st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "1e-999", "-0.0",
                                           "0e0", "1E+308", "2e308", "4.9e-324"]))


@settings(max_examples=150, deadline=None)
@given(ts=number_tokens, value=number_tokens, dt=st.one_of(st.none(), number_tokens),
       samples=st.lists(number_tokens, min_size=1, max_size=5))
def test_numbers_beyond_float64_and_int64_are_refused_per_reading_object(ts, value, dt, samples):
    good = b'"GAS-0002": {"ts": %d, "values": {"ch4": 1.5}}' % NOW  # a neighbour that must survive
    gas = f'{{"GAS-0001": {{"ts": {ts}, "values": {{"ch4": {value}}}}}, {good.decode()}}}'.encode()
    result = decode(gas)
    assert CATALOGUE.channels_of["GAS-0002"]["ch4"] in result.batch.channel.tolist()
    dt_part = "" if dt is None else f'"dt": {dt}, '
    block = f'{{"BR-ACC-01": {{"ts": {ts}, {dt_part}"values": {{"acc_z": [{", ".join(samples)}]}}}}}}'.encode()
    decode(block, "gw-bridge-01")


def _valid_document() -> dict:
    return {"GAS-0001": [{"ts": NOW, "values": {"ch4": 3.2, "temp": 14.1}}, {"ts": NOW + 1, "values": {"ch4": 3.4}}],
            "GAS-0002": {"ts": NOW, "values": {"ch4": 0.0}}}


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, child in node.items():
            yield from _paths(child, (*prefix, key))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from _paths(child, (*prefix, index))


VALID_PATHS = [p for p in _paths(_valid_document()) if p]
wrong_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10) | st.binary(max_size=5).map(repr),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=8)


@settings(max_examples=200, deadline=None)
@given(path=st.sampled_from(VALID_PATHS), replacement=wrong_values)
def test_a_wrong_type_anywhere_in_a_valid_message_costs_only_its_reading_object(path, replacement):
    document = _valid_document()
    node = document
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = replacement
    result = decode(json.dumps(document).encode())
    # GAS-0002's reading object is untouched unless the mutation was inside it.
    if path[0] != "GAS-0002":
        assert CATALOGUE.channels_of["GAS-0002"]["ch4"] in result.batch.channel.tolist()


def test_unicode_ids_are_refused_and_storable(tmp_path):
    letters = DeadLetters(tmp_path / "dead.db")

    @settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(sensor=st.text(max_size=80), metric=st.text(max_size=20), escaped=st.booleans())
    def refused_and_stored(sensor, metric, escaped):
        document = {sensor: {"ts": NOW, "values": {metric: 1.0}}, "GAS-0001": {"ts": NOW, "values": {metric: 1.0}}}
        # ensure_ascii escapes lone surrogates as \\udXXX: valid JSON that decodes to them.
        payload = json.dumps(document, ensure_ascii=escaped).encode("utf-8", "surrogatepass")
        result = decode(payload)
        stored = len(letters.latest(limit=100_000))
        letters.add([(r, payload) for r in result.rejections])
        assert len(letters.latest(limit=100_000)) == stored + len(result.rejections)

    refused_and_stored()
    letters.close()


def test_payload_size_limit_and_the_cost_of_the_largest_acceptable_message():
    head = b'{"BR-ACC-01": {"ts": %d, "dt": 0.001, "values": {"acc_z": [' % NOW
    sample_count = (MAX_PAYLOAD_BYTES - len(head) - 4) // 2
    largest = head + b",".join([b"1"] * sample_count) + b"]}}}"
    largest += b" " * (MAX_PAYLOAD_BYTES - len(largest))
    assert len(largest) == MAX_PAYLOAD_BYTES
    started = time.perf_counter()
    result = decode(largest, "gw-bridge-01")
    elapsed = time.perf_counter() - started
    assert len(result.batch) == sample_count and not result.rejections
    assert elapsed < 3, f"decoding the largest message took {elapsed:.1f} s"
    # Memory grows linearly with the payload: measured on a quarter of it (tracemalloc is slow).
    quarter = head + b",".join([b"1"] * (sample_count // 4)) + b"]}}}"
    tracemalloc.start()
    decode(quarter, "gw-bridge-01")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 24 * 2**20, f"decoding {len(quarter)} bytes took {peak / 2**20:.0f} MiB"
    over = decode(largest + b" ", "gw-bridge-01")
    assert [r.reason for r in over.rejections] == ["too_large"] and not len(over.batch)


def test_decoding_garbage_does_not_accumulate_memory():
    rng = random.Random(7)
    payloads = [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400))) for _ in range(200)]
    payloads += [b"[" * 50_000, b'{"GAS-0001": {"ts": 1' + b"0" * 4000 + b', "values": {"ch4": 1}}}',
                 b'{"\\ud800": {"values": {"ch4": 1}}}']
    for payload in payloads[:20]:  # warm up caches
        DECODER.decode("gw-gas-01", payload, NOW)
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    for _ in range(3):
        for payload in payloads:
            check(DECODER.decode("gw-gas-01", payload, NOW))
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert after - before < 256 * 1024, f"{after - before} bytes retained"


# -- a running service ---------------------------------------------------------------------------------

def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.M).group(1))


@pytest.fixture(scope="module")
def running(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    with PrivateBroker(folder / "broker") as broker:
        service = RunningService(DATA / "city.yaml", broker.url, folder / "service").start()
        service.broker = broker
        service.admin = service.token("admin")
        try:
            yield service
        finally:
            service.stop()


def test_garbage_over_mqtt_never_stops_ingestion_and_memory_stays_bounded(running):
    rng = random.Random(11)
    gas = Gateway(running.broker.url, "gw-gas-01")
    strangers = [Gateway(running.broker.url, gateway) for gateway in ("gw-ünïcödé", "网关-01", "x" * 200)]
    baseline = rss_kib(running.process.pid)
    huge = b'{"BR-ACC-01": {"ts": 1, "dt": 1, "values": {"acc_z": [' + b"1," * 600_000 + b"1]}}}"
    garbage = [
        b"[" * 100_000, b'{"a":' * 30_000 + b"1" + b"}" * 30_000, huge, huge[: MAX_PAYLOAD_BYTES - 10],
        b'{"GAS-0001": {"ts": 1' + b"0" * 4000 + b', "values": {"ch4": 1}}}',
        b'{"GAS-0001": {"ts": %d, "values": {"ch4": 1' % now_ms() + b"0" * 400 + b"}}}",
        b'{"\\ud800": {"values": {"ch4": 1}}}', "{\"ГАЗ-0001\": {\"values\": {\"ch4\": 1}}}".encode(),
        b"\xff\xfe\x00", b"", b"null", b"1e999", b'"string"', b"{}",
    ] + [bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 3000))) for _ in range(150)]
    for round_ in range(3):
        for payload in garbage:
            gas.send(payload)
        for stranger in strangers:
            stranger.send(garbage[round_])
    # Still ingesting: a valid reading sent after all of it raises its alert.
    gas.send({"GAS-0002": {"ts": now_ms(), "values": {"ch4": 30.0}}})
    alerts = wait_for(lambda: running.get("/api/alerts", token=running.admin), 30, "the alert after the garbage")
    assert [a["sensor"] for a in alerts] == ["GAS-0002"]
    status, health = running.request("GET", "/healthz")
    assert status == 200 and running.process.poll() is None
    # The dead-letter store kept working (the surrogate id did not wedge it) and every entry has a reason.
    letters = running.get("/api/rejections?gateway=gw-gas-01&limit=10000", token=running.admin)
    assert len(letters) >= 3 * (len(garbage) - 1)  # "{}" carries no reading object, so no rejection
    assert all(entry["reason"] in REASONS and entry["detail"] for entry in letters)
    assert any(entry["sensor"] == "?" for entry in letters)  # the lone surrogate, made printable
    assert wait_for(lambda: gas.errors and len(gas.errors) >= len(letters), 10, "the errors topic")
    grown_mib = (rss_kib(running.process.pid) - baseline) / 1024
    assert grown_mib < 150, f"the service grew by {grown_mib:.0f} MiB"
    for client in (gas, *strangers):
        client.close()


def test_rest_api_never_answers_500_and_always_says_why(running):
    """schemathesis generates valid and invalid requests for every operation of the app's own
    OpenAPI schema; each is sent with an admin token (everything reachable) and without one."""
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{running.url}/openapi.json")
    session = requests.Session()
    called: collections.Counter = collections.Counter()

    def send(case) -> None:
        called[case.operation.label] += 1
        for token in (running.admin, None):
            response = case.call(session=session, timeout=10,
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
            where = f"{case.method} {case.formatted_path} {case.query or ''}"
            assert response.status_code < 500, f"{where}: {response.status_code} {response.text[:300]}"
            if response.status_code >= 400:
                body = json.loads(response.text)
                assert isinstance(body, dict) and body.get("error"), f"{where}: {response.text[:300]}"

    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        strategy = st.one_of(operation.as_strategy(), operation.as_strategy(generation_mode=GenerationMode.NEGATIVE))
        settings(max_examples=4, deadline=None, suppress_health_check=list(HealthCheck), database=None)(
            given(case=strategy)(send))()
    assert len(called) == len(operations)
    assert running.request("GET", "/healthz")[0] == 200


@pytest.mark.parametrize("query", ["/api/alerts?since={big}", "/api/alerts?since=-{big}",
                                   "/api/sensors/GAS-0001/readings?metric=ch4&since={big}",
                                   "/api/sensors/GAS-0001/readings?metric=ch4&until=-{big}",
                                   "/api/sensors/GAS-0001/series?metric=ch4&until={big}"])
def test_numbers_beyond_64_bits_in_queries_are_refused_with_a_reason(running, query):
    status, body = running.request("GET", query.format(big="9" * 30), token=running.admin)
    assert status == 400 and "out of range" in body["error"]


@pytest.mark.parametrize("since", ["abc", "-1", "1e3", "99999999999999999999999999", "-99999999999999999999999",
                                   "0x10", "", "١٢"])
def test_websocket_resume_point_is_validated(running, since):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    try:
        with connect(f"{running.ws_url(token=running.admin)}&since={since}") as socket:
            first = json.loads(socket.recv(timeout=10))
            assert first["type"] in ("snapshot", "event")
    except InvalidStatus as refused:
        assert refused.value.response.status_code == 400 if hasattr(refused, "value") else True
        assert refused.response.status_code == 400 and json.loads(refused.response.body)["error"]
    status, _ = running.request("GET", "/healthz")
    assert status == 200


def test_kept_alive_connections_are_answered_without_a_delayed_ack_stall(running):
    """The listener is created as IPPROTO_TCP so that asyncio sets TCP_NODELAY on each
    connection; without it each answer on a kept-alive connection waited ~40 ms."""
    session = requests.Session()
    session.get(f"{running.url}/healthz", timeout=5)
    started = time.perf_counter()
    for _ in range(20):
        assert session.get(f"{running.url}/healthz", timeout=5).status_code == 200
    assert (time.perf_counter() - started) / 20 < 0.035

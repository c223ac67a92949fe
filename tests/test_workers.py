"""Ingestion in worker processes (`lifeline up --workers N`): the gateways are split between
processes, and the service still has one alert book, one event sequence, one set of counters."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from websockets.sync.client import connect

from lifeline.catalogue import Catalogue
from lifeline.config import load_config
from lifeline.ingestion import AUTO_WORKERS_MIN_CHANNELS, choose_workers
from lifeline.partition import assign_gateways, config_for, rules_for
from tests.conftest import DATA
from tests.service import Gateway, RunningService, now_ms, wait_for

CITY = load_config(DATA / "city.yaml")


def test_every_gateway_is_served_by_exactly_one_worker_and_large_ones_spread():
    catalogue = Catalogue(CITY)
    groups = assign_gateways(catalogue, 2)
    assert sorted(g for group in groups for g in group) == sorted(g.id for g in CITY.gateways)
    # city.yaml: the gas gateway has 3 channels, water and bridge 1 each.
    assert ("gw-gas-01",) in groups and ("gw-bridge-01", "gw-water-01") in groups
    assert assign_gateways(catalogue, 2) == groups  # the same plan at every start
    assert [len(group) for group in assign_gateways(catalogue, 5)].count(0) == 2


def test_gateways_sharing_a_structure_share_a_worker():
    """A gas main whose manholes report through two gateways is one unit: the leak detector
    corroborates neighbours along the main, so both gateways must be in the same worker."""
    from lifeline.config import Config, Gateway, Location, Sensor

    def manhole(n: int, gateway: str, main: str) -> Sensor:
        return Sensor(id=f"MH-{n}", gateway=gateway, domain="gas", type="manhole_methane", asset=f"MH-{n}",
                      location=Location(117.2, 31.8), metrics={"ch4": "%LEL"}, interval=60.0, extra={"main": main})

    gateways = tuple(Gateway(f"gw-{g}", "gas co") for g in "abcd")
    sensors = (manhole(1, "gw-a", "GM-1"), manhole(2, "gw-b", "GM-1"),  # one main over two gateways
               manhole(3, "gw-c", "GM-2"), manhole(4, "gw-d", "GM-3"), manhole(5, "gw-d", "GM-3"))
    groups = assign_gateways(Catalogue(Config(gateways=gateways, sensors=sensors)), 2)
    together = next(group for group in groups if "gw-a" in group)
    assert "gw-b" in together
    assert sorted(g for group in groups for g in group) == ["gw-a", "gw-b", "gw-c", "gw-d"]
    assert all(groups)  # the units still spread over both workers


def test_a_worker_binds_rules_only_to_sensors_of_its_gateways():
    from detectors.registry import build_detectors

    catalogue = Catalogue(CITY)
    detectors = build_detectors(catalogue, rules_for(CITY.rules, ("gw-water-01",)))
    sensors = {b.channel.sensor.id for d in detectors.all() for b in d.bindings}
    assert sensors == {"PIPE-0001"}


def test_a_worker_is_sent_its_gateways_sensors_in_full_and_keeps_the_whole_catalogues_numbers():
    from detectors.registry import build_detectors
    from ingest.decode import TelemetryDecoder

    whole = Catalogue(CITY)
    part = config_for(CITY, ("gw-water-01",))
    catalogue = Catalogue(part)
    # Same sensor and channel numbers as the main process: last values and archive use them.
    assert len(catalogue) == len(whole)
    assert catalogue.sensor_index == whole.sensor_index and catalogue.channels_of == whole.channels_of
    assert catalogue.sensor("PIPE-0001") == whole.sensor("PIPE-0001")
    other = catalogue.sensor("GAS-0001")
    assert (other.gateway, list(other.metrics), other.type, other.asset, other.domain) == \
        ("gw-gas-01", ["ch4", "temp"], "", "", "")
    detectors = build_detectors(catalogue, part.rules)
    bound = {(b.channel.sensor.id, b.channel.index) for d in detectors.all() for b in d.bindings}
    assert bound == {("PIPE-0001", whole.channels_of["PIPE-0001"]["pressure"])}
    # Another worker's sensor on this worker's gateway is still "another gateway's", not unknown.
    decoded = TelemetryDecoder(catalogue, 30).decode("gw-water-01", b'{"GAS-0001": {"values": {"ch4": 1.0}}}', now_ms())
    assert [r.reason for r in decoded.rejections] == ["not_owner"]


def test_a_worker_is_sent_far_less_than_the_whole_configuration(tmp_path):
    import pickle

    from lifeline.bench_traffic import write_catalogue

    config = load_config(write_catalogue(tmp_path, 2_000, 4, 10))
    groups = assign_gateways(Catalogue(config), 2)
    sent = [len(pickle.dumps(config_for(config, group))) for group in groups]
    assert max(sent) < len(pickle.dumps(config)) / 2
    shared = config_for(config, groups[0]).sensors
    assert shared[0].metrics is shared[1].metrics and shared[0].gateway is shared[4].gateway  # stored once


def test_auto_worker_count_follows_the_catalogue_size():
    assert choose_workers(None, AUTO_WORKERS_MIN_CHANNELS - 1, cpus=2) == 1
    assert choose_workers("auto", AUTO_WORKERS_MIN_CHANNELS, cpus=2) == 2
    assert choose_workers(None, 10**6, cpus=1) == 1
    assert choose_workers("3", 10, cpus=2) == 3
    with pytest.raises(ValueError):
        choose_workers(0, 10)


def receive(ws, timeout: float = 15.0) -> dict:
    return json.loads(ws.recv(timeout=timeout))


def metric(service: RunningService, name: str) -> float:
    text = urllib.request.urlopen(f"{service.url}/metrics", timeout=5).read().decode()
    return sum(float(m.group(1)) for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.M))


@pytest.fixture
def workers_service(broker, tmp_path):
    running = RunningService(DATA / "city.yaml", broker.url, tmp_path / "service", ("--workers", "2")).start()
    yield running
    running.stop()


def test_two_workers_count_archive_and_alert_as_one_service(workers_service, broker):
    service = workers_service
    assert service.get("/healthz")["workers"] == 2
    gas, water = Gateway(broker.url, "gw-gas-01"), Gateway(broker.url, "gw-water-01")
    t0 = now_ms() - 60_000
    with connect(service.ws_url()) as ws:
        snapshot = receive(ws)
        assert snapshot["type"] == "snapshot"
        # Gas and water are served by different workers; both raise alerts.
        gas.send({"GAS-0001": [{"ts": t0, "values": {"ch4": 12.0, "temp": 14.0}},
                               {"ts": t0 + 1000, "values": {"ch4": 26.0}}]})
        water.send({"PIPE-0001": {"ts": t0, "values": {"pressure": 0.05}}})
        events = [receive(ws) for _ in range(3)]
    assert [e["seq"] for e in events] == list(range(snapshot["seq"] + 1, snapshot["seq"] + 4))
    assert sorted((e["alert"]["sensor"], e["event"]) for e in events) == [
        ("GAS-0001", "escalated"), ("GAS-0001", "raised"), ("PIPE-0001", "raised")]

    # Counters and last values from both workers; readings queryable from the shared archive.
    wait_for(lambda: service.get("/healthz")["readings"] == 4, message="4 readings counted")
    assert metric(service, "lifeline_readings_total") == 4
    assert service.get("/api/sensors/PIPE-0001")["values"]["pressure"]["value"] == 0.05
    assert service.get("/api/sensors/GAS-0001")["values"]["ch4"]["value"] == 26.0
    readings = wait_for(lambda: service.get("/api/sensors/GAS-0001/readings?metric=ch4")["readings"],
                        message="archived readings")
    assert readings == [{"ts": t0, "value": 12.0}, {"ts": t0 + 1000, "value": 26.0}]

    # A rejection in a worker reaches the errors topic, the counters and the dead-letter store.
    water.send({"PIPE-0001": {"ts": t0, "values": {"flow": 1.0}}})
    wait_for(lambda: water.errors, message="errors-topic message")
    assert water.errors[0]["reason"] == "unknown_metric"
    dead = wait_for(lambda: service.get("/api/rejections?gateway=gw-water-01"), message="dead letter")
    assert dead[0]["reason"] == "unknown_metric" and "flow" in dead[0]["payload"]
    assert metric(service, "lifeline_rejections_total") == 1
    gas.close()
    water.close()


def test_a_restart_with_workers_resumes_open_alerts_instead_of_raising_them_again(workers_service, broker):
    service = workers_service
    gas = Gateway(broker.url, "gw-gas-01")
    t0 = now_ms() - 60_000
    gas.send({"GAS-0001": {"ts": t0, "values": {"ch4": 21.0}}})
    alert = wait_for(lambda: service.get("/api/alerts"), message="alert")[0]
    assert alert["level"] == "orange"
    seq = service.get("/healthz")["seq"]

    service.stop()
    service.start()
    gas.send({"GAS-0001": {"ts": t0 + 1000, "values": {"ch4": 22.0}}})  # still orange: no event
    gas.send({"GAS-0001": {"ts": t0 + 2000, "values": {"ch4": 1.0}}})   # clears the same alert
    wait_for(lambda: service.get(f"/api/alerts/{alert['id']}")["condition"] == "cleared", message="cleared")
    with connect(service.ws_url(since=seq)) as ws:
        event = receive(ws)
    assert event["seq"] == seq + 1 and event["event"] == "cleared" and event["alert"]["id"] == alert["id"]
    assert len(service.get("/api/alerts")) == 1
    gas.close()


def test_changing_the_worker_count_leaves_no_session_behind_to_replay_readings(broker, tmp_path):
    data = tmp_path / "service"
    single = RunningService(DATA / "city.yaml", broker.url, data)
    workers = RunningService(DATA / "city.yaml", broker.url, data, ("--workers", "2"))
    gas = Gateway(broker.url, "gw-gas-01")
    try:
        single.start().stop()
        workers.start()
        t0 = now_ms() - 60_000
        gas.send({"GAS-0002": {"ts": t0, "values": {"ch4": 1.0}}})
        wait_for(lambda: workers.get("/healthz")["readings"] == 1, message="reading in worker mode")
        workers.stop()

        # Back to one process: its old session must not have kept the reading for it.
        single.start()
        gas.send({"GAS-0002": {"ts": t0 + 1000, "values": {"ch4": 2.0}}})
        path = "/api/sensors/GAS-0002/readings?metric=ch4"
        wait_for(lambda: len(single.get(path)["readings"]) >= 2, message="second reading archived")
        assert single.get(path)["readings"] == [{"ts": t0, "value": 1.0}, {"ts": t0 + 1000, "value": 2.0}]
        assert single.get("/healthz")["readings"] == 1
    finally:
        workers.stop()
        single.stop()
        gas.close()


def test_workers_mirror_their_readings_to_influxdb(broker, tmp_path):
    from tests.test_influx import Victoria

    victoria = Victoria(tmp_path / "victoria").start()
    config = tmp_path / "city.yaml"
    config.write_text((DATA / "city.yaml").read_text()
                      + f"\ninflux: {{url: {victoria.url}, token: T, org: lifeline, bucket: lifeline}}\n")
    service = RunningService(config, broker.url, tmp_path / "service", ("--workers", "2")).start()
    try:
        gas, water = Gateway(broker.url, "gw-gas-01"), Gateway(broker.url, "gw-water-01")
        now = now_ms()
        gas.send({"GAS-0001": {"ts": now, "values": {"ch4": 30.0}}})
        water.send({"PIPE-0001": {"ts": now, "values": {"pressure": 0.5}}})
        found = victoria.wait_count(2)  # a reading from each worker
        assert found[("reading_ch4", "GAS-0001")] == [(now, 30.0)]
        assert found[("reading_pressure", "PIPE-0001")] == [(now, 0.5)]
        events = wait_for(lambda: victoria.labels("alert_event_seq"), 10, "the raised alert's event")
        assert [(e["event"], e["sensor"]) for e in events] == [("raised", "GAS-0001")]
        gas.close()
        water.close()
    finally:
        service.stop()
        victoria.stop()


def worker_pids(service: RunningService) -> list[int]:
    """The worker processes of a running service (spawned children; not the resource tracker)."""
    import subprocess

    children = subprocess.run(["ps", "-ww", "--ppid", str(service.process.pid), "-o", "pid=,args="],
                              capture_output=True, text=True).stdout.splitlines()
    return [int(line.split()[0]) for line in children if "spawn_main" in line]


def test_a_killed_worker_is_started_again_and_resumes_its_alerts(workers_service, broker):
    import os
    import signal

    service = workers_service
    gas = Gateway(broker.url, "gw-gas-01")
    t0 = now_ms() - 60_000
    gas.send({"GAS-0001": {"ts": t0, "values": {"ch4": 21.0}}})
    alert = wait_for(lambda: service.get("/api/alerts"), message="alert")[0]
    seq = service.get("/healthz")["seq"]
    killed = worker_pids(service)
    assert len(killed) == 2
    for pid in killed:
        os.kill(pid, signal.SIGKILL)

    # Published while the workers are down: kept in their sessions, handled once they are back.
    gas.send({"GAS-0001": {"ts": t0 + 1000, "values": {"ch4": 22.0}}})
    gas.send({"GAS-0001": {"ts": t0 + 2000, "values": {"ch4": 1.0}}})
    wait_for(lambda: service.get(f"/api/alerts/{alert['id']}")["condition"] == "cleared", 60, "cleared")
    assert not set(worker_pids(service)) & set(killed)
    with connect(service.ws_url(since=seq)) as ws:
        event = receive(ws)
    assert event["seq"] == seq + 1 and event["event"] == "cleared" and event["alert"]["id"] == alert["id"]
    assert "ended unexpectedly" in service.log()
    gas.close()

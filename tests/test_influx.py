"""The InfluxDB sink against a real server speaking the InfluxDB v2 write API.

Debian's VictoriaMetrics accepts `/api/v2/write` from influxdb-client (one series per
measurement and field: `reading_ch4{sensor=..., domain=..., asset=..., gateway=...}`) and keeps
every sample it is sent, duplicates included, so reading back through `/api/v1/export` shows
both that every reading arrived and that none arrived twice.
"""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from alerting.alert import Alert
from alerting.lifecycle import Event
from archive.influx_lines import LineFormat
from archive.influx_sink import InfluxSink, InfluxWriter, influx_settings
from ingest.batch import Batch
from lifeline.broker import free_port
from lifeline.catalogue import Catalogue
from lifeline.config import InfluxSettings, load_config, parse_config
from lifeline.metrics import Metrics
from tests.conftest import DATA
from tests.service import Gateway, RunningService, now_ms, wait_for

VICTORIA = "/usr/bin/victoria-metrics"
pytestmark = pytest.mark.skipif(not Path(VICTORIA).exists(),
                                reason="Debian's victoria-metrics is installed by `make test`")

CATALOGUE = Catalogue(load_config(DATA / "city.yaml"))


class Victoria:
    """VictoriaMetrics on a free loopback port with its own data folder; restartable."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Victoria:
        self.process = subprocess.Popen(
            [VICTORIA, f"-httpListenAddr=127.0.0.1:{self.port}", f"-storageDataPath={self.folder}",
             "-loggerLevel=ERROR", "-search.disableCache", "-retentionPeriod=10y"],
            stdout=subprocess.DEVNULL, stderr=(self.folder.parent / "victoria.log").open("ab"))
        wait_for(self._healthy, 15, "VictoriaMetrics to listen")
        return self

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def _rows(self, name_pattern: str) -> list[dict]:
        urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=5).read()
        query = urllib.parse.urlencode({"match[]": f'{{__name__=~"{name_pattern}"}}'})
        text = urllib.request.urlopen(f"{self.url}/api/v1/export?{query}", timeout=10).read().decode()
        return [json.loads(line) for line in filter(None, text.splitlines())]

    def export(self, name_pattern: str = "reading_.*") -> dict[tuple[str, str], list[tuple[int, float]]]:
        """{(metric name, sensor): [(ts, value), ...]} of every stored sample, duplicates kept."""
        series: dict[tuple[str, str], list[tuple[int, float]]] = {}
        for row in self._rows(name_pattern):
            key = (row["metric"]["__name__"], row["metric"].get("sensor", ""))
            series.setdefault(key, []).extend(zip(row["timestamps"], row["values"], strict=True))
        return series

    def labels(self, name_pattern: str) -> list[dict]:
        """The label sets of the series whose name matches."""
        return [row["metric"] for row in self._rows(name_pattern)]

    def wait_count(self, expected: int, timeout: float = 15.0) -> dict:
        """Poll until `expected` samples are visible (VictoriaMetrics shows new data within ~1 s)."""
        found: dict = {}

        def enough() -> bool:
            nonlocal found
            found = self.export()
            return sum(len(v) for v in found.values()) >= expected

        wait_for(enough, timeout, f"{expected} samples in VictoriaMetrics")
        return found


@pytest.fixture
def victoria(tmp_path):
    server = Victoria(tmp_path / "victoria").start()
    yield server
    server.stop()


def settings(url: str, **limits) -> InfluxSettings:
    return InfluxSettings(url=url, token="test-token", org="lifeline", bucket="lifeline", **limits)


def channel(sensor: str, metric: str) -> int:
    return CATALOGUE.channels_of[sensor][metric]


def readings(start_ms: int, count: int, sensor: str = "PIPE-0001", metric: str = "pressure") -> Batch:
    """`count` readings of one channel, one millisecond apart, value = index."""
    return Batch(np.full(count, channel(sensor, metric), np.int32), start_ms + np.arange(count, dtype=np.int64),
                 np.arange(count, dtype=np.float64))


def event(seq: int, kind: str = "raised", updated_at: int = 1_763_798_400_000) -> Event:
    alert = Alert(id=f"a-{seq:06d}", rule="gas-ch4-level", sensor="GAS-0001", metric="ch4", domain="gas",
                  asset="MH-0001", gateway="gw-gas-01", owner="Municipal Gas Co.", level="orange",
                  peak_level="red", condition="active", workflow="new", value=21.5, threshold=20.0,
                  message='ch4 21.5 %LEL >= orange 20 "quoted"', raised_at=updated_at, updated_at=updated_at)
    return Event(seq, kind, alert, b"{}")


# -- line protocol -----------------------------------------------------------------------------------

def test_one_line_per_sensor_and_time_with_a_field_per_metric_and_escaped_tags():
    config = parse_config("""
gateways: [{id: gw-1, owner: O}]
sensors:
  - {id: S-1, gateway: gw-1, domain: gas, asset: "Manhole 7, north=side", metrics: {ch4: "%LEL", temp: degC}}
""")
    catalogue = Catalogue(config)
    ch4, temp = catalogue.channels_of["S-1"]["ch4"], catalogue.channels_of["S-1"]["temp"]
    batch = Batch(np.array([ch4, temp, ch4, ch4], np.int32), np.array([1000, 1000, 2000, 1000], np.int64),
                  np.array([3.5, 14.0, 1e20, 3.25]))
    lines = LineFormat(catalogue).reading_lines(batch)
    tags = r"reading,asset=Manhole\ 7\,\ north\=side,domain=gas,gateway=gw-1,sensor=S-1"
    # The repeated (ch4, 1000) keeps the value that came last.
    assert lines == [f"{tags} ch4=3.25,temp=14.0 1000", f"{tags} ch4=1e+20 2000"]


def test_alert_event_line_has_tags_fields_and_the_reading_time():
    line = LineFormat.event_line(event(7), wall_ms=5)
    assert line == ('alert_event,asset=MH-0001,domain=gas,event=raised,gateway=gw-gas-01,level=orange,metric=ch4,'
                    'rule=gas-ch4-level,sensor=GAS-0001 value=21.5,threshold=20.0,seq=7i,alert="a-000007",'
                    'peak_level="red",condition="active",workflow="new",'
                    r'message="ch4 21.5 %LEL >= orange 20 \"quoted\"" 1763798400000')
    assert LineFormat.event_line(event(8, "acknowledged"), wall_ms=5).endswith(" 5")  # operator: wall clock


def test_environment_overrides_and_enables_the_sink():
    assert influx_settings(None, {}) is None
    from_env = influx_settings(None, {"LIFELINE_INFLUX_URL": "http://influx:8086", "LIFELINE_INFLUX_TOKEN": "t"})
    assert (from_env.url, from_env.token, from_env.bucket) == ("http://influx:8086", "t", "lifeline")
    configured = settings("http://a:8086", spool_max_mb=5)
    assert influx_settings(configured, {"LIFELINE_INFLUX_TOKEN": "secret"}).token == "secret"
    assert influx_settings(configured, {}).spool_max_mb == 5


class FakeInflux:
    """A stand-in InfluxDB answering every write with `status`, recording what it got."""

    def __init__(self):
        import http.server

        self.status = 204
        self.requests: list[tuple[str, dict, bytes]] = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                fake.requests.append((self.path, dict(self.headers), gzip.decompress(body)))
                self.send_response(fake.status)
                self.send_header("Content-Type", "application/json")
                payload = b'{"code": "invalid", "message": "refused by the test"}' if fake.status >= 400 else b""
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_write_requests_are_influxdb_v2_writes_with_token_gzip_and_ms_precision(tmp_path):
    fake = FakeInflux()
    sink = InfluxSink(settings(fake.url, retry_max_s=0.3), CATALOGUE, tmp_path / "spool")
    sink.append(readings(1_000, 3))
    assert sink.flush(10)
    [(path, headers, body)] = fake.requests
    assert path == "/api/v2/write?org=lifeline&bucket=lifeline&precision=ms"
    assert headers["Authorization"] == "Token test-token" and headers["Content-Encoding"] == "gzip"
    assert body.decode().splitlines()[0] == "reading,asset=WM-01,domain=pipeline,gateway=gw-water-01,sensor=PIPE-0001 pressure=0.0 1000"

    fake.status = 401  # a wrong token: kept and retried, never dropped
    sink.append(readings(2_000, 3))
    wait_for(lambda: not sink.up and sink.spool.count == 3, 10, "the refused write to be spooled")
    assert "401" in sink.status()["last_error"]
    fake.status = 400  # data InfluxDB will never take: dropped and counted, not retried forever
    # The writer empties the spool, then marks the sink up: wait for both, not the first alone.
    wait_for(lambda: sink.pending() == 0 and sink.up, 10, "the 400 to be given up")
    assert sink.refused_lines == 3 and sink.up
    fake.status = 204
    sink.append(readings(3_000, 2))
    assert sink.flush(10) and fake.requests[-1][2].count(b"\n") == 1
    sink.close()
    fake.close()


# -- against VictoriaMetrics -------------------------------------------------------------------------

def test_readings_and_alert_events_arrive_once_with_their_tags(victoria, tmp_path):
    start = now_ms() - 60_000
    metrics = Metrics()
    sink = InfluxSink(settings(victoria.url), CATALOGUE, tmp_path / "spool", metrics)
    gas = Batch(np.array([channel("GAS-0001", "ch4"), channel("GAS-0001", "temp")], np.int32),
                np.array([start, start], np.int64), np.array([3.2, 14.1]))
    sink.append(gas)
    sink.append(readings(start, 12_345))  # more than two requests' worth
    sink.on_event(event(1, updated_at=start))
    assert sink.flush(15)
    found = victoria.wait_count(2 + 12_345)
    assert found[("reading_ch4", "GAS-0001")] == [(start, 3.2)]
    assert found[("reading_temp", "GAS-0001")] == [(start, 14.1)]
    assert found[("reading_pressure", "PIPE-0001")] == [(start + i, float(i)) for i in range(12_345)]
    [labels] = victoria.labels("reading_ch4")
    assert {k: labels[k] for k in ("sensor", "domain", "asset", "gateway")} == {
        "sensor": "GAS-0001", "domain": "gas", "asset": "MH-0001", "gateway": "gw-gas-01"}
    events = victoria.labels("alert_event_value")
    assert [(e["event"], e["level"], e["rule"]) for e in events] == [("raised", "orange", "gas-ch4-level")]
    exposition = metrics.exposition().decode()
    assert re.search(r"^lifeline_influx_lines_total 12347\.0$", exposition, re.M)
    assert re.search(r"^lifeline_influx_pending 0\.0$", exposition, re.M)
    assert sink.status()["up"] and sink.status()["lag_s"] == 0
    sink.close()


def test_outage_spools_to_disk_and_recovery_writes_everything_once_in_order(victoria, tmp_path):
    """Stop the server, keep ingesting, restart it: every reading arrives exactly once, in order."""
    written: list[int] = []  # first timestamp of each successful request, in the order sent
    real = InfluxWriter(settings(victoria.url))

    def write(body: bytes) -> None:
        real.write(body)
        written.append(int(body[body.rfind(b" ") + 1:]))

    metrics = Metrics()
    sink = InfluxSink(settings(victoria.url, flush_s=0.1, retry_max_s=0.5), CATALOGUE, tmp_path / "spool",
                      metrics, writer=write)
    start = now_ms() - 600_000
    appended = 0

    def ingest(batches: int) -> None:
        nonlocal appended
        for _ in range(batches):
            sink.append(readings(start + appended, 500))
            appended += 500
            time.sleep(0.01)

    ingest(20)
    assert sink.flush(10)
    victoria.stop()
    ingest(100)  # 50,000 readings while the server is away
    wait_for(lambda: not sink.up and sink.spool.count == 50_000, 10, "the outage's readings in the spool")
    assert sink.spool.bytes > 0 and sink.lag_seconds() > 0
    assert len(sink.spool) <= 25  # 100 small batches gathered into few segments, not a file each
    exposition = metrics.exposition().decode()
    assert re.search(r"^lifeline_influx_up 0\.0$", exposition, re.M)
    assert re.search(r"^lifeline_influx_spool_bytes [1-9]", exposition, re.M)
    assert float(re.search(r"^lifeline_influx_lag_seconds (\S+)$", exposition, re.M).group(1)) > 0

    restarted = time.monotonic()
    victoria.start()
    ingest(10)  # live readings keep coming during the recovery
    assert sink.flush(20)
    recovery_s = time.monotonic() - restarted
    found = victoria.wait_count(appended)
    assert found[("reading_pressure", "PIPE-0001")] == [(start + i, float(i % 500)) for i in range(appended)]
    assert written == sorted(written)  # the spool went out oldest first, live data after it
    assert sink.spool.count == 0 and sink.spool.bytes == 0 and sink.up
    print(f"recovery: {appended} readings, spool of 50,000 written {recovery_s:.2f} s after the restart")
    sink.close()


def test_a_hung_server_fills_the_queue_which_overflows_to_the_spool_in_order(victoria, tmp_path):
    released = threading.Event()
    real = InfluxWriter(settings(victoria.url))
    order: list[int] = []

    def write(body: bytes) -> None:
        released.wait(20)  # the server "hangs" until released
        real.write(body)
        order.append(int(body[body.rfind(b" ") + 1:]))

    sink = InfluxSink(settings(victoria.url, queue_max_readings=2_000, flush_s=0.05), CATALOGUE,
                      tmp_path / "spool", writer=write)
    start = now_ms() - 60_000
    began = time.perf_counter()
    for i in range(40):
        sink.append(readings(start + i * 300, 300))
    assert time.perf_counter() - began < 2  # append never waited for the hung write
    assert sink.spool.count > 0  # the overflow went to disk
    released.set()
    assert sink.flush(20)
    found = victoria.wait_count(12_000)
    assert found[("reading_pressure", "PIPE-0001")] == [(start + i, float(i % 300)) for i in range(12_000)]
    assert order == sorted(order)
    sink.close()


def test_spool_survives_a_restart_of_the_service(victoria, tmp_path):
    url = victoria.url
    victoria.stop()
    start = now_ms() - 60_000
    first = InfluxSink(settings(url, flush_s=0.05), CATALOGUE, tmp_path / "spool")
    first.append(readings(start, 7_000))
    first.on_event(event(3, updated_at=start))
    wait_for(lambda: not first.up, 10, "the write to fail")
    first.close()
    assert first.spool.count == 7_001

    victoria.start()
    second = InfluxSink(settings(url), CATALOGUE, tmp_path / "spool")
    assert second.flush(15)
    found = victoria.wait_count(7_000)
    assert found[("reading_pressure", "PIPE-0001")] == [(start + i, float(i)) for i in range(7_000)]
    assert len(victoria.labels("alert_event_seq")) == 1
    second.close()


def test_the_spool_is_bounded_and_drops_its_oldest_data(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}"  # nobody listens: every write fails at once
    metrics = Metrics()
    sink = InfluxSink(settings(closed, spool_max_mb=0.2, flush_s=0.01, batch_lines=1000), CATALOGUE,
                      tmp_path / "spool", metrics)
    start = now_ms()
    for i in range(30):
        sink.append(readings(start + i * 1000, 1000))  # 20 bytes a reading on disk: 600 kB in all
    wait_for(lambda: sink.pending() <= 10_000 and not sink._memory, 10, "the spool to reach its bound")
    assert sink.spool.bytes <= 200_000 and sink.spool.dropped >= 20_000
    assert re.search(r"^lifeline_influx_dropped_total [1-9]", metrics.exposition().decode(), re.M)
    sink.close()


# -- the service -------------------------------------------------------------------------------------

def test_lifeline_up_writes_to_influx_and_reports_the_sink(victoria, broker, tmp_path):
    config = tmp_path / "city.yaml"
    text = (DATA / "city.yaml").read_text()
    config.write_text(text + f"\ninflux: {{url: {victoria.url}, token: T, org: lifeline, bucket: lifeline}}\n")
    service = RunningService(config, broker.url, tmp_path / "service").start()
    try:
        gas = Gateway(broker.url, "gw-gas-01")
        now = now_ms()
        gas.send({"GAS-0001": [{"ts": now, "values": {"ch4": 30.0, "temp": 12.5}}]})
        found = victoria.wait_count(2)
        assert found[("reading_ch4", "GAS-0001")] == [(now, 30.0)]
        events = wait_for(lambda: victoria.labels("alert_event_seq"), 10, "the raised alert's event")
        assert [(e["event"], e["level"], e["sensor"]) for e in events] == [("raised", "red", "GAS-0001")]
        status, health = service.request("GET", "/healthz")
        assert health["influx"]["up"] is True and health["influx"]["spooled"] == 0
        metrics = urllib.request.urlopen(f"{service.url}/metrics", timeout=5).read().decode()
        assert re.search(r"^lifeline_influx_up 1\.0$", metrics, re.M)
        gas.close()
    finally:
        service.stop()

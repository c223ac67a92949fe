"""The control-room map, sensor detail, languages and a 10,000-sensor load, in a real Chromium."""

from __future__ import annotations

import csv
import json
import random
import shutil
import time
from pathlib import Path

import pytest

from tests.service import ROOT, Gateway, RunningService, now_ms, wait_for
from tests.test_dashboard_browser import ARTIFACTS, CHROMIUM, browser, open_board  # noqa: F401 - the fixture

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is installed by `make test`"),
]

DEMO = ROOT / "lifeline" / "demo" / "lifeline.yaml"
DISTRICTS = DEMO.parent / "districts.geojson"

# A normal value for every metric of the demo city (between its rules' limits).
NORMAL = {"ch4": 1.2, "temp": 15.0, "o2": 20.9, "flow": 520.0, "strain": 150.0, "deflection": 8.0, "speed": 1.0,
          "floor": 3.0, "door": 0.0, "nh3": 5.0, "lel": 2.0}
NORMAL_BY_TYPE = {("water_pressure", "pressure"): 0.32, ("storage_tank", "pressure"): 1.0,
                  ("drainage_level", "level"): 0.8, ("storage_tank", "level"): 60.0}

# Frame recorder for the scale test: requestAnimationFrame intervals and long tasks.
FRAMES = """
window.__frames = {deltas: [], long: [], reset() { this.deltas = []; this.long = []; }};
(() => {
  let last = performance.now();
  const tick = (now) => { window.__frames.deltas.push(now - last); last = now; requestAnimationFrame(tick); };
  requestAnimationFrame(tick);
  new PerformanceObserver((list) => { for (const e of list.getEntries()) window.__frames.long.push(e.duration); })
    .observe({type: "longtask", buffered: true});
})();
"""
FRAME_STATS = """() => {
  const d = window.__frames.deltas.slice().sort((a, b) => a - b), n = d.length, q = (p) => d[Math.min(n - 1, Math.floor(n * p))];
  const long = window.__frames.long;
  return {frames: n, p50: q(0.5), p95: q(0.95), max: d[n - 1], over50: d.filter((x) => x > 50).length,
          longtasks: long.length, long_max: Math.max(0, ...long), perf: window.lifeline.perf};
}"""


def demo_sensors() -> list[dict]:
    with (DEMO.parent / "sensors.csv").open() as rows:
        return list(csv.DictReader(rows))


def populate_demo(broker_url: str, minutes: int = 30, skip: tuple[str, ...] = ()) -> dict[str, Gateway]:
    """Half an hour of normal readings from every demo sensor (but `skip`), through its own gateway."""
    now = now_ms()
    payloads: dict[str, dict] = {}
    for row in demo_sensors():
        if row["id"] in skip:
            continue
        metrics = [m.split(":")[0] for m in row["metrics"].split(";")]
        values = {m: NORMAL_BY_TYPE.get((row["type"], m), NORMAL.get(m, 1.0)) for m in metrics}
        payloads.setdefault(row["gateway"], {})[row["id"]] = [
            {"ts": now - (minutes - k) * 60_000, "values": values} for k in range(minutes + 1)]
    gateways = {gw: Gateway(broker_url, gw) for gw in payloads}
    for gw, payload in payloads.items():
        gateways[gw].send(payload)
    return gateways


def click_sensor_on_map(page, sensor_id: str) -> None:
    position = page.evaluate("(id) => window.lifeline.mapPosition(id)", sensor_id)
    assert position and position["inView"], position
    box = page.locator("#map").bounding_box()
    page.mouse.click(box["x"] + position["x"], box["y"] + position["y"])


def painted_pixels(page, selector: str) -> int:
    return page.eval_on_selector(selector, """(c) => {
        const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }""")


def test_the_map_shows_the_demo_city_and_a_click_opens_the_sensor_with_its_chart(browser, broker, tmp_path):  # noqa: F811
    demo = RunningService(DEMO, broker.url, tmp_path / "demo").start()
    try:
        gateways = populate_demo(broker.url, skip=("GAS-CJ-03", "GAS-CJ-07"))
        now = now_ms()
        # A gas leak rising past red over the last ten minutes, another still rising (a forecast
        # where the configuration has trend rules), and a tank over-pressure.
        gateways["gw-gas-01"].send({
            "GAS-CJ-03": [{"ts": now - (30 - k) * 60_000,
                           "values": {"ch4": 1.2 if k < 20 else 2.0 + 2.5 * (k - 20), "temp": 15.0}} for k in range(31)],
            "GAS-CJ-07": [{"ts": now - (60 - k) * 30_000,
                           "values": {"ch4": 1.2 if k < 48 else 1.2 + 1.1 * (k - 48), "temp": 15.0}} for k in range(61)]})
        gateways["gw-chem-01"].send({"HZ-T101": {"ts": now, "values": {"pressure": 1.45, "temp": 30.0, "level": 60.0}}})
        wait_for(lambda: {"GAS-CJ-03", "HZ-T101"} <= {a["sensor"] for a in demo.get("/api/alerts?open=true")},
                 message="alerts of both incidents")
        catalogue = {s["id"]: s for s in demo.get("/api/sensors")}

        page, errors = open_board(browser, demo)
        page.set_viewport_size({"width": 1920, "height": 1080})  # a control-room screen
        page.wait_for_selector(f"#map[data-ready=true][data-sensors='{len(catalogue)}']", state="attached")
        assert len(catalogue) == len(demo_sensors()) == 97
        page.wait_for_selector(".alert-row[data-sensor='GAS-CJ-03'][data-level=red]")
        page.wait_for_function("Number(document.querySelector('#map').dataset.alerted) >= 2")
        assert page.get_attribute("#map", "data-clustered") == "false"  # 97 sensors are drawn one by one
        assert painted_pixels(page, "#map canvas.map-base") > 100_000  # districts, water, roads, sensors
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"))

        click_sensor_on_map(page, "GAS-CJ-03")
        page.wait_for_selector("#detail[data-sensor-id='GAS-CJ-03'][data-ready=true]")
        assert page.get_attribute("#map", "data-selected") == "GAS-CJ-03"
        page.wait_for_selector(".alert-row.selected[data-sensor='GAS-CJ-03']")
        chart = page.wait_for_selector("#detail canvas.metric-chart[data-metric=ch4][data-points]")
        assert int(chart.get_attribute("data-points")) >= 30  # half an hour of history
        assert painted_pixels(page, "#detail canvas.metric-chart[data-metric=ch4]") > 5_000
        assert page.locator("#detail .metric-card").count() == 2  # ch4 and temp
        assert "gas-manhole-ch4" in page.inner_text("#detail .metric-card[data-metric=ch4] .metric-rule")
        page.wait_for_selector("#detail-alerts .d-alert[data-level=red] .h-row[data-event=raised]")
        assert page.get_attribute("#detail-quality", "data-status") == "ok"
        assert "gw-gas-01" in page.inner_text("#detail-quality")
        page.screenshot(path=str(ARTIFACTS / "dashboard-detail.png"))

        # A board row opens its sensor too; the other sensors on the same asset are one click away.
        page.click(".alert-row[data-sensor='HZ-T101'] .asset")
        page.wait_for_selector("#detail[data-sensor-id='HZ-T101'][data-ready=true]")
        assert page.locator("#detail .metric-card").count() == 3
        page.click("#detail .sibling[data-sensor-id='HZ-LEL-01']")
        page.wait_for_selector("#detail[data-sensor-id='HZ-LEL-01'][data-ready=true]")
        page.keyboard.press("Escape")
        page.wait_for_selector("#detail", state="hidden")

        # Filters: district (from the catalogue), owner and state.
        def rows_only_of(sensors: list[str]) -> None:
            page.wait_for_function("""(ids) => { const rows = [...document.querySelectorAll('.alert-row')];
                return rows.length > 0 && rows.every((r) => ids.includes(r.dataset.sensor)); }""", arg=sensors)

        page.select_option("#filter-district", "Yaohai")
        rows_only_of([s for s, c in catalogue.items() if c["district"] == "Yaohai"])
        assert page.locator(".alert-row[data-sensor='HZ-T101']").count() >= 1
        page.select_option("#filter-district", "")
        page.select_option("#filter-owner", "Hefei Gas Group")
        rows_only_of([s for s, c in catalogue.items() if c["owner"] == "Hefei Gas Group"])
        page.select_option("#filter-owner", "")
        page.select_option("#filter-state", "acknowledged")
        page.wait_for_selector("#board-empty[data-state=filtered]")
        page.select_option("#filter-state", "")

        # Risk view: districts coloured by their open alerts.
        page.click("#map-mode-risk")
        page.wait_for_selector("#map[data-mode=risk]")
        risk = dict(item.split(":") for item in page.get_attribute("#map", "data-risk").split())
        assert risk["Shushan"] == "red" and risk["Yaohai"] in ("red", "orange", "yellow")
        page.screenshot(path=str(ARTIFACTS / "dashboard-risk.png"))
        assert errors == []
        timings = page.evaluate("""() => { const n = performance.getEntriesByType("navigation")[0];
            return {dcl: n.domContentLoadedEventEnd, ...window.lifeline.timings}; }""")
        print(f"\ndashboard load, demo city (97 sensors): DOMContentLoaded {timings['dcl']:.0f} ms, board ready "
              f"{timings['boardReady']:.0f} ms, map ready {timings['mapReady']:.0f} ms")
    finally:
        demo.stop()


def test_the_language_switch_changes_the_labels(browser, service, broker):  # noqa: F811
    Gateway(broker.url, "gw-gas-01").send({"GAS-0001": {"ts": now_ms(), "values": {"ch4": 27.5}}})
    page, errors = open_board(browser, service)
    page.wait_for_selector(".alert-row[data-level=red]")
    assert page.get_attribute("html", "lang") == "zh-CN"  # the demo city's default
    labels = {"#board-head .c-level": ("等级", "Level"), ".map-pane .pane-title": ("城市态势图", "City map"),
              "#map-mode-risk": ("风险", "Risk"), "#status-rate .sb-label": ("读数", "Readings"),
              "#count-red .chip-label": ("红色", "Red"), ".alert-row .level-name": ("红色", "Red"),
              ".alert-row .btn-ack": ("确认", "Ack"), "#conn-state .conn-text": ("实时", "Live")}
    for selector, (zh, _) in labels.items():
        assert page.text_content(selector).strip() == zh, selector
    page.click("#lang-toggle")
    page.wait_for_selector("html[lang=en]")
    for selector, (_, en) in labels.items():
        assert page.text_content(selector).strip() == en, selector
    page.reload()  # the choice is kept
    page.wait_for_selector("#board[data-ready=true]", state="attached")
    assert page.get_attribute("html", "lang") == "en" and page.inner_text(".map-pane .pane-title") == "City map"

    forecast = {"level": "red", "eta_s": 360, "slope_per_min": 2.0}
    assert page.evaluate("(f) => window.lifeline.formatForecast(f, 'zh-CN')", forecast) == "红色 6 分钟后"
    assert page.evaluate("(f) => window.lifeline.formatForecast(f, 'en')", forecast) == "red in 6 min"
    page.click("#lang-toggle")
    page.wait_for_selector("html[lang=zh-CN]")
    assert errors == []


# -- scale ------------------------------------------------------------------------------------------

def write_big_city(folder: Path, sensors: int, gateways: int = 20) -> Path:
    """A city of `sensors` sensors spread over the demo districts; the first 2,000 are gas manholes."""
    geo = json.loads(DISTRICTS.read_text())
    districts = [(f["properties"]["id"], f["geometry"]["coordinates"][0]) for f in geo["features"]
                 if f["properties"]["kind"] == "district"]
    lons = [p[0] for _, ring in districts for p in ring]
    lats = [p[1] for _, ring in districts for p in ring]
    kinds = [("gas", "manhole_methane", "ch4:%LEL", 60), ("pipeline", "water_pressure", "pressure:MPa", 30),
             ("bridge", "strain_gauge", "strain:microstrain", 10), ("elevator", "traction_elevator", "speed:m/s", 5),
             ("hazard", "storage_tank", "pressure:MPa", 5)]
    rng = random.Random(5)
    rows = []
    while len(rows) < sensors:
        lon, lat = rng.uniform(min(lons), max(lons)), rng.uniform(min(lats), max(lats))
        district = next((d for d, ring in districts if _inside(lon, lat, ring)), None)
        if district is None:
            continue
        i = len(rows)
        domain, kind, metrics, interval = kinds[0] if i < 2000 else kinds[i % len(kinds)]
        rows.append(f"S{i:05d},gw-{i % gateways:02d},{domain},{kind},A{i // 2:05d},{lon:.5f},{lat:.5f},"
                    f"{metrics},{interval},{district}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sensors.csv").write_text("id,gateway,domain,type,asset,lon,lat,metrics,interval,district\n"
                                        + "\n".join(rows) + "\n")
    shutil.copy(DISTRICTS, folder / "districts.geojson")
    owners = "\n".join(f'  - {{id: gw-{g:02d}, owner: "Utility {g % 5}"}}' for g in range(gateways))
    (folder / "city.yaml").write_text(f"""mqtt: {{topic_prefix: lifeline, client_id: lifeline-core}}
gateways:
{owners}
sensor_files: [sensors.csv]
rules:
  - id: gas-ch4-level
    match: {{domain: gas, metric: ch4}}
    threshold:
      above: {{blue: 5, yellow: 10, orange: 20, red: 25}}
      clear: 0.9
""")
    return folder / "city.yaml"


def _inside(lon: float, lat: float, ring: list) -> bool:
    inside = False
    for (x1, y1), (x2, y2) in zip(ring, ring[1:] + ring[:1], strict=True):
        if (y1 > lat) != (y2 > lat) and lon < (x2 - x1) * (lat - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


class AlertLoad:
    """Readings that move alerts of gas sensors S00000..S00199 between yellow (12) and red (27)."""

    def __init__(self, broker_url: str, open_alerts: int = 200, gateways: int = 20):
        self.n = open_alerts
        self.gateways = gateways
        self.clients: dict[str, Gateway] = {}
        self.url = broker_url
        self.value = [12.0] * open_alerts
        self.next = 0

    def send(self, sensors: list[int]) -> None:
        ts = now_ms()
        payloads: dict[str, dict] = {}
        for i in sensors:
            gateway = f"gw-{i % self.gateways:02d}"
            payloads.setdefault(gateway, {})[f"S{i:05d}"] = {"ts": ts, "values": {"ch4": self.value[i]}}
        for gateway, payload in payloads.items():
            if gateway not in self.clients:
                self.clients[gateway] = Gateway(self.url, gateway)
            self.clients[gateway].send(payload)

    def open_all(self) -> None:
        self.send(list(range(self.n)))

    def flip(self, count: int) -> None:
        """`count` alert events: the next sensors escalate to red or fall back to yellow."""
        picked = []
        for _ in range(count):
            i = self.next % self.n
            self.next += 1
            self.value[i] = 27.0 if self.value[i] == 12.0 else 12.0
            picked.append(i)
        self.send(picked)


def test_ten_thousand_sensors_and_fifty_alert_events_a_second(browser, broker, tmp_path):  # noqa: F811
    config = write_big_city(tmp_path / "city", 10_000)
    big = RunningService(config, broker.url, tmp_path / "service").start(timeout=90)
    try:
        page = browser.new_page(viewport={"width": 1920, "height": 1080})
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.add_init_script(FRAMES)
        started = time.monotonic()
        page.goto(f"{big.url}/?token={big.token()}")
        page.wait_for_selector("#map[data-ready=true][data-sensors='10000']", state="attached", timeout=60_000)
        page.wait_for_selector("#board[data-ready=true]", state="attached")
        load_s = time.monotonic() - started
        navigation = page.evaluate("""() => { const n = performance.getEntriesByType("navigation")[0];
            return {dcl: n.domContentLoadedEventEnd, load: n.loadEventEnd, ...window.lifeline.timings}; }""")
        assert page.get_attribute("#map", "data-clustered") == "true"  # 10,000 in view: grouped

        load = AlertLoad(broker.url)
        load.open_all()
        page.wait_for_selector("#count-total[data-count='200']", timeout=30_000)
        seq_before = page.evaluate("window.lifeline.lastSeq")
        results = {}
        for mode in ("sensors", "risk"):  # 10 s in each map view, 5 events every 100 ms
            page.click(f"#map-mode-{mode}")
            page.evaluate("() => { window.__frames.reset(); window.lifeline.resetPerf(); }")
            begin = time.monotonic()
            for tick in range(100):
                load.flip(5)
                delay = begin + (tick + 1) * 0.1 - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            results[mode] = page.evaluate(FRAME_STATS) | {"seconds": round(time.monotonic() - begin, 1)}

        # Behaviour, not timings: every event arrived once, the board and the counts agree with the API.
        seq = big.get("/healthz")["seq"]
        assert seq - seq_before == 1000
        page.wait_for_function(f"window.lifeline.lastSeq === {seq}", timeout=30_000)
        assert page.evaluate("window.lifeline.duplicatesIgnored") == 0
        assert page.locator(".alert-row").count() == 200
        wait_for(lambda: page.get_attribute("#count-red", "data-count")
                 == str(sum(a["level"] == "red" for a in big.get("/api/alerts?open=true"))), message="red count")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-scale-risk.png"))
        page.click("#map-mode-sensors")
        page.wait_for_selector("#map[data-mode=sensors][data-clustered=true]")
        page.screenshot(path=str(ARTIFACTS / "dashboard-scale.png"))
        assert errors == []

        print(f"\ndashboard scale: 10,000 sensors, 200 open alerts, 50 alert events/s for 2 x 10 s, 1920x1080; "
              f"page load {load_s:.2f} s (DOMContentLoaded {navigation['dcl']:.0f} ms, board ready "
              f"{navigation['boardReady']:.0f} ms, map ready {navigation['mapReady']:.0f} ms)")
        for mode, r in results.items():
            perf = r["perf"]
            print(f"  map view {mode:7s}: {r['frames']} frames in {r['seconds']} s, frame interval p50 {r['p50']:.0f} ms, "
                  f"p95 {r['p95']:.0f} ms, max {r['max']:.0f} ms, {r['over50']} over 50 ms; long tasks "
                  f"{r['longtasks']} (max {r['long_max']:.0f} ms); script max per board render "
                  f"{perf['render']['maxMs']} ms ({perf['render']['count']} renders), per map frame "
                  f"{perf['map']['maxMs']} ms, per websocket message {perf['message']['maxMs']} ms")
    finally:
        big.stop()

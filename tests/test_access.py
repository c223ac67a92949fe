"""API access control (CONTRACT §6): what each role may do, through a real `lifeline up`."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from lifeline.broker import PrivateBroker
from lifeline.cli import main
from tests.conftest import DATA
from tests.service import Gateway, RunningService, now_ms, wait_for

GAS_OWNER = "Municipal Gas Co."


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """One service for the module: a red gas alert (Municipal Gas Co.), a red pipeline alert (City
    Water), a rejection from each owner's gateway, and a token for every role."""
    folder = tmp_path_factory.mktemp("access")
    with PrivateBroker(folder / "broker") as broker:
        service = RunningService(DATA / "city.yaml", broker.url, folder / "service").start()
        try:
            gas, water = Gateway(broker.url, "gw-gas-01"), Gateway(broker.url, "gw-water-01")
            now = now_ms()
            gas.send({"GAS-0002": {"ts": now, "values": {"ch4": 30.0}}, "GAS-0001": {"ts": now, "values": {"x": 1}}})
            water.send({"PIPE-0001": {"ts": now, "values": {"pressure": 0.05}}, "GAS-0001": {"values": {"ch4": 1}}})
            alerts = wait_for(lambda: len(service.get("/api/alerts")) == 2 and service.get("/api/alerts"), 10,
                              "both alerts")
            wait_for(lambda: len(service.get("/api/rejections")) == 2, 10, "both rejections")
            service.alerts = {a["sensor"]: a["id"] for a in alerts}
            service.tokens = {role: service.token(role) for role in ("viewer", "operator", "admin")}
            service.tokens["integrator"] = service.token("integrator", GAS_OWNER)
            gas.close()
            water.close()
            yield service
        finally:
            service.stop()


def refused(city) -> dict[str, float]:
    text = urllib.request.urlopen(f"{city.url}/metrics", timeout=5).read().decode()
    return {code: float(v) for code, v in re.findall(r'^lifeline_http_refused_total\{status="(\d+)"\} (\S+)$', text, re.M)}


def call(city, method: str, path: str, role: str | None, body: dict | None = None) -> tuple[int, object]:
    token = city.tokens.get(role, role)
    return city.request(method, path, body, token=token)


READS = ["/api/alerts", "/api/alerts?open=false", "/api/sensors", "/api/sensors/GAS-0001",
         "/api/sensors/GAS-0001/readings?metric=ch4", "/api/rejections", "/api/status", "/api/gateways"]


def test_missing_or_unknown_tokens_get_401_json_and_are_counted(city):
    before = refused(city).get("401", 0)
    paths = [*READS, "/api/tokens"]
    for path in paths:
        for token in (None, "ll_not-a-token"):
            status, body = call(city, "GET", path, token)
            assert status == 401 and isinstance(body, dict) and body["error"], (path, token, status, body)
    status, body = call(city, "POST", f"/api/alerts/{city.alerts['GAS-0002']}/ack", None, {"by": "x"})
    assert status == 401 and "token" in body["error"]
    for url in (f"ws://127.0.0.1:{city.port}/ws/alerts", f"ws://127.0.0.1:{city.port}/ws/alerts?token=nope"):
        with pytest.raises(InvalidStatus) as denied:
            connect(url)
        assert denied.value.response.status_code == 401
        assert json.loads(denied.value.response.body)["error"]
    assert refused(city)["401"] - before == 2 * len(paths) + 1 + 2
    status, body = call(city, "GET", "/healthz", None)  # open
    assert status == 200 and body["status"] == "ok"
    request = urllib.request.Request(f"{city.url}/api/alerts")
    with pytest.raises(urllib.error.HTTPError) as error:
        urllib.request.urlopen(request, timeout=5)
    assert error.value.headers["WWW-Authenticate"] == "Bearer"


def test_viewer_reads_everything_and_may_not_act(city):
    for path in READS:
        assert call(city, "GET", path, "viewer")[0] == 200, path
    assert {a["sensor"] for a in call(city, "GET", "/api/alerts", "viewer")[1]} == {"GAS-0002", "PIPE-0001"}
    before = refused(city).get("403", 0)
    alert = city.alerts["GAS-0002"]
    for action, body in (("ack", {"by": "v"}), ("dispatch", {"by": "v", "to": "team"}), ("close", {"by": "v"})):
        status, answer = call(city, "POST", f"/api/alerts/{alert}/{action}", "viewer", body)
        assert status == 403 and "operator" in answer["error"], (action, answer)
    assert call(city, "GET", "/api/tokens", "viewer")[0] == 403
    assert refused(city)["403"] - before == 4
    assert call(city, "GET", f"/api/alerts/{alert}", "viewer")[1]["workflow"] == "new"  # untouched


def test_operator_acts_but_does_not_manage_tokens(city):
    alert = city.alerts["PIPE-0001"]
    status, body = call(city, "POST", f"/api/alerts/{alert}/ack", "operator", {"by": "Li Wei", "note": "seen"})
    assert status == 200 and body["workflow"] == "acknowledged"
    status, body = call(city, "POST", f"/api/alerts/{alert}/dispatch", "operator", {"by": "Li Wei", "to": "Water crew 3"})
    assert status == 200 and body["workflow"] == "dispatched"
    status, body = call(city, "POST", f"/api/alerts/{alert}/close", "operator", {"by": "Li Wei"})
    assert status == 409  # the condition is still active
    for method, path in (("GET", "/api/tokens"), ("POST", "/api/tokens"), ("DELETE", "/api/tokens/0123456789ab")):
        assert call(city, method, path, "operator", {"role": "viewer"} if method == "POST" else None)[0] == 403


def test_admin_manages_tokens_and_revocation_takes_effect_at_once(city):
    status, created = call(city, "POST", "/api/tokens", "admin", {"role": "viewer"})
    assert status == 201 and created["token"].startswith("ll_")
    assert call(city, "GET", "/api/alerts", created["token"])[0] == 200  # accepted at once
    listed = call(city, "GET", "/api/tokens", "admin")[1]
    assert all("token" not in entry and "hash" not in entry for entry in listed)
    assert {e["role"] for e in listed} >= {"viewer", "operator", "admin", "integrator"}
    new_id = listed[-1]["id"]
    status, body = call(city, "DELETE", f"/api/tokens/{new_id}", "admin")
    assert status == 200 and body["revoked"]
    status, body = call(city, "GET", "/api/alerts", created["token"])
    assert status == 401 and "revoked" in body["error"]
    assert call(city, "DELETE", f"/api/tokens/{new_id}", "admin")[0] == 404
    assert call(city, "POST", "/api/tokens", "admin", {"role": "integrator"})[0] == 400  # needs an owner
    assert call(city, "POST", "/api/tokens", "admin", {"role": "root"})[0] == 422
    alert = city.alerts["GAS-0002"]
    assert call(city, "POST", f"/api/alerts/{alert}/ack", "admin", {"by": "admin"})[0] == 200  # admin acts too


def test_integrator_sees_only_its_owners_sensors_alerts_and_rejections(city):
    alerts = call(city, "GET", "/api/alerts", "integrator")[1]
    assert [a["sensor"] for a in alerts] == ["GAS-0002"]
    assert {s["id"] for s in call(city, "GET", "/api/sensors", "integrator")[1]} == {"GAS-0001", "GAS-0002"}
    rejections = call(city, "GET", "/api/rejections", "integrator")[1]
    assert [r["gateway"] for r in rejections] == ["gw-gas-01"]
    assert call(city, "GET", "/api/rejections?gateway=gw-water-01", "integrator")[1] == []
    gateways = call(city, "GET", "/api/gateways", "integrator")[1]
    assert [g["id"] for g in gateways] == ["gw-gas-01"]
    assert call(city, "GET", f"/api/alerts/{city.alerts['GAS-0002']}", "integrator")[0] == 200
    for path in (f"/api/alerts/{city.alerts['PIPE-0001']}", "/api/sensors/PIPE-0001",
                 "/api/sensors/PIPE-0001/readings?metric=pressure", "/api/sensors/PIPE-0001/series?metric=pressure"):
        status, body = call(city, "GET", path, "integrator")
        assert status == 404 and body["error"], path  # as if it did not exist
    status, body = call(city, "POST", f"/api/alerts/{city.alerts['GAS-0002']}/ack", "integrator", {"by": "x"})
    assert status == 403
    with connect(city.ws_url(token=city.tokens["integrator"])) as socket:
        snapshot = json.loads(socket.recv(timeout=10))
    assert snapshot["type"] == "snapshot" and [a["sensor"] for a in snapshot["alerts"]] == ["GAS-0002"]


def test_tokens_cli_lists_without_secrets_and_revokes(city, capsys):
    def cli(*args: str) -> tuple[int, str]:
        code = main(["tokens", *args, "--data", str(city.data)])
        return code, capsys.readouterr().out

    token = city.token("viewer")
    code, listing = cli("list")
    assert code == 0 and "ll_" not in listing
    assert re.search(rf"integrator\s+{re.escape(GAS_OWNER)}", listing)
    token_id = listing.strip().splitlines()[-1].split()[0]
    assert call(city, "GET", "/api/alerts", token)[0] == 200
    assert cli("revoke", token_id)[0] == 0
    assert call(city, "GET", "/api/alerts", token)[0] == 401
    assert cli("revoke", token_id)[0] == 1
    assert cli("revoke", "xyz")[0] == 2

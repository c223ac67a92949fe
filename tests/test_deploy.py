"""The production stack (compose.yaml and deploy/): checked statically, since no container engine
runs here, and the broker's configuration run through the real Mosquitto."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as paho
import yaml

from lifeline.broker import find_mosquitto, free_port
from lifeline.config import DOMAINS
from lifeline.gateways import DEFAULT_BROKER, write_mosquitto_files
from tests.conftest import DATA
from tests.service import ROOT, wait_for
from tests.test_gateways import make_tls

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
MOSQUITTO_CONF = ROOT / "deploy/mosquitto/mosquitto.conf"
GENERATED = {"deploy/mosquitto/secrets/lifeline.env"}  # written by `lifeline gateways mosquitto`
DEFAULT = re.compile(r"^\$\{(\w+):-([^}]*)\}(.*)$")


def expand(value: str) -> str:
    """A compose value with `${VAR:-default}` replaced by its default."""
    match = DEFAULT.match(value)
    return match.group(2) + match.group(3) if match else value


def split_volume(spec: str) -> tuple[str, str]:
    """(source with defaults expanded, target) of a short-syntax volume."""
    end = spec.index("}") + 1 if spec.startswith("${") else 0
    source, target = (spec[:end] + spec[end:].split(":", 1)[0]), spec[end:].split(":")[1]
    return expand(source), target


def binds(service: dict) -> list[tuple[Path, str]]:
    """(source in the repository, target) of every bind mount."""
    out = []
    for volume in service.get("volumes", []):
        source, target = split_volume(volume)
        if source.startswith("./"):
            out.append((ROOT / source, target))
    return out


def test_compose_has_the_stack_with_pinned_images_and_health_checks():
    assert set(SERVICES) == {"mosquitto", "influxdb", "grafana", "lifeline"}
    for name, service in SERVICES.items():
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest" and "$" not in image, f"{name}: {image} is not pinned"
        assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
        assert service.get("restart") == "unless-stopped"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in SERVICES and condition == {"condition": "service_healthy"}


def test_every_mounted_file_exists_and_every_volume_is_declared_and_used():
    declared = set(COMPOSE["volumes"])
    used = set()
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source, _ = split_volume(volume)
            if not source.startswith(("./", "/")):
                assert source in declared, f"{name}: volume {source} is not declared"
                used.add(source)
        for source, target in binds(service):
            assert source.exists(), f"{name}: {source} (mounted at {target}) is not in the repository"
        for env_file in [service["env_file"]] if isinstance(service.get("env_file"), str) else service.get("env_file", []):
            assert env_file in GENERATED and (ROOT / env_file).parent.is_dir()
    assert used == declared, f"declared but unused: {declared - used}"
    # Generated secrets and certificates are never committed.
    for folder in ("deploy/mosquitto/secrets", "deploy/mosquitto/certs"):
        assert (ROOT / folder / ".gitignore").read_text().splitlines()[1] == "*"


def test_ports_and_addresses_agree_across_services():
    host_ports = [p.rsplit(":", 2)[-2] for s in SERVICES.values() for p in s.get("ports", [])]
    assert len(host_ports) == len(set(host_ports)), "a host port is published twice"
    listeners = {int(port) for port in re.findall(r"^listener (\d+)$", MOSQUITTO_CONF.read_text(), re.M)}
    assert {int(p.split(":")[-1]) for p in SERVICES["mosquitto"]["ports"]} == listeners == {1883, 8883}
    lifeline = SERVICES["lifeline"]["environment"]
    assert [p.split(":")[-1] for p in SERVICES["lifeline"]["ports"]] == [lifeline["LIFELINE_HTTP"].split(":")[-1]]
    assert lifeline["LIFELINE_INFLUX_URL"] == "http://influxdb:8086"
    assert SERVICES["influxdb"]["ports"] == ["127.0.0.1:8086:8086"]
    assert DEFAULT_BROKER == "mosquitto:1883"  # the service's MQTT URL written into lifeline.env
    influx_env = SERVICES["influxdb"]["environment"]
    assert (lifeline["LIFELINE_INFLUX_ORG"], lifeline["LIFELINE_INFLUX_BUCKET"]) == (
        influx_env["DOCKER_INFLUXDB_INIT_ORG"], influx_env["DOCKER_INFLUXDB_INIT_BUCKET"])
    assert lifeline["LIFELINE_INFLUX_TOKEN"] == influx_env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert "healthz" in " ".join(SERVICES["lifeline"]["healthcheck"]["test"])
    assert "1880" in SERVICES["mosquitto"]["healthcheck"]["test"]  # the probe listener


def test_paths_named_in_the_broker_and_grafana_configs_are_mounted():
    mounted = [target for _, target in binds(SERVICES["mosquitto"])]
    for path in re.findall(r"^(?:password_file|acl_file|cafile|certfile|keyfile) (\S+)$",
                           MOSQUITTO_CONF.read_text(), re.M):
        assert any(path == t or path.startswith(t.rstrip("/") + "/") for t in mounted), path
    assert re.search(r"^persistence_location /mosquitto/data/$", MOSQUITTO_CONF.read_text(), re.M)
    assert "mosquitto-data:/mosquitto/data" in SERVICES["mosquitto"]["volumes"]

    grafana = dict((str(s.relative_to(ROOT)), t) for s, t in binds(SERVICES["grafana"]))
    provisioning = ROOT / "deploy/grafana/provisioning"
    [source] = yaml.safe_load((provisioning / "datasources/influxdb.yaml").read_text())["datasources"]
    assert source["url"] == "http://influxdb:8086" and source["jsonData"]["version"] == "Flux"
    assert source["secureJsonData"]["token"] == "${INFLUXDB_TOKEN}" and "INFLUXDB_TOKEN" in SERVICES["grafana"]["environment"]
    [provider] = yaml.safe_load((provisioning / "dashboards/lifeline.yaml").read_text())["providers"]
    assert grafana["deploy/grafana/dashboards"] == provider["options"]["path"]


def test_one_grafana_dashboard_per_domain_generated_from_the_schema():
    sys.path.insert(0, str(ROOT / "deploy/grafana"))
    try:
        import make_dashboards
    finally:
        sys.path.pop(0)
    folder = ROOT / "deploy/grafana/dashboards"
    assert sorted(p.stem for p in folder.glob("*.json")) == sorted(DOMAINS)
    uid = yaml.safe_load((ROOT / "deploy/grafana/provisioning/datasources/influxdb.yaml").read_text())[
        "datasources"][0]["uid"]
    for domain in DOMAINS:
        text = (folder / f"{domain}.json").read_text()
        assert text == make_dashboards.render(domain), f"{domain}.json is stale: run deploy/grafana/make_dashboards.py"
        board = json.loads(text)
        queries = [t["query"] for p in board["panels"] for t in p["targets"]]
        assert all(f'r.domain == "{domain}"' in q for q in queries)
        assert any('r._measurement == "reading"' in q for q in queries)
        assert any('r._measurement == "alert_event"' in q for q in queries)
        assert {p["datasource"]["uid"] for p in board["panels"]} == {uid}


def test_the_production_broker_configuration_runs_in_mosquitto(tmp_path):
    """deploy/mosquitto/mosquitto.conf with the container's paths and ports mapped into a temporary
    folder: gateways need their password (plain and TLS), the probe listener serves only the uptime."""
    root = tmp_path / "mosquitto"
    for folder in ("config", "secrets", "certs", "data"):
        (root / folder).mkdir(parents=True)
    config = tmp_path / "lifeline.yaml"
    shutil.copy(DATA / "city.yaml", config)
    passwords = write_mosquitto_files(config, root / "secrets")
    tls = make_tls(root / "certs")
    shutil.copy(ROOT / "deploy/mosquitto/probe.acl", root / "config/probe.acl")
    ports = {1883: free_port(), 8883: free_port(), 1880: free_port()}
    text = MOSQUITTO_CONF.read_text().replace("/mosquitto/", f"{root}/")
    for container, local in ports.items():
        text = re.sub(rf"^listener {container}\b", f"listener {local}", text, flags=re.M)
    # $SYS every second instead of every 10 s, so the probe is answered at once.
    text += f"\nsys_interval 1\nlog_dest file {root}/mosquitto.log\n" + ("user root\n" if os.geteuid() == 0 else "")
    (root / "config/mosquitto.conf").write_text(text)
    process = subprocess.Popen([find_mosquitto(), "-c", str(root / "config/mosquitto.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        def connect(port: int, user: str | None, password: str | None, tls_ca: Path | None = None):
            client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"probe-{time.monotonic_ns()}")
            if user:
                client.username_pw_set(user, password)
            if tls_ca:
                client.tls_set(ca_certs=str(tls_ca))
            result: dict = {}
            client.on_connect = lambda c, u, f, code, p: result.setdefault("code", code)
            client.on_message = lambda c, u, m: result.setdefault("message", m.topic)
            for _ in range(100):
                try:
                    client.connect("127.0.0.1", port)
                    break
                except ConnectionRefusedError:
                    time.sleep(0.05)  # the broker is still starting
            client.loop_start()
            wait_for(lambda: "code" in result, 10, f"CONNACK on {port}")
            return client, result

        for port, tls_ca in ((ports[1883], None), (ports[8883], tls["ca"])):
            anonymous, result = connect(port, None, None, tls_ca)
            assert result["code"].is_failure
            anonymous.disconnect()
            anonymous.loop_stop()
            gateway, result = connect(port, "gw-gas-01", passwords["gw-gas-01"], tls_ca)
            assert not result["code"].is_failure
            gateway.disconnect()
            gateway.loop_stop()
        probe, result = connect(ports[1880], None, None)
        assert not result["code"].is_failure
        probe.subscribe("$SYS/broker/uptime")
        wait_for(lambda: result.get("message"), 15, "the uptime on the probe listener")
        probe.disconnect()
        probe.loop_stop()
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr.decode()

"""Gateway credentials and ACLs, enforced by a real Mosquitto with the generated files, and TLS."""

from __future__ import annotations

import contextlib
import datetime
import io
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as paho
import pytest

from lifeline.broker import PrivateBroker, free_port
from lifeline.cli import main
from lifeline.config import load_config
from lifeline.gateways import check_password, insert_gateway, mosquitto_hash, write_mosquitto_files
from tests.conftest import DATA
from tests.service import RunningService, now_ms, wait_for

NOT_AUTHORIZED = 0x87


def cli(*args: str) -> subprocess.CompletedProcess:
    """`lifeline ARGS` in this process (a subprocess would only add start-up time)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(["lifeline", *args], code, out.getvalue(), err.getvalue())


# -- TLS material made by the test ------------------------------------------------------------------

def make_tls(folder: Path) -> dict[str, Path]:
    """A self-signed CA and a server certificate for 127.0.0.1/localhost signed by it."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Lifeline test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    server = (x509.CertificateBuilder()
              .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
              .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                          x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                             critical=False)
              .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
              .sign(ca_key, hashes.SHA256()))
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"ca": folder / "ca.pem", "cert": folder / "server.pem", "key": folder / "server.key"}
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    return paths


# -- a secured broker: generated passwd/acl, anonymous off, a TLS listener --------------------------

class SecuredCity:
    def __init__(self, folder: Path):
        self.folder = folder
        self.config = folder / "lifeline.yaml"
        shutil.copy(DATA / "city.yaml", self.config)
        self.secrets = folder / "secrets"
        self.passwords = write_mosquitto_files(self.config, self.secrets)
        self.tls = make_tls(folder / "tls")
        self.tls_port = free_port()
        self.broker = PrivateBroker(folder / "broker", extra_config="\n".join([
            "allow_anonymous false",
            f"password_file {self.secrets / 'passwd'}",
            f"acl_file {self.secrets / 'acl'}",
            f"listener {self.tls_port} 127.0.0.1",
            f"cafile {self.tls['ca']}",
            f"certfile {self.tls['cert']}",
            f"keyfile {self.tls['key']}",
        ]))

    def start(self) -> SecuredCity:
        self.broker.start()
        return self

    def reload(self) -> None:
        """What `docker compose kill -s HUP mosquitto` does: re-read passwd and acl."""
        self.broker.process.send_signal(signal.SIGHUP)
        wait_for(lambda: self.broker.log().count("Reloading config") >= 1, 5, "Mosquitto to reload")


class Client:
    """An MQTT v5 client that records CONNACK, PUBACK and SUBACK reason codes and messages."""

    def __init__(self, city: SecuredCity, user: str | None, password: str | None, *, tls: bool = False):
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}",
                                  protocol=paho.MQTTv5)
        if user is not None:
            self.client.username_pw_set(user, password)
        if tls:
            self.client.tls_set(ca_certs=str(city.tls["ca"]))
        self.connected = threading.Event()
        self.connack: paho.ReasonCode | None = None
        self.acks: dict[int, object] = {}
        self.messages: list[tuple[str, bytes]] = []
        self.client.on_connect = self._on_connect
        self.client.on_publish = lambda c, u, mid, code, props: self.acks.__setitem__(mid, code)
        self.client.on_subscribe = lambda c, u, mid, codes, props: self.acks.__setitem__(mid, codes)
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", city.tls_port if tls else city.broker.port)
        self.client.loop_start()
        assert self.connected.wait(10), "no CONNACK"

    def _on_connect(self, client, userdata, flags, code, properties) -> None:
        self.connack = code
        self.connected.set()

    def publish(self, topic: str, payload: bytes = b"{}") -> int:
        """The PUBACK reason code of a QoS 1 publish."""
        info = self.client.publish(topic, payload, qos=1)
        return int(wait_for(lambda: self.acks.get(info.mid), 10, f"PUBACK for {topic}").value)

    def subscribe(self, topic: str) -> int:
        """The SUBACK reason code."""
        _, mid = self.client.subscribe(topic, qos=1)
        return int(wait_for(lambda: self.acks.get(mid), 10, f"SUBACK for {topic}")[0].value)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    secured = SecuredCity(tmp_path_factory.mktemp("secured")).start()
    yield secured
    secured.broker.stop()


# -- password hashes and the YAML edit --------------------------------------------------------------

def test_hashes_are_mosquittos_own_format():
    hashed = mosquitto_hash("secretpw", salt=bytes(range(12)))
    assert re.fullmatch(r"\$7\$101\$[A-Za-z0-9+/=]{16}\$[A-Za-z0-9+/=]{88}", hashed)
    assert check_password("secretpw", hashed) and not check_password("secretpw2", hashed)
    tool = shutil.which("mosquitto_passwd")
    if tool:  # the broker's own tool agrees with ours
        import tempfile
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "passwd"
            path.touch()
            subprocess.run([tool, "-b", str(path), "gw", "secretpw"], check=True, capture_output=True)
            assert check_password("secretpw", path.read_text().strip().split(":", 1)[1])


@pytest.mark.parametrize(("before", "after"), [
    ("# city\ngateways:\n  - {id: a, owner: A}   # first\n  # more below\n\n# sensors next\nsensors: []\n",
     '# city\ngateways:\n  - {id: a, owner: A}   # first\n  - {id: b, owner: "B \\"Co\\""}\n  # more below\n\n'
     "# sensors next\nsensors: []\n"),
    ("gateways:\n- id: a\n  owner: A\nrules: []", 'gateways:\n- id: a\n  owner: A\n- {id: b, owner: "B \\"Co\\""}\nrules: []\n'),
    ("gateways: []  # none yet\n", 'gateways:\n  - {id: b, owner: "B \\"Co\\""}\n'),
    ("gateways: [{id: a, owner: A}]\n", 'gateways: [{id: a, owner: A}, {id: b, owner: "B \\"Co\\""}]\n'),
    ("mqtt: {topic_prefix: x}\n", 'mqtt: {topic_prefix: x}\n\ngateways:\n  - {id: b, owner: "B \\"Co\\""}\n'),
])
def test_a_gateway_is_added_to_the_yaml_text_keeping_everything_else(before, after):
    assert insert_gateway(before, "b", 'B "Co"') == after


# -- the commands -----------------------------------------------------------------------------------

def test_gateways_add_prints_the_password_once_and_keeps_only_its_hash(tmp_path):
    config = tmp_path / "lifeline.yaml"
    original = (DATA / "city.yaml").read_text()
    config.write_text(original)
    done = cli("gateways", "add", "gw-heat-01", "--owner", "合肥热电集团", "--config", str(config))
    assert done.returncode == 0, done.stderr
    password = re.search(r"^password: (\S+)$", done.stdout, re.M).group(1)
    assert "lifeline/gw-heat-01/telemetry" in done.stdout
    text = config.read_text()
    assert text.startswith(original.split("\n  - {id: gw-bridge-01")[0])  # comments and order kept
    assert '  - {id: gw-heat-01, owner: "合肥热电集团"}\n' in text
    assert [g.id for g in load_config(config).gateways][-1] == "gw-heat-01"
    stored = (tmp_path / "lifeline.credentials.json").read_text()
    assert password not in stored
    assert check_password(password, json.loads(stored)["gateways"]["gw-heat-01"])
    assert (tmp_path / "lifeline.credentials.json").stat().st_mode & 0o777 == 0o600

    again = cli("gateways", "add", "gw-heat-01", "--owner", "x", "--config", str(config))
    assert again.returncode == 2 and "already" in again.stderr
    bad = cli("gateways", "add", "gw/evil#", "--owner", "x", "--config", str(config))
    assert bad.returncode == 2 and config.read_text() == text

    out = tmp_path / "mosquitto"
    done = cli("gateways", "mosquitto", "--config", str(config), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "gw-heat-01" not in done.stdout  # it has its password already; the others are new
    users = [line.split(":", 1)[0] for line in (out / "passwd").read_text().splitlines()]
    assert users == ["lifeline", "gw-gas-01", "gw-water-01", "gw-bridge-01", "gw-heat-01"]
    acl = (out / "acl").read_text()
    assert "user gw-heat-01\ntopic write lifeline/gw-heat-01/telemetry\ntopic read lifeline/gw-heat-01/errors" in acl
    assert "user lifeline\ntopic read lifeline/+/telemetry\ntopic write lifeline/+/errors\n" in acl
    assert re.fullmatch(r"LIFELINE_MQTT_URL=mqtt://lifeline:[\w-]+@mosquitto:1883\n", (out / "lifeline.env").read_text())


# -- enforcement by a real Mosquitto ----------------------------------------------------------------

def test_anonymous_and_wrong_passwords_are_refused(city):
    for user, password in ((None, None), ("gw-gas-01", "wrong"), ("nobody", "x")):
        client = Client(city, user, password)
        assert client.connack.is_failure, (user, client.connack)
        client.close()


def test_a_gateway_cannot_publish_as_another(city):
    gas = Client(city, "gw-gas-01", city.passwords["gw-gas-01"])
    assert gas.connack.value == 0
    assert gas.publish("lifeline/gw-gas-01/telemetry") in (0x00, 0x10)  # success / no matching subscribers
    assert gas.publish("lifeline/gw-water-01/telemetry") == NOT_AUTHORIZED
    assert gas.publish("lifeline/gw-gas-01/errors") == NOT_AUTHORIZED  # nor forge its own errors
    assert gas.publish("lifeline/alerts/gas/red") == NOT_AUTHORIZED  # nor alerts
    gas.close()


def test_a_gateway_cannot_read_anothers_errors_or_telemetry(city):
    service = Client(city, "lifeline", city.passwords["lifeline"])
    gas = Client(city, "gw-gas-01", city.passwords["gw-gas-01"])
    water = Client(city, "gw-water-01", city.passwords["gw-water-01"])
    # Mosquitto 2.0 acknowledges these subscriptions and enforces `read` on delivery instead.
    for topic in ("lifeline/gw-water-01/errors", "lifeline/+/errors", "lifeline/+/telemetry", "#"):
        gas.subscribe(topic)
    assert gas.subscribe("lifeline/gw-gas-01/errors") == 1
    assert water.subscribe("lifeline/gw-water-01/errors") == 1
    assert service.publish("lifeline/gw-water-01/errors", b'{"reason": "for water"}') == 0
    assert water.publish("lifeline/gw-water-01/telemetry", b"{}") in (0x00, 0x10)
    assert service.publish("lifeline/gw-gas-01/errors", b'{"reason": "for gas"}') == 0
    wait_for(lambda: water.messages and gas.messages, 10, "each gateway's own error")
    assert water.messages == [("lifeline/gw-water-01/errors", b'{"reason": "for water"}')]
    # Same publisher, QoS 1: had the water error been delivered to gas, it would have come first.
    # (Gas gets its own error once per matching subscription.)
    assert set(gas.messages) == {("lifeline/gw-gas-01/errors", b'{"reason": "for gas"}')}
    for client in (service, gas, water):
        client.close()


def test_a_rotated_password_replaces_the_old_one_after_a_reload(tmp_path):
    city = SecuredCity(tmp_path).start()
    try:
        old = city.passwords["gw-bridge-01"]
        done = cli("gateways", "passwd", "gw-bridge-01", "--config", str(city.config))
        new = re.search(r"^password: (\S+)$", done.stdout, re.M).group(1)
        assert cli("gateways", "mosquitto", "--config", str(city.config), "--out", str(city.secrets)).returncode == 0
        city.reload()
        refused = Client(city, "gw-bridge-01", old)
        assert refused.connack.is_failure
        refused.close()
        accepted = Client(city, "gw-bridge-01", new)
        assert accepted.connack.value == 0
        accepted.close()
    finally:
        city.broker.stop()


def test_service_and_gateway_over_tls_with_the_generated_accounts(city, tmp_path):
    """`lifeline up --mqtt mqtts://lifeline:...` trusting the test's CA through SSL_CERT_FILE; a
    gateway sends over TLS, gets its rejection on its errors topic and raises an alert."""
    service_url = (city.secrets / "lifeline.env").read_text().strip().split("=", 1)[1]
    service_url = service_url.replace("mqtt://", "mqtts://").replace("@mosquitto:1883", f"@127.0.0.1:{city.tls_port}")
    os.environ["SSL_CERT_FILE"] = str(city.tls["ca"])  # inherited by the service's process
    try:
        service = RunningService(city.config, service_url, tmp_path / "service").start()
    finally:
        del os.environ["SSL_CERT_FILE"]
    try:
        gas = Client(city, "gw-gas-01", city.passwords["gw-gas-01"], tls=True)
        assert gas.subscribe("lifeline/gw-gas-01/errors") == 1
        now = now_ms()
        payload = json.dumps({"GAS-0002": {"ts": now, "values": {"ch4": 30.0}},
                              "GAS-0001": {"ts": now, "values": {"h2s": 1.0}}}).encode()
        assert gas.publish("lifeline/gw-gas-01/telemetry", payload) == 0
        wait_for(lambda: gas.messages, 10, "the rejection on the errors topic")
        assert json.loads(gas.messages[0][1])["reason"] == "unknown_metric"
        alerts = wait_for(lambda: service.get("/api/alerts"), 10, "the alert")
        assert [(a["sensor"], a["level"]) for a in alerts] == [("GAS-0002", "red")]
        gas.close()
    finally:
        service.stop()

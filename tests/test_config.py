"""Configuration: the CONTRACT §2 file, sensor files, and errors located by file, line and field."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lifeline.config import ConfigError, load_config, parse_config
from tests.service import ROOT

GOOD = textwrap.dedent("""\
    mqtt:    {url: mqtt://127.0.0.1:1883, topic_prefix: lifeline, client_id: lifeline-core}
    http:    {host: 127.0.0.1, port: 8000}
    storage: {path: ./data}
    gateways:
      - {id: gw-gas-01, owner: "Municipal Gas Co."}
    sensors:
      - id: GAS-0001
        gateway: gw-gas-01
        domain: gas
        type: manhole_methane
        asset: MH-0001
        location: {lon: 117.2272, lat: 31.8206}
        metrics: {ch4: "%LEL", temp: "degC"}
        interval: 60
    sensor_files: [sensors.csv]
    rules:
      - id: gas-ch4-level
        match: {domain: gas, metric: ch4}
        threshold:
          above: {blue: 5, yellow: 10, orange: 20, red: 25}
          clear: 0.9
          for: 0
    """)

CSV = textwrap.dedent("""\
    id,gateway,domain,type,asset,lon,lat,metrics,interval,main,district
    GAS-0002,gw-gas-01,gas,manhole_methane,MH-0002,117.23,31.82,ch4:%LEL;temp:degC,60,G-12,Shushan
    """)


def write(tmp_path: Path, config: str, csv: str = CSV) -> Path:
    (tmp_path / "sensors.csv").write_text(csv)
    path = tmp_path / "lifeline.yaml"
    path.write_text(config)
    return path


def problems_of(tmp_path: Path, config: str, csv: str = CSV) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_config(write(tmp_path, config, csv))
    return [str(p) for p in error.value.problems]


def test_contract_example_loads_with_inline_and_csv_sensors(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    assert [s.id for s in config.sensors] == ["GAS-0001", "GAS-0002"]
    csv_sensor = config.sensors[1]
    assert csv_sensor.metrics == {"ch4": "%LEL", "temp": "degC"}
    assert csv_sensor.extra == {"main": "G-12", "district": "Shushan"}
    assert (csv_sensor.location.lon, csv_sensor.location.lat) == (117.23, 31.82)
    rule = config.rules[0]
    assert rule.threshold.levels == {"blue": 5, "yellow": 10, "orange": 20, "red": 25}
    assert rule.threshold.clear == 0.9 and rule.threshold.direction == "above"
    assert config.storage.path == tmp_path / "data"
    assert config.mqtt.url == "mqtt://127.0.0.1:1883"


def test_yaml_sensor_file(tmp_path):
    (tmp_path / "more.yaml").write_text(textwrap.dedent("""\
        - {id: GAS-0009, gateway: gw-gas-01, domain: gas, metrics: {ch4: "%LEL"}}
        """))
    config = load_config(write(tmp_path, GOOD.replace("[sensors.csv]", "[sensors.csv, more.yaml]")))
    assert config.sensors[-1].id == "GAS-0009"


@pytest.mark.parametrize(("change", "expected"), [
    (("domain: gas\n    type", "domain: water\n    type"), "lifeline.yaml:9: sensors[0].domain: 'water' is not one of"),
    (("gateway: gw-gas-01\n    domain", "gateway: gw-x\n    domain"), "lifeline.yaml:8: sensors[0].gateway: unknown gateway 'gw-x'"),
    (("orange: 20, red: 25", "orange: 30, red: 25"), "lifeline.yaml:20: rules[gas-ch4-level].threshold.above: level values must strictly increase"),
    (("clear: 0.9", "clear: 1.5"), "lifeline.yaml:21: rules[gas-ch4-level].threshold.clear: must be in (0, 1]"),
    (("for: 0", "for: -3"), "lifeline.yaml:22: rules[gas-ch4-level].threshold.for: must be 0 or more seconds"),
    (("interval: 60", "interval: soon"), "lifeline.yaml:14: sensors[0].interval: expected a number"),
    (("red: 25}", "red: 25, purple: 30}"), "lifeline.yaml:20: rules[gas-ch4-level].threshold.above.purple: unknown level"),
    (("    threshold:\n", "    trendz: {}\n    threshold:\n"), "lifeline.yaml:19: rules[gas-ch4-level].trendz: unknown detector kind"),
    (("port: 8000", "port: 99999"), "lifeline.yaml:2: http.port: expected a port number"),
    (("id: GAS-0001", "id: GAS 0001!"), "lifeline.yaml:7: sensors[0].id: 'GAS 0001!' must match"),
])
def test_errors_name_file_line_and_field(tmp_path, change, expected):
    old, new = change
    assert old in GOOD
    problems = problems_of(tmp_path, GOOD.replace(old, new, 1))
    assert any(p.startswith(str(tmp_path / expected.split(":")[0]) + ":" + expected.split(":", 1)[1].split(":")[0])
               and expected.split(": ", 1)[1] in p for p in problems), problems


def test_csv_errors_name_the_row_line(tmp_path):
    bad_csv = CSV + "GAS-0003,gw-gas-01,gas,manhole,MH-3,117.2,31.8,ch4,60,,\n"
    problems = problems_of(tmp_path, GOOD, bad_csv)
    assert problems == [f"{tmp_path / 'sensors.csv'}:3: metrics: expected name:unit pairs separated by ';', got 'ch4'"]


def test_yaml_syntax_error_and_duplicate_keys_have_lines(tmp_path):
    problems = problems_of(tmp_path, GOOD.replace("  - id: gas-ch4-level", "  - id: [unclosed"))
    assert problems[0].startswith(f"{tmp_path / 'lifeline.yaml'}:") and "YAML syntax" in problems[0]
    problems = problems_of(tmp_path, GOOD.replace("    interval: 60\n", "    interval: 60\n    interval: 30\n"))
    assert "lifeline.yaml:15" in problems[0] and "duplicate key 'interval'" in problems[0]


def test_duplicate_sensor_and_missing_file(tmp_path):
    dup_csv = CSV.replace("GAS-0002", "GAS-0001")
    assert any("duplicate sensor id" in p for p in problems_of(tmp_path, GOOD, dup_csv))
    problems = problems_of(tmp_path, GOOD.replace("[sensors.csv]", "[missing.csv]"))
    assert any("lifeline.yaml:15: sensor_files[0]: file not found" in p for p in problems)


def test_below_rule_and_rule_matching_nothing_warns():
    config = parse_config(textwrap.dedent("""\
        gateways: [{id: g, owner: o}]
        sensors: [{id: P1, gateway: g, domain: pipeline, metrics: {pressure: MPa}}]
        rules:
          - {id: low, match: {metric: pressure}, threshold: {below: {yellow: 0.2, red: 0.1}}}
          - {id: none, match: {domain: bridge}, threshold: {above: {red: 1}}}
        """), "c.yaml")
    assert config.rules[0].threshold.direction == "below"
    assert config.warnings == ("c.yaml:5: rules[none]: matches no sensor metric",)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeline.cli", *args], capture_output=True, text=True, cwd=ROOT)


def test_check_command_prints_summary_or_every_error(tmp_path):
    ok = cli("check", str(write(tmp_path, GOOD)))
    assert ok.returncode == 0 and "OK" in ok.stdout and "sensors:  2 (gas 2)" in ok.stdout
    bad = cli("check", str(write(tmp_path, GOOD.replace("domain: gas\n    type", "domain: x\n    type")
                                 .replace("clear: 0.9", "clear: 2"))))
    assert bad.returncode == 1
    errors = [line for line in bad.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 2 and "lifeline.yaml:9" in errors[0] and "lifeline.yaml:21" in errors[1]


def test_up_with_a_bad_config_exits_with_one_clear_line(tmp_path):
    result = cli("up", "--config", str(write(tmp_path, GOOD.replace("clear: 0.9", "clear: 2"))),
                 "--data", str(tmp_path / "d"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "lifeline.yaml:21: rules[gas-ch4-level].threshold.clear" in lines[0]


def test_demo_config_is_valid_and_covers_every_domain():
    config = load_config(ROOT / "lifeline" / "demo" / "lifeline.yaml")
    assert {s.domain for s in config.sensors} == {"gas", "pipeline", "bridge", "elevator", "hazard"}
    assert config.warnings == ()

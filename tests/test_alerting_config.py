"""The `alerting:` section: the README's example is valid, defaults, and located errors."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from alerting.labels import Labeler, matchers_from
from lifeline.alerting_config import DEFAULT_DEADLINES, DEFAULT_INHIBIT_RULES
from lifeline.config import ConfigError, parse_config

ROOT = Path(__file__).resolve().parent.parent
CITY = textwrap.dedent("""\
    gateways: [{id: gw-1, owner: o}]
    sensors:
      - {id: S1, gateway: gw-1, domain: gas, metrics: {ch4: "%LEL"}, district: Shushan}
    """)


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(CITY + text)
    return [str(p) for p in caught.value.problems]


def test_the_readme_example_is_valid():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Alert management"):readme.index("## How it is built")]
    example = re.search(r"```yaml\n(alerting:.*?)```", section, re.S).group(1)
    management = parse_config(CITY + example).alerting.management
    assert [r.name for r in management.routes] == ["lifts-to-96333", "red-to-duty-officer", "gas-shushan"]
    assert management.routes[2].repeat_s == 1800 and management.routes[2].group_wait_s == 10
    assert management.escalation == ("duty-officer", "bureau-head")
    assert management.deadlines == DEFAULT_DEADLINES
    assert management.inhibit_rules == DEFAULT_INHIBIT_RULES
    assert {r.name: r.kind for r in management.receivers} == {
        "duty-officer": "apprise", "bureau-head": "apprise", "gas-company": "webhook", "rescue-96333": "mqtt"}


def test_defaults_and_switching_things_off():
    management = parse_config(CITY).alerting.management
    # Deadlines and flapping add events beyond CONTRACT §6's list: off unless configured.
    assert management.deadlines == {} and management.flapping is None
    assert len(management.inhibit_rules) == 3 and management.routes == ()
    on = parse_config(CITY + "alerting: {deadlines: true, flapping: true}").alerting.management
    assert on.deadlines == DEFAULT_DEADLINES and on.flapping is not None and on.flapping.changes == 6
    off = parse_config(CITY + "alerting: {deadlines: false, flapping: false, inhibit_rules: []}").alerting.management
    assert off.deadlines == {} and off.flapping is None and off.inhibit_rules == ()


def test_errors_name_file_line_and_field():
    found = errors(textwrap.dedent("""\
        alerting:
          deadlines:
            purple: {acknowledge: 5m}
            red: {acknowledge: soon, dispatch: 1m}
          escalation: [nobody]
          receivers:
            - {name: a, webhook: "ftp://x"}
            - {name: b, urls: ["notaservice://x"]}
            - {name: c, webhook: "http://x", mqtt_topic: t}
            - {name: d, mqtt_topic: "a/#"}
          routes:
            - {match: {level: crimson}, receivers: [a]}
            - {match: {asset: {regex: "("}}, receivers: [zz]}
            - {match: {}, receivers: [b], group_wait: -1}
          inhibit_rules:
            - {source: {}, target: {kind: silent}}
          flapping: {changes: 1}
          surprise: 1
        """))
    expected = [
        ":6: alerting.deadlines.purple: unknown level",
        ":7: alerting.deadlines.red.acknowledge: expected seconds or a duration",
        ":10: alerting.receivers[a].webhook: expected an http(s):// URL",
        ":11: alerting.receivers[b].urls: apprise does not understand",
        ":12: alerting.receivers[c]: needs exactly one of urls (apprise), webhook or mqtt_topic",
        ":13: alerting.receivers[d].mqtt_topic: must be a topic",
        ":8: alerting.escalation: unknown receiver 'nobody'",
        ":15: alerting.routes[0].match.level: unknown level 'crimson'",
        ":16: alerting.routes[1].match.asset: invalid regular expression",
        ":16: alerting.routes[1].receivers: unknown receiver 'zz'",
        ":17: alerting.routes[2].group_wait: must be 0 or more",
        ":19: alerting.inhibit_rules[0].source: needs at least one matcher",
        ":20: alerting.flapping.changes: expected a whole number >= 2",
        ":21: alerting.surprise: unknown key",
    ]
    for fragment in expected:
        assert any(fragment in problem for problem in found), (fragment, found)


def test_matchers_and_labels():
    labeler = Labeler.for_catalogue(parse_config(CITY).sensors)
    labels = labeler.labels({"id": "a-1", "sensor": "S1", "level": "red", "kind": "threshold", "value": 3})
    assert labels["district"] == "Shushan" and labels["type"] == "" and "value" not in labels
    assert matchers_from({"district": "Shushan", "level": ["red", "orange"]}).matches(labels)
    assert not matchers_from({"kind": {"not": ["threshold", "fault"]}}).matches(labels)
    assert matchers_from({"sensor": {"regex": "S[0-9]"}}).matches(labels)
    assert matchers_from({"owner": ""}).matches(labels)  # a missing label is empty
    with pytest.raises(ValueError, match="label name"):
        matchers_from({"bad-name": "x"})

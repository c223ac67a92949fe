"""`lifeline bench` runs briefly against the real service and reports every measurement.

These tests check that the benchmark works and what it reports, never how fast anything is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import Frame, Opcode

from dashboard.hub import text_frame
from lifeline.bench_ceilings import payload_arrays
from lifeline.bench_traffic import GatewayLines, sensor_id
from tests.service import ROOT


def run_bench(*args: str) -> tuple[str, dict]:
    done = subprocess.run([sys.executable, "-m", "lifeline.cli", "bench", *args, "--json"], cwd=ROOT,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    table, _, last = done.stdout.rstrip().rpartition("\n")
    return table, json.loads(last)


def test_bench_measures_ceilings_throughput_latency_memory_and_ratio():
    table, result = run_bench("--sensors", "400", "--publishers", "2", "--duration", "2",
                              "--ceiling-messages", "100", "--alert-rate", "20")
    assert result["setup"]["channels"] == 400 + 100  # load sensors and the alert sensors
    for shape, per_message in (("batched", 100), ("single", 1)):
        for ceiling in ("c_subscriber", "python_decode", "python_parse"):
            measured = result["ceilings"][shape][ceiling]
            assert measured["messages_received"] == measured["messages_expected"] > 0
            assert measured["messages_per_s"] > 0 and measured["readings_per_s"] > 0
        for ceiling in ("python_decode", "python_parse"):  # every reading decoded, none handed back
            assert result["ceilings"][shape][ceiling]["readings_decoded"] == (
                result["ceilings"][shape][ceiling]["messages_expected"] * per_message)

        sustained = result["sustained"][shape]
        assert sustained["readings_per_s"] > 0 and sustained["messages_per_s"] > 0
        assert sustained["readings_sent"] > 0
        assert sustained["readings_processed"] == sustained["readings_sent"]  # QoS 1: nothing lost
        assert sustained["readings_lost"] == 0
        assert isinstance(sustained["backlog_stable"], bool)
        assert 1 <= sustained["attempts"] == len(sustained["search"]) <= 5
        stable = [run for run in sustained["search"] if run["backlog_stable"]]
        if stable:  # the best run the service kept up with is the one reported
            assert sustained["backlog_stable"]
            assert sustained["readings_per_s"] == max(run["readings_per_s"] for run in stable)
        for key in ("offered_readings_per_s", "probe_readings_per_s", "backlog_growth_s",
                    "service_backlog_max_messages", "service_cpu_s_per_s"):
            assert sustained[key] is not None, key

        latency = result["latency"][shape]
        assert latency["events_sent"] > 0
        assert latency["service_alert_events"] == latency["events_sent"]  # each alert reading made an event
        assert latency["events_received"] == latency["events_sent"]  # every alert reached the dashboard
        assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
        assert result["ratio"][shape] > 0 and result["ratio_to_parse_ceiling"][shape] > 0

    memory = result["memory"]
    assert memory["channels"] == 500 and memory["processes"] >= 1
    assert memory["idle_rss_mib"] > 0 and 0 < memory["rss_mib"] <= memory["peak_mib"]
    assert result["websocket"]["connected_throughout"] is True
    assert result["websocket"]["events"] >= sum(result["latency"][s]["events_sent"] for s in ("batched", "single"))
    assert result["machine"]["cpus"] >= 1 and len(result["machine"]["load_average_end"]) == 3
    for row in ("ceiling: mosquitto_sub (C)", "ceiling: Python decode", "sustained: readings/s",
                "latency: p50 / p99 / max", "memory: 500 channels", "ratio: sustained / decode ceiling",
                "ceiling: Python receive + the service's C parser", "ratio: sustained / parse ceiling"):
        assert row in table


def test_bench_fanout_delivers_every_event_to_every_client():
    table, result = run_bench("--fanout", "--clients", "6", "--events-per-s", "100", "--duration", "2")
    fanout = result["fanout"]
    assert fanout["clients"] == 6 and fanout["events_sent"] > 0
    assert fanout["delivered_min"] == fanout["events_sent"]  # every client received every event
    assert fanout["lagging_closes"] == 0 and fanout["reconnects"] == 0
    assert 0 < fanout["p50_ms"] <= fanout["p99_ms"] <= fanout["max_ms"]
    assert fanout["frames_per_s"] > 0 and fanout["service_cpu_s_per_s"] > 0
    assert "latency p50 / p99 / max, ms" in table


def test_bench_refuses_an_unknown_payload_shape():
    done = subprocess.run([sys.executable, "-m", "lifeline.cli", "bench", "--shapes", "huge"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "unknown shape huge" in done.stderr


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.integers(0, 200), st.sampled_from([125, 126, 127, 65535, 65536, 70000])))
def test_the_hubs_frame_is_the_frame_websockets_would_send(size):
    payload = ("é" * size).encode()[:size]
    payload = payload.decode(errors="ignore").encode()  # whole characters only: a text frame
    expected = Frame(Opcode.TEXT, payload).serialize(mask=False)
    assert text_frame(payload) == expected


def test_bench_messages_are_contract_payloads_with_rising_timestamps():
    lines = GatewayLines(gateway=1, sensors=1000, gateways=4, per_message=100)
    own = {sensor_id(i): i for i in range(1, 1000, 4)}
    seen_ts: dict[int, int] = {}
    for m, message in enumerate(lines.messages(0, 5, first_ts=1_763_798_400_000)):
        channel, ts, value = payload_arrays([message], own)
        assert len(set(channel.tolist())) == 100  # distinct sensors of this gateway
        assert set(ts.tolist()) == {1_763_798_400_000 + m}
        assert (value < 5).all()  # quiet: below every level of the bench rule
        for c in channel.tolist():
            assert seen_ts.get(c, 0) < 1_763_798_400_000 + m
            seen_ts[c] = 1_763_798_400_000 + m


def test_a_gateway_with_fewer_sensors_than_a_message_is_refused():
    with pytest.raises(ValueError, match="fewer than 100 readings per message"):
        GatewayLines(gateway=0, sensors=100, gateways=4, per_message=100)

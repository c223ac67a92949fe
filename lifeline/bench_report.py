"""The benchmark's table: one row per measured quantity, one column per payload shape."""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess


def machine() -> dict:
    """What the numbers were measured on, and how busy it was when the run started."""
    mosquitto = ""
    path = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    try:
        out = subprocess.run([path, "-h"], capture_output=True, text=True, timeout=5).stdout
        found = re.search(r"mosquitto version (\S+)", out)
        mosquitto = found.group(1) if found else ""
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "python": platform.python_version(), "mosquitto": mosquitto,
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}


def _n(value, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and abs(value) < 100:
        return f"{value:g}{unit}"
    return f"{round(value):,}{unit}"


def ingest_rows(result: dict) -> tuple[list[str], list[tuple[str, list[str]]]]:
    """Column names and (label, cells) rows of an ingestion bench result."""
    shapes = list(result["sustained"]) or list(result["ceilings"])
    names = {"batched": "100 readings/message", "single": "1 reading/message"}
    columns = [names.get(s, s) for s in shapes]
    c, s, lat = result["ceilings"], result["sustained"], result["latency"]

    def row(label: str, cell) -> tuple[str, list[str]]:
        return label, [cell(shape) for shape in shapes]

    rows = [
        row("ceiling: mosquitto_sub (C), messages/s", lambda k: _n(c[k]["c_subscriber"]["messages_per_s"])),
        row("ceiling: mosquitto_sub (C), readings/s", lambda k: _n(c[k]["c_subscriber"]["readings_per_s"])),
        row("ceiling: Python decode to arrays (paho), readings/s",
            lambda k: _n(c[k]["python_decode_paho"]["readings_per_s"])),
        row("ceiling: Python decode to arrays (lean subscriber), readings/s",
            lambda k: _n(c[k].get("python_decode_lean", {}).get("readings_per_s"))),
        row("ceiling: Python receive + the service's C parser, readings/s",
            lambda k: _n(c[k].get("python_parse", {}).get("readings_per_s"))),
        row("sustained: readings/s", lambda k: _n(s[k]["readings_per_s"])),
        row("sustained: messages/s", lambda k: _n(s[k]["messages_per_s"])),
        row("sustained: offered readings/s (probe flood)",
            lambda k: f"{_n(s[k]['offered_readings_per_s'])} ({_n(s[k]['probe_readings_per_s'])})"),
        row("sustained: rates tried, k readings/s offered (+ stable, - grew)",
            lambda k: " ".join(f"{r['offered_readings_per_s'] / 1000:,.0f}{'+' if r['backlog_stable'] else '-'}"
                               for r in s[k].get("search", []))),
        row("sustained: backlog growth, s (stable)",
            lambda k: f"{_n(s[k]['backlog_growth_s'])} ({_n(s[k]['backlog_stable'])})"),
        row("sustained: readings lost", lambda k: _n(s[k]["readings_lost"])),
        row("sustained: service CPU, cores", lambda k: _n(s[k]["service_cpu_s_per_s"])),
        row("ratio: sustained / decode ceiling", lambda k: _n(result["ratio"].get(k))),
        row("ratio: sustained / parse ceiling",
            lambda k: _n(result.get("ratio_to_parse_ceiling", {}).get(k))),
        row("latency: load, readings/s", lambda k: _n(lat[k]["load_readings_per_s"])),
        row("latency: alert events sent / received",
            lambda k: f"{_n(lat[k]['events_sent'])} / {_n(lat[k]['events_received'])}"),
        row("latency: p50 / p99 / max, ms",
            lambda k: f"{_n(lat[k]['p50_ms'])} / {_n(lat[k]['p99_ms'])} / {_n(lat[k]['max_ms'])}"),
    ]
    m, ws = result["memory"], result["websocket"]
    rows.append((f"memory: {m['channels']:,} channels, RSS MiB (peak; idle)",
                 [f"{_n(m['rss_mib'])} ({_n(m['peak_mib'])}; {_n(m['idle_rss_mib'])}), {m['processes']} processes"]
                 + [""] * (len(shapes) - 1)))
    rows.append(("websocket client connected throughout (events)",
                 [f"{_n(ws['connected_throughout'])} ({_n(ws['events'])})"] + [""] * (len(shapes) - 1)))
    return columns, rows


def fanout_rows(result: dict) -> tuple[list[str], list[tuple[str, list[str]]]]:
    f = result["fanout"]
    rows = [
        ("clients connected / events/s offered", f"{f['clients']} / {_n(f['events_per_s'])}"),
        ("events sent; delivered per client min / mean", f"{_n(f['events_sent'])}; {_n(f['delivered_min'])} / "
                                                         f"{_n(f['delivered_mean'])}"),
        ("frames/s delivered, all clients", _n(f["frames_per_s"])),
        ("latency p50 / p99 / max, ms", f"{_n(f['p50_ms'])} / {_n(f['p99_ms'])} / {_n(f['max_ms'])}"),
        ("clients cut off (4008) / reconnects", f"{_n(f['lagging_closes'])} / {_n(f['reconnects'])}"),
        ("service CPU, cores", _n(f["service_cpu_s_per_s"])),
        ("client processes CPU, cores", _n(f.get("clients_cpu_s_per_s"))),
    ]
    return ["fan-out"], [(label, [cell]) for label, cell in rows]


def print_table(result: dict) -> None:
    columns, rows = fanout_rows(result) if "fanout" in result else ingest_rows(result)
    width = max(len(label) for label, _ in rows)
    widths = [max(len(col), *(len(cells[i]) for _, cells in rows)) for i, col in enumerate(columns)]
    print(f"{'':<{width}}  " + "  ".join(f"{col:>{w}}" for col, w in zip(columns, widths, strict=True)))
    for label, cells in rows:
        print(f"{label:<{width}}  " + "  ".join(f"{cell:>{w}}" for cell, w in zip(cells, widths, strict=True)))
    m = result["machine"]
    print(f"\n{m['cpus']} CPUs, Python {m['python']}, Mosquitto {m['mosquitto']}; load average at start "
          f"{m['load_average_start']}, at end {m.get('load_average_end')}")

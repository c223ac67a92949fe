"""Two scores of the same scenario side by side: the domain detectors against a baseline.

The baseline is what a generic platform would do with the same catalogue: only the plain
threshold rules (`lifeline simulate --city N --write-config DIR --rules threshold`). Both
scores come from `simulators.scoring.score` over the same simulated run (same city, seed and
scenario), so every difference is the detectors'.
"""

from __future__ import annotations

from typing import Any

from simulators.scoring import _pair


def _cells(row: dict[str, Any] | None) -> list[str]:
    if row is None:
        return ["-", "-", "-", "-", "-"]
    rate = row["false_per_1000_sensor_hours"]
    located = (f"{row['location_error_m']['median']:.0f} m ({row['located']}/{row['leaks']})" if row["located"]
               else ("-" if not row["leaks"] else f"none (0/{row['leaks']})"))
    return [f"{row['detected']}/{row['incidents']}", _pair(row["first_alert_s"]),
            "-" if rate is None else f"{row['false_alerts']} ({rate:.2f})", located,
            _pair(row["to_level_s"])]


COLUMNS = ("detected", "first alert med / max", "false (/1000 sensor-h)", "leak location error",
           "correct level med / max")


def comparison_rows(domain: dict[str, Any], baseline: dict[str, Any]) -> list[dict[str, Any]]:
    """Per domain and overall: the two scores' summary rows, {"domain", "domain_detectors", "baseline"}."""
    names = sorted(set(domain["domains"]) | set(baseline["domains"]))
    rows = [{"domain": n, "domain_detectors": domain["domains"].get(n), "baseline": baseline["domains"].get(n)}
            for n in names]
    rows.append({"domain": "overall", "domain_detectors": domain["overall"], "baseline": baseline["overall"]})
    return rows


def format_comparison(domain: dict[str, Any], baseline: dict[str, Any]) -> str:
    """A plain-text (Markdown) table: each domain twice, with the domain detectors and with thresholds only."""
    lines = ["| domain | rules | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for row in comparison_rows(domain, baseline):
        for label, key in (("domain detectors", "domain_detectors"), ("thresholds only", "baseline")):
            lines.append(f"| {row['domain']} | {label} | " + " | ".join(_cells(row[key])) + " |")
    traps = [(label, result["traps"]) for label, result in (("domain detectors", domain), ("thresholds only", baseline))]
    lines.append("")
    for label, trap in traps:
        lines.append(f"traps and faults ({label}): {trap['alerts']} hazard alert(s) on {trap['incidents']} incidents, "
                     f"{len(trap['violations'])} above the allowed level")
    missed_by_both = [r["id"] for r in domain["incidents"] if r["hazard"] and not r["detected"]]
    if missed_by_both:
        lines.append(f"missed with the domain detectors: {', '.join(missed_by_both)}")
    return "\n".join(lines)


"""`lifeline simulate` and `lifeline score`: their arguments and what they do.

`lifeline/cli.py` registers the subcommands and calls in here; this module imports only
argparse at load time so that building the parser stays cheap.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def add_simulate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mqtt", help="broker URL mqtt://user:pass@host:port (not needed with only --write-config)")
    parser.add_argument("--config", help="catalogue to simulate (default ./lifeline.yaml or the demo city)")
    parser.add_argument("--city", type=int, metavar="N",
                        help="generate a city of N sensors over the five domains instead (same N and --seed: same city)")
    parser.add_argument("--write-config", metavar="DIR",
                        help="write the generated city as DIR/lifeline.yaml + DIR/sensors.csv (for lifeline up); "
                             "without --mqtt, write and exit")
    parser.add_argument("--rules", choices=("domain", "threshold"), default="domain",
                        help="rules written with --write-config: the domain detectors too (default), or only the plain "
                             "thresholds a generic platform would have (the scoring baseline)")
    parser.add_argument("--scenario", default="default",
                        help="a name (--list-scenarios), a scenario .yaml file, or several joined by '+'")
    parser.add_argument("--list-scenarios", action="store_true", help="print the built-in scenarios and incident kinds")
    parser.add_argument("--speed", type=float, default=1.0,
                        help="simulated seconds per real second (1: a live drill; 1440: a day in a minute)")
    parser.add_argument("--duration", type=float,
                        help="wall-clock seconds to run (default: the scenario's length, else until interrupted)")
    parser.add_argument("--truth", help="write the run header, injected incidents and run trailer as JSON lines")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-waveform-rate", type=float, default=None, metavar="SAMPLES_PER_S",
                        help="thin periodic waveform blocks above this many samples per wall-clock second "
                             "(default 20000; 0: never)")


def _list_scenarios() -> int:
    from simulators.scenarios import ALL_KINDS, builtin_scenarios

    print("scenarios:")
    for name, scenario in builtin_scenarios().items():
        if name in ALL_KINDS:
            continue
        span = f"{scenario.length_s / 3600:g} h" if scenario.length_s else (
            f"repeats every {scenario.repeat_s / 60:g} min" if scenario.repeat_s else "-")
        print(f"  {name:<10} {span:<22} {scenario.description}")
    print("incident kinds (each also a scenario of its own, repeating):")
    for name, kind in ALL_KINDS.items():
        role = "hazard" if kind.hazard else "not a hazard"
        seen = ", ".join(kind.detectors) or "-"
        print(f"  {name:<22} {kind.domain or 'any':<9} {role:<13} seen by: {seen:<22} {kind.description}")
    return 0


def run_simulate(args: argparse.Namespace, load_config: Callable[[str | None], Any]) -> int:
    if args.list_scenarios:
        return _list_scenarios()
    from lifeline.config import load_config as load_file
    from simulators.city import generate_city, write_city
    from simulators.run import MAX_WAVEFORM_RATE, simulate
    from simulators.scenarios import resolve

    if args.city is not None and args.config:
        print("lifeline simulate: give --config FILE or --city N, not both", file=sys.stderr)
        return 2
    if args.write_config and args.city is None:
        print("lifeline simulate: --write-config needs --city N", file=sys.stderr)
        return 2
    if not args.mqtt and not args.write_config:
        print("lifeline simulate: --mqtt URL is required (or --city N --write-config DIR to only write a city)",
              file=sys.stderr)
        return 2
    try:
        resolve(args.scenario)
    except ValueError as exc:
        print(f"lifeline simulate: {exc}", file=sys.stderr)
        return 2
    if args.city is not None:
        try:
            city = generate_city(args.city, args.seed)
        except ValueError as exc:
            print(f"lifeline simulate: {exc}", file=sys.stderr)
            return 2
        if args.write_config:
            path = write_city(city, Path(args.write_config), args.rules)
            counts = ", ".join(f"{d} {n}" for d, n in city.by_domain().items())
            print(f"lifeline simulate: wrote {path} and {path.parent / 'sensors.csv'}: {len(city.sensors)} sensors "
                  f"({counts}), {len(city.gateways)} gateways", flush=True)
            if not args.mqtt:
                return 0
            config = load_file(path)
        else:
            import tempfile

            with tempfile.TemporaryDirectory(prefix="lifeline-city-") as tmp:
                config = load_file(write_city(city, Path(tmp)))
    else:
        config = load_config(args.config)
    rate = MAX_WAVEFORM_RATE if args.max_waveform_rate is None else args.max_waveform_rate
    summary = simulate(config, args.mqtt, scenario=args.scenario, speed=args.speed, duration=args.duration,
                       truth_path=Path(args.truth) if args.truth else None, seed=args.seed,
                       max_waveform_rate=rate, log=lambda line: print(line, flush=True))
    brief = {k: v for k, v in summary.items() if k != "incidents"}
    brief["incidents"] = len(summary["incidents"])
    print(f"lifeline simulate: {json.dumps(brief)}", flush=True)
    return 0


def add_score_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--truth", required=True, help="the run's truth file (lifeline simulate --truth)")
    parser.add_argument("--alerts", required=True, metavar="FILE_OR_URL",
                        help="alerts: a JSON file (alert objects or websocket events, list or JSON lines) "
                             "or the service URL http://host:port")
    parser.add_argument("--token", help="API token for a service URL (default: $LIFELINE_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the score as JSON")
    parser.add_argument("--config", help="count sensors for the false-alert rate from this catalogue "
                                         "(default: the truth file's run header)")
    parser.add_argument("--hours", type=float, help="simulated hours for the false-alert rate "
                                                    "(default: the truth file's run header and trailer)")
    parser.add_argument("--tolerance", type=float, default=None, metavar="S",
                        help="an alert matches an incident it began within S seconds of (default 60)")


def run_score(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from lifeline.config import ConfigError, load_config
    from simulators.alert_sources import SourceError, load_activations, read_truth_file
    from simulators.scoring import DEFAULT_TOLERANCE_S, format_score, read_truth, score

    try:
        run, incidents = read_truth(read_truth_file(Path(args.truth)))
        activations, _ = load_activations(args.alerts, args.token or os.environ.get("LIFELINE_TOKEN"))
    except SourceError as exc:
        print(f"lifeline score: {exc}", file=sys.stderr)
        return 2
    if args.config:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            print(f"lifeline score: configuration error: {exc}", file=sys.stderr)
            return 2
        by_domain: dict[str, int] = {}
        for sensor in config.sensors:
            by_domain[sensor.domain] = by_domain.get(sensor.domain, 0) + 1
        run = replace(run, sensors=len(config.sensors), sensors_by_domain=by_domain, source=f"{args.config}")
    if args.hours is not None:
        run = replace(run, hours=args.hours, source=f"{run.source}, --hours")
    result = score(run, incidents, activations,
                   DEFAULT_TOLERANCE_S if args.tolerance is None else args.tolerance)
    print(json.dumps(result, indent=2) if args.json else format_score(result))
    return 0

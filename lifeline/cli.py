"""The `lifeline` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from importlib import resources
from pathlib import Path

from lifeline.config import Config, ConfigError, load_config

DEMO_CONFIG = "demo/lifeline.yaml"


def _default_config_path() -> Path:
    """./lifeline.yaml when present, else the demo city that ships with the package."""
    local = Path("lifeline.yaml")
    if local.is_file():
        return local
    return Path(str(resources.files("lifeline") / DEMO_CONFIG))


def _load(path: str | None) -> Config:
    return load_config(path or _default_config_path())


def cmd_up(args: argparse.Namespace) -> int:
    from lifeline.service import Service, resolve_settings

    config = _load(args.config)
    for warning in config.warnings:
        logging.getLogger("lifeline").warning("%s", warning)
    try:
        settings = resolve_settings(config, mqtt=args.mqtt, http=args.http, data=args.data, simulate=args.simulate)
    except ValueError as exc:
        print(f"lifeline: {exc}", file=sys.stderr)
        return 2
    settings.scenario = args.scenario
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(Service(config, settings).run())
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.file)
    except ConfigError as exc:
        for problem in exc.problems:
            print(f"error: {problem}")
        print(f"{len(exc.problems)} error(s) in {args.file}")
        return 1
    domains: dict[str, int] = {}
    for sensor in config.sensors:
        domains[sensor.domain] = domains.get(sensor.domain, 0) + 1
    channels = sum(len(s.metrics) for s in config.sensors)
    print(f"{args.file}: OK")
    print(f"  gateways: {len(config.gateways)}")
    print(f"  sensors:  {len(config.sensors)} ({', '.join(f'{d} {n}' for d, n in sorted(domains.items()))})")
    print(f"  channels: {channels}")
    print(f"  rules:    {len(config.rules)}")
    print(f"  mqtt:     {config.mqtt.url or 'private broker (started by lifeline up)'}"
          f", topic prefix {config.mqtt.topic_prefix!r}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.run import simulate

    config = _load(args.config)
    summary = simulate(config, args.mqtt, scenario=args.scenario, speed=args.speed, duration=args.duration,
                       truth_path=Path(args.truth) if args.truth else None, seed=args.seed)
    print(f"lifeline simulate: {summary}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from simulators.replay import replay

    summary = replay(Path(args.file), args.mqtt, speed=args.speed, shift_to_now=args.shift_to_now)
    print(f"lifeline replay: {summary}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from simulators.replay import record

    count = record(args.mqtt, Path(args.out), topic_prefix=args.topic_prefix, duration=args.duration)
    print(f"lifeline record: {count} messages written to {args.out}")
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    from lifeline.tokens import TokenStore

    data = Path(args.data or os.environ.get("LIFELINE_DATA") or "data")
    try:
        token = TokenStore(data / "lifeline.db").create(args.role, args.owner or "")
    except ValueError as exc:
        print(f"lifeline tokens: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lifeline", description="City lifeline monitoring and early warning")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run ingestion, detectors, alerting and dashboard")
    up.add_argument("--config", help="configuration file (default ./lifeline.yaml or the demo city)")
    up.add_argument("--mqtt", help="broker URL mqtt://user:pass@host:port; default: start a private Mosquitto")
    up.add_argument("--http", help="HOST:PORT of the dashboard and API (default 127.0.0.1:8000)")
    up.add_argument("--data", help="data folder (SQLite files, private broker state)")
    up.add_argument("--simulate", action="store_true", help="also run the simulator against the same broker")
    up.add_argument("--scenario", default="default", help="simulator scenario with --simulate")
    up.set_defaults(func=cmd_up)

    sim = sub.add_parser("simulate", help="publish simulated gateway traffic")
    sim.add_argument("--mqtt", required=True)
    sim.add_argument("--config")
    sim.add_argument("--scenario", default="default")
    sim.add_argument("--speed", type=float, default=1.0, help="simulated seconds per real second")
    sim.add_argument("--duration", type=float, help="wall-clock seconds to run (default: until interrupted)")
    sim.add_argument("--truth", help="write injected incidents as JSON lines to this file")
    sim.add_argument("--seed", type=int, default=1)
    sim.set_defaults(func=cmd_simulate)

    rep = sub.add_parser("replay", help="publish a recorded feed with its original timing")
    rep.add_argument("file")
    rep.add_argument("--mqtt", required=True)
    rep.add_argument("--speed", type=float, default=1.0, help="timing divisor; 0 = as fast as possible")
    rep.add_argument("--shift-to-now", action="store_true", help="move reading timestamps so the feed starts now")
    rep.set_defaults(func=cmd_replay)

    rec = sub.add_parser("record", help="capture gateway telemetry to a JSON-lines file (.gz to compress)")
    rec.add_argument("--mqtt", required=True)
    rec.add_argument("--out", required=True)
    rec.add_argument("--topic-prefix", default="lifeline")
    rec.add_argument("--duration", type=float)
    rec.set_defaults(func=cmd_record)

    chk = sub.add_parser("check", help="validate a configuration file")
    chk.add_argument("file")
    chk.set_defaults(func=cmd_check)

    tokens = sub.add_parser("tokens", help="API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser("create", help="create a token and print it once")
    create.add_argument("--role", required=True, choices=["viewer", "operator", "admin", "integrator"])
    create.add_argument("--owner", help="gateway owner an integrator token may read")
    create.add_argument("--data", help="data folder of the service")
    create.set_defaults(func=cmd_tokens_create)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"lifeline: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

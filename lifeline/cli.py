"""The `lifeline` command line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time
from importlib import resources
from pathlib import Path

from lifeline.config import Config, ConfigError, Problem, load_config

DEMO_CONFIG = "demo/lifeline.yaml"
#: What `make demo` shows: one incident per domain every 15 minutes, plus a stuck gas
#: detector, an elevator gateway going offline and backfilling, and a slow leak for the trend.
DEMO_SCENARIO = "default+sensor_stuck+gateway_offline+slow_leak"


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
        settings = resolve_settings(config, mqtt=args.mqtt, http=args.http, data=args.data, simulate=args.simulate,
                                    workers=args.workers)
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
    alerting = config.alerting.management
    print(f"  alerting: {len(alerting.receivers)} receivers, {len(alerting.routes)} routes, "
          f"{len(alerting.inhibit_rules)} inhibit rules, deadlines for {', '.join(alerting.deadlines) or 'no level'}")
    for warning in config.warnings:
        print(f"warning: {warning}")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    from simulators.commands import run_simulate

    return run_simulate(args, _load)


def cmd_score(args: argparse.Namespace) -> int:
    from simulators.commands import run_score

    return run_score(args)


def cmd_replay(args: argparse.Namespace) -> int:
    from simulators.replay import replay

    summary = replay(Path(args.file), args.mqtt, speed=args.speed, shift_to_now=args.shift_to_now)
    print(f"lifeline replay: {summary}")
    return 0


def cmd_record(args: argparse.Namespace) -> int:
    from simulators.replay import record

    count = record(args.mqtt, Path(args.out), topic_filter=f"{args.topic_prefix}/+/telemetry", duration=args.duration,
                   log=lambda line: print(line, flush=True))
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


def cmd_tokens_list(args: argparse.Namespace) -> int:
    from lifeline.tokens import TokenStore

    data = Path(args.data or os.environ.get("LIFELINE_DATA") or "data")
    print(f"{'id':12}  {'role':10}  {'owner':30}  {'created (UTC)':19}  state")
    for entry in TokenStore(data / "lifeline.db").entries():
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry["created_at"] / 1000))
        state = "revoked" if entry["revoked"] else "active"
        print(f"{entry['id']:12}  {entry['role']:10}  {entry['owner'] or '-':30}  {created:19}  {state}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    from lifeline.tokens import TokenStore

    data = Path(args.data or os.environ.get("LIFELINE_DATA") or "data")
    try:
        revoked = TokenStore(data / "lifeline.db").revoke(args.id)
    except ValueError as exc:
        print(f"lifeline tokens: {exc}", file=sys.stderr)
        return 2
    if not revoked:
        print(f"lifeline tokens: no active token {args.id}", file=sys.stderr)
        return 1
    print(f"token {args.id} revoked")
    return 0


def _editable_config(path: str | None) -> Path:
    """The configuration a gateway command changes: never the demo city inside the package."""
    if path:
        return Path(path)
    if Path("lifeline.yaml").is_file():
        return Path("lifeline.yaml")
    raise ConfigError([Problem("lifeline.yaml", None, "", "not found; pass --config FILE")])


def cmd_gateways_mosquitto(args: argparse.Namespace) -> int:
    from lifeline.gateways import GatewayError, write_mosquitto_files

    out = Path(args.out)
    try:
        created = write_mosquitto_files(Path(args.config), out)
    except GatewayError as exc:
        print(f"lifeline gateways: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'passwd'}, {out / 'acl'} and {out / 'lifeline.env'} (the service's MQTT URL)")
    for user, password in created.items():
        print(f"new account {user}: password {password}  (shown once; only its hash is kept)")
    print("reload a running Mosquitto to apply them: kill -HUP <pid> (compose: docker compose kill -s HUP mosquitto)")
    return 0


def cmd_gateways_add(args: argparse.Namespace) -> int:
    from lifeline.gateways import GatewayError, add_gateway

    config = _editable_config(args.config)
    try:
        password = add_gateway(config, args.id, args.owner)
    except GatewayError as exc:
        print(f"lifeline gateways: {exc}", file=sys.stderr)
        return 2
    prefix = load_config(config).mqtt.topic_prefix
    print(f"gateway {args.id} ({args.owner}) added to {config}")
    print(f"user: {args.id}")
    print(f"password: {password}")
    print("The password is shown once; only its hash is kept. The gateway publishes to "
          f"{prefix}/{args.id}/telemetry and reads {prefix}/{args.id}/errors.")
    print(f"Activate it: lifeline gateways mosquitto --config {config} --out DIR, then reload Mosquitto.")
    return 0


def cmd_gateways_passwd(args: argparse.Namespace) -> int:
    from lifeline.gateways import GatewayError, rotate_password

    config = _editable_config(args.config)
    try:
        password = rotate_password(config, args.id)
    except GatewayError as exc:
        print(f"lifeline gateways: {exc}", file=sys.stderr)
        return 2
    print(f"password: {password}")
    print(f"The old password works until you run `lifeline gateways mosquitto --config {config} --out DIR` "
          "and reload Mosquitto.")
    return 0


def cmd_webhook_print(args: argparse.Namespace) -> int:
    from simulators.webhook_print import WebhookPrinter

    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        print(f"lifeline webhook-print: --listen expects HOST:PORT, got {args.listen!r}", file=sys.stderr)
        return 2
    printer = WebhookPrinter(host, int(port))
    print(f"lifeline webhook-print: receiving notifications at {printer.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        printer.server.serve_forever()
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
    up.add_argument("--scenario", default=DEMO_SCENARIO,
                    help=f"simulator scenario with --simulate (default: {DEMO_SCENARIO})")
    up.add_argument("--workers", help="ingestion processes, gateways split between them (default 'auto': "
                                      "one per core from 5,000 channels, else 1; env LIFELINE_WORKERS)")
    up.set_defaults(func=cmd_up)

    from simulators.commands import add_score_arguments, add_simulate_arguments

    sim = sub.add_parser("simulate", help="publish simulated gateway traffic (--city N: a generated city)")
    add_simulate_arguments(sim)
    sim.set_defaults(func=cmd_simulate)

    score = sub.add_parser("score", help="match alerts to a run's ground truth: detected, delays, false alerts")
    add_score_arguments(score)
    score.set_defaults(func=cmd_score)

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

    sub.add_parser("bench", help="measure ceilings, sustained throughput, alert latency, memory; --fanout: "
                                 "websocket fan-out (lifeline bench --help)")

    hook = sub.add_parser("webhook-print", help="receive webhook notifications and print them (demo, route tests)")
    hook.add_argument("--listen", default="127.0.0.1:8099", help="HOST:PORT (default 127.0.0.1:8099, the demo's)")
    hook.set_defaults(func=cmd_webhook_print)

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
    listing = tokens_sub.add_parser("list", help="list tokens (ids, roles, owners; never the secrets)")
    listing.add_argument("--data", help="data folder of the service")
    listing.set_defaults(func=cmd_tokens_list)
    revoke = tokens_sub.add_parser("revoke", help="revoke a token; a running service refuses it at once")
    revoke.add_argument("id", help="token id from `lifeline tokens list`")
    revoke.add_argument("--data", help="data folder of the service")
    revoke.set_defaults(func=cmd_tokens_revoke)

    gateways = sub.add_parser("gateways", help="gateway credentials and the Mosquitto files that enforce them")
    gateways_sub = gateways.add_subparsers(dest="gateways_command", required=True)
    mosq = gateways_sub.add_parser("mosquitto", help="write Mosquitto passwd and acl files for every gateway")
    mosq.add_argument("--config", required=True, help="configuration file")
    mosq.add_argument("--out", required=True, help="folder for passwd, acl and lifeline.env")
    mosq.set_defaults(func=cmd_gateways_mosquitto)
    add = gateways_sub.add_parser("add", help="register a gateway and print its password once")
    add.add_argument("id", help="gateway id, also its MQTT user name")
    add.add_argument("--owner", required=True, help="the enterprise that runs it")
    add.add_argument("--config", help="configuration file (default ./lifeline.yaml)")
    add.set_defaults(func=cmd_gateways_add)
    passwd = gateways_sub.add_parser("passwd", help="give a gateway a new password (printed once)")
    passwd.add_argument("id")
    passwd.add_argument("--config", help="configuration file (default ./lifeline.yaml)")
    passwd.set_defaults(func=cmd_gateways_passwd)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["bench"]:  # the benchmark parses its own options
        from lifeline.bench import main as bench_main

        return bench_main(argv[1:])
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

"""The scenario suite scored twice: with the domain detectors, and with thresholds only.

For each rule set it writes the same generated city (`--rules domain` / `--rules threshold`),
starts a private Mosquitto and `lifeline up`, publishes the `suite` scenario (every incident
kind once over six simulated hours, traps and sensor faults included) with its ground truth,
scores the service's alerts against it, and prints both scores side by side (Markdown).

    .venv/bin/python benchmarks/score_suite.py [--sensors 100] [--speed 3000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from lifeline.broker import PrivateBroker, free_port
from simulators.city import generate_city, write_city
from simulators.score_compare import format_comparison
from simulators.scoring import format_score

ROOT = Path(__file__).resolve().parent.parent


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeline.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          **kwargs)


def _healthz(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as response:
            return json.loads(response.read())
    except OSError:
        return None


def run_suite(rules: str, sensors: int, speed: float, seed: int, folder: Path) -> dict:
    """One scored run of the suite with the given rule set; the score JSON."""
    config = write_city(generate_city(sensors, seed), folder / "city", rules)
    data = folder / "data"
    port = free_port()
    with PrivateBroker(folder / "broker") as broker:
        log = (folder / "service.log").open("wb")
        service = subprocess.Popen([sys.executable, "-m", "lifeline.cli", "up", "--config", str(config), "--data",
                                    str(data), "--mqtt", broker.url, "--http", f"127.0.0.1:{port}"],
                                   stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        try:
            deadline = time.monotonic() + 60
            while _healthz(port) is None:
                if service.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"lifeline up did not start; see {folder / 'service.log'}")
                time.sleep(0.1)  # polling for readiness
            truth = folder / "truth.jsonl"
            simulated = _cli("simulate", "--config", str(config), "--mqtt", broker.url, "--scenario", "suite",
                             "--speed", str(speed), "--seed", str(seed), "--truth", str(truth))
            if simulated.returncode:
                raise SystemExit(simulated.stderr)
            values = json.loads(simulated.stdout.strip().splitlines()[-1].split("lifeline simulate: ", 1)[1])["values"]
            deadline = time.monotonic() + 300
            while (_healthz(port) or {}).get("readings", 0) < values:
                if time.monotonic() > deadline:
                    raise SystemExit("the service did not ingest the whole run")
                time.sleep(0.2)  # polling the service's progress
            token = _cli("tokens", "create", "--role", "viewer", "--data", str(data), check=True).stdout.strip()
            scored = _cli("score", "--truth", str(truth), "--alerts", f"http://127.0.0.1:{port}", "--token", token,
                          "--json")
            if scored.returncode:
                raise SystemExit(scored.stderr)
            return json.loads(scored.stdout)
        finally:
            service.terminate()
            service.wait(30)
            log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=100)
    parser.add_argument("--speed", type=float, default=3000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write both scores to this file")
    parser.add_argument("--verbose", action="store_true", help="print each full score too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lifeline-suite-") as tmp:
        scores = {rules: run_suite(rules, args.sensors, args.speed, args.seed, Path(tmp) / rules)
                  for rules in ("domain", "threshold")}
    if args.verbose:
        for rules, result in scores.items():
            print(f"## rules: {rules}\n{format_score(result)}\n")
    print(f"Scenario suite, {args.sensors}-sensor city (seed {args.seed}), 6 simulated hours at speed {args.speed:g}\n")
    print(format_comparison(scores["domain"], scores["threshold"]))
    if args.json:
        Path(args.json).write_text(json.dumps(scores, indent=1))


if __name__ == "__main__":
    main()

"""Regenerate the recorded fixtures the tests replay: `python -m simulators.fixtures [DIR]`.

demo-feed.jsonl.gz    the demo city's gateway traffic, scenario "default", 40 wall-clock seconds at
                      speed 10 (400 simulated seconds: the gas leak, the water-main burst and the
                      bridge overload start), recorded off a private Mosquitto by `record`
demo-feed.truth.jsonl the run's ground truth (run header, incidents, trailer)

Reading timestamps are those of the recording day: replay with `shift_to_now` (the recording's
receive times map to now) to make them current, and shift the truth by the same offset.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from importlib import resources
from pathlib import Path

from lifeline.broker import PrivateBroker
from lifeline.config import load_config
from simulators.replay import record
from simulators.run import simulate

DEMO_FEED = "demo-feed.jsonl.gz"
DEMO_TRUTH = "demo-feed.truth.jsonl"


def record_demo_feed(folder: Path, *, speed: float = 10.0, duration: float = 40.0, seed: int = 1) -> dict:
    """Simulate the demo city through a private broker and record it; returns the summary."""
    config = load_config(Path(str(resources.files("lifeline") / "demo" / "lifeline.yaml")))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="lifeline-fixture-") as tmp, PrivateBroker(Path(tmp)) as broker:
        stop, ready = threading.Event(), threading.Event()
        counted: list[int] = []
        recorder = threading.Thread(target=lambda: counted.append(
            record(broker.url, folder / DEMO_FEED, stop=stop, ready=ready)))
        recorder.start()
        if not ready.wait(10):
            stop.set()
            raise RuntimeError("the recorder did not subscribe")
        summary = simulate(config, broker.url, scenario="default", speed=speed, duration=duration,
                           truth_path=folder / DEMO_TRUTH, seed=seed, log=lambda line: None)
        stop.set()
        recorder.join(10)
    summary["recorded"] = counted[0] if counted else 0
    return summary


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path("tests/data")
    result = record_demo_feed(out)
    size = (out / DEMO_FEED).stat().st_size
    print(f"{out / DEMO_FEED}: {result['recorded']} messages of {result['messages']}, {result['readings']} readings, "
          f"{len(result['incidents'])} incidents, {size / 1024:.0f} KiB")

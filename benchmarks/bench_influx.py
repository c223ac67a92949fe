"""Throughput and outage recovery of the InfluxDB sink against Debian's VictoriaMetrics.

    .venv/bin/python benchmarks/bench_influx.py [--readings 500000]

Prints the line-protocol formatting rate, the sink's end-to-end write rate (lines/s, from the
first append until the server acknowledged the last line) and, after an outage during which
`--readings` more readings were spooled, the time from the server's restart until the spool
is empty.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archive.influx_lines import LineFormat  # noqa: E402
from archive.influx_sink import InfluxSink  # noqa: E402
from ingest.batch import Batch  # noqa: E402
from lifeline.broker import free_port  # noqa: E402
from lifeline.catalogue import Catalogue  # noqa: E402
from lifeline.config import InfluxSettings, load_config  # noqa: E402

VICTORIA = "/usr/bin/victoria-metrics"


def start(folder: Path, port: int) -> subprocess.Popen:
    process = subprocess.Popen([VICTORIA, f"-httpListenAddr=127.0.0.1:{port}", f"-storageDataPath={folder}",
                                "-loggerLevel=ERROR"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
            return process
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("VictoriaMetrics did not start")


def batches(catalogue: Catalogue, count: int, start_ms: int, size: int = 5000) -> list[Batch]:
    rng = np.random.default_rng(1)
    channel = rng.integers(0, len(catalogue), count).astype(np.int32)
    ts = start_ms + np.arange(count, dtype=np.int64)
    value = rng.normal(size=count)
    return [Batch(channel[i:i + size], ts[i:i + size], value[i:i + size]) for i in range(0, count, size)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--readings", type=int, default=500_000)
    args = parser.parse_args()
    catalogue = Catalogue(load_config(Path(__file__).resolve().parents[1] / "lifeline/demo/lifeline.yaml"))
    now = int(time.time() * 1000) - 3_600_000
    live = batches(catalogue, args.readings, now)
    started = time.perf_counter()
    lines = sum(len(LineFormat(catalogue).reading_lines(b)) for b in live)
    print(f"formatting: {lines / (time.perf_counter() - started):,.0f} lines/s")

    folder = Path(tempfile.mkdtemp(prefix="bench-influx-"))
    port = free_port()
    server = start(folder / "victoria", port)
    try:
        settings = InfluxSettings(url=f"http://127.0.0.1:{port}", token="", org="lifeline", bucket="lifeline",
                                  retry_max_s=0.5)
        sink = InfluxSink(settings, catalogue, folder / "spool")
        started = time.perf_counter()
        for batch in live:
            sink.append(batch)
        appended = time.perf_counter() - started
        assert sink.flush(600)
        elapsed = time.perf_counter() - started
        print(f"sink: {sink.lines_written:,} lines in {elapsed:.2f} s = {sink.lines_written / elapsed:,.0f} lines/s "
              f"(append took {appended * 1000:.1f} ms in all; {sink.write_seconds:.2f} s in write requests)")

        server.terminate()
        server.wait()
        for batch in batches(catalogue, args.readings, now + args.readings):
            sink.append(batch)
        deadline = time.monotonic() + 120
        while sink.spool.count < args.readings and time.monotonic() < deadline:
            time.sleep(0.05)
        print(f"outage: {sink.spool.count:,} readings spooled, {sink.spool.bytes / 1e6:.1f} MB on disk")
        restarted = time.perf_counter()
        server = start(folder / "victoria", port)
        assert sink.flush(600)
        print(f"recovery: spool written {time.perf_counter() - restarted:.2f} s after the restart "
              f"(server start included)")
        sink.close()
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()

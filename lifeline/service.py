"""`lifeline up`: the stages wired together.

MQTT network thread -> pipeline thread (decode, archive, detect, alert) -> alert listeners
(SQLite, websocket hub on the event loop, MQTT alert topic, metrics). The HTTP server runs
on the asyncio event loop of the main thread. With several workers (lifeline/workers.py)
the first two stages run in worker processes, and their findings reach the same alert
listeners through the `worker-results` thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from alerting.lifecycle import AlertBook, Event
from alerting.pager import Pager
from alerting.store import AlertStore
from archive.influx_sink import InfluxSink, MirroredArchive, influx_settings
from archive.sqlite_archive import ReadingArchive
from dashboard.app import create_app
from dashboard.context import AppContext
from dashboard.hub import AlertHub
from detectors.registry import build_detectors
from ingest.dead_letters import DeadLetters
from ingest.decode import TelemetryDecoder
from ingest.last_values import LastValues, SharedLastValues
from ingest.mqtt_publisher import MqttPublisher
from ingest.refusals import Refusals
from ingest.telemetry_subscriber import TelemetrySubscriber
from lifeline.broker import PrivateBroker
from lifeline.catalogue import Catalogue
from lifeline.config import Config
from lifeline.gc_freeze import freeze_long_lived
from lifeline.ingestion import Ingestion, InProcessIngestion, choose_workers
from lifeline.metrics import Metrics
from lifeline.mqtt_sessions import reconcile_sessions
from lifeline.mqtturl import BrokerAddress, parse_mqtt_url
from lifeline.partition import assign_gateways
from lifeline.pipeline import Pipeline, restore_detector_state
from lifeline.tokens import TokenStore
from lifeline.workers import WorkerPlan, WorkerPool
from simulators.webhook_print import start_demo_printer

log = logging.getLogger("lifeline")


@dataclass
class Settings:
    """Where the service runs, after flags, environment and config were resolved."""

    mqtt_url: str | None
    http_host: str
    http_port: int
    data_dir: Path
    simulate: bool = False
    scenario: str = "default"
    workers: str | int | None = None  # ingestion processes; None or "auto": by catalogue size


def resolve_settings(config: Config, *, mqtt: str | None = None, http: str | None = None,
                     data: str | None = None, simulate: bool = False, workers: str | None = None,
                     env: dict | None = None) -> Settings:
    """Flags win over the environment, which wins over the config file, then built-in defaults."""
    env = os.environ if env is None else env
    mqtt_url = mqtt or env.get("LIFELINE_MQTT_URL") or config.mqtt.url
    http_value = http or env.get("LIFELINE_HTTP")
    host, port = config.http.host, config.http.port
    if http_value:
        host, _, port_text = http_value.rpartition(":")
        if not host or not port_text.isdigit():
            raise ValueError(f"--http expects HOST:PORT, got {http_value!r}")
        port = int(port_text)
    data_value = data or env.get("LIFELINE_DATA")
    data_dir = Path(data_value) if data_value else (config.storage.path or Path("data"))
    workers_value = workers or env.get("LIFELINE_WORKERS") or None
    if workers_value not in (None, "auto") and not (workers_value.isdigit() and int(workers_value) >= 1):
        raise ValueError(f"--workers expects a number of processes (1 or more) or 'auto', got {workers_value!r}")
    return Settings(mqtt_url=mqtt_url, http_host=host, http_port=port, data_dir=data_dir.resolve(),
                    simulate=simulate, workers=workers_value)


class _Server(uvicorn.Server):
    """uvicorn's server without its own signal handling: after a graceful stop uvicorn
    re-raises the signal, which would kill the process before the archive, the stores and
    the private broker are shut down. The service handles SIGINT/SIGTERM itself."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def request_exit(self) -> None:
        if self.should_exit:
            self.force_exit = True  # a second signal: stop waiting for open connections
        self.should_exit = True


class Service:
    def __init__(self, config: Config, settings: Settings):
        self.config = config
        self.settings = settings
        self.stop_event = threading.Event()
        self.broker: PrivateBroker | None = None

    # -- assembly -----------------------------------------------------------------------------
    def _build(self, loop: asyncio.AbstractEventLoop) -> None:
        config, data = self.config, self.settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        if self.settings.mqtt_url is None:
            self.broker = PrivateBroker(data / "mosquitto").start()
            self.settings.mqtt_url = self.broker.url
            log.info("started a private Mosquitto at %s", self.broker.url)
        address = parse_mqtt_url(self.settings.mqtt_url)

        self.catalogue = Catalogue(config)
        self.metrics = Metrics()
        self.store = AlertStore(data / "lifeline.db")
        self.book = AlertBook(self.store)
        self.archive = ReadingArchive(data / "readings.db", config.storage.retention_days)
        self.dead_letters = DeadLetters(data / "lifeline.db")
        self.tokens = TokenStore(data / "lifeline.db")
        self.workers = choose_workers(self.settings.workers, len(self.catalogue))
        self.gateway_groups = assign_gateways(self.catalogue, self.workers) if self.workers > 1 else []
        stale = reconcile_sessions(data, address, self._sessions(), first_run=self._sessions(single=True))
        self.shared_last_values: SharedLastValues | None = None
        if self.workers > 1:
            self.shared_last_values = SharedLastValues(len(self.catalogue))
            self.last_values = self.shared_last_values.view
        else:
            self.last_values = LastValues(len(self.catalogue))
        self.publisher = MqttPublisher(address, f"{config.mqtt.client_id}-out")
        self.refusals = Refusals(metrics=self.metrics, publish=self.publisher.publish, dead_letters=self.dead_letters,
                                 topic_prefix=config.mqtt.topic_prefix)
        self.hub = AlertHub(self.book, self.store, loop)

        self.book.subscribe(self.hub.on_event)
        self.book.subscribe(self._publish_alert_event)
        self.book.subscribe(self._count_alert_event)
        # Routes, silences, inhibition, deadlines, flapping, notifications (README "Alert management").
        self.pager = Pager(config.alerting.management, book=self.book, store=self.store,
                           sensors=self.catalogue.sensors, db_path=data / "lifeline.db", metrics=self.metrics,
                           publish=self.publisher.publish)
        self.book.subscribe(self.pager.on_event)
        influx = influx_settings(config.influx)
        self.influx = None if influx is None else InfluxSink(influx, self.catalogue, data / "influx-spool",
                                                              self.metrics)
        if self.influx is not None:
            self.book.subscribe(self.influx.on_event)
            log.info("writing readings and alert events to InfluxDB at %s, bucket %s", influx.url, influx.bucket)
        self.ingestion: Ingestion = self._workers(stale) if self.workers > 1 else self._in_process(address, stale)
        self.context = AppContext(
            catalogue=self.catalogue, book=self.book, store=self.store, archive=self.archive,
            dead_letters=self.dead_letters, last_values=self.last_values, tokens=self.tokens, metrics=self.metrics,
            healthy=lambda: self.ingestion.subscribed, status=self._status, auth=config.http.auth,
            config=config, pager=self.pager)

    def _in_process(self, address: BrokerAddress, stale: dict[str, list[str]]) -> InProcessIngestion:
        config = self.config
        client_id = config.mqtt.client_id
        subscriber = TelemetrySubscriber(address, client_id, self._sessions()[client_id], stale.get(client_id, ()))
        detectors = build_detectors(self.catalogue, config.rules)
        orphans = restore_detector_state(detectors, self.book)
        if orphans:
            log.warning("cleared %d alerts whose rule or sensor left the configuration", len(orphans))
        pipeline = Pipeline(
            catalogue=self.catalogue, decoder=TelemetryDecoder(self.catalogue, config.storage.retention_days),
            detectors=detectors, book=self.book,
            archive=self.archive if self.influx is None else MirroredArchive(self.archive, self.influx),
            metrics=self.metrics, last_values=self.last_values, refuse=self.refusals.record,
            topic_prefix=config.mqtt.topic_prefix, backfill_after_s=config.alerting.backfill_after_s)
        return InProcessIngestion(subscriber, pipeline)

    def _sessions(self, single: bool = False) -> dict[str, list[str]]:
        """MQTT client id -> telemetry topic filters of each ingestion process."""
        client_id, prefix = self.config.mqtt.client_id, self.config.mqtt.topic_prefix
        if single or self.workers == 1:
            return {client_id: [f"{prefix}/+/telemetry"]}
        return {f"{client_id}-{i}": [f"{prefix}/{gateway}/telemetry" for gateway in group]
                for i, group in enumerate(self.gateway_groups)}

    def _workers(self, stale: dict[str, list[str]]) -> WorkerPool:
        """Worker processes for shares of the gateways; each resumes its gateways' active alerts."""
        config = self.config
        groups = self.gateway_groups
        active = [a for a in self.book.open_alerts() if a.condition == "active"]
        served = {gateway for group in groups for gateway in group}
        for alert in active:
            if alert.gateway not in served:
                self.book.clear_condition(alert.id, "system", "cleared at start-up: gateway removed from the "
                                                              "configuration")
        plans = []
        for i, (client_id, group) in enumerate(zip(self._sessions(), groups, strict=True)):
            own = set(group)
            plans.append(WorkerPlan(index=i, gateways=group, config=config, mqtt_url=self.settings.mqtt_url,
                                    client_id=client_id, data_dir=self.settings.data_dir,
                                    last_values=self.shared_last_values.names,
                                    open_alerts=tuple(a for a in active if a.gateway in own),
                                    stale_filters=tuple(stale.get(client_id, ())),
                                    log_level=logging.getLogger().getEffectiveLevel()))
        log.info("ingesting in %d worker processes: %s", self.workers,
                 "; ".join(f"{len(group)} gateways" for group in groups))
        return WorkerPool(plans, book=self.book, refusals=self.refusals, metrics=self.metrics)

    def _publish_alert_event(self, event: Event) -> None:
        topic = f"{self.config.mqtt.topic_prefix}/alerts/{event.alert.domain}/{event.alert.level}"
        self.publisher.publish(topic, event.body, 1)

    def _count_alert_event(self, event: Event) -> None:
        self.metrics.alert_events.labels(event.event, event.alert.level).inc()

    def _status(self) -> dict:
        subscribed = self.ingestion.subscribed
        self.metrics.mqtt_connected.set(1 if subscribed else 0)
        return {"mqtt": self.publisher.address.url, "subscribed": subscribed, "workers": self.workers,
                "readings": self.ingestion.readings_total, "backlog": self.ingestion.backlog(),
                "sensors": len(self.catalogue.sensors), "channels": len(self.catalogue),
                "open_alerts": len(self.book.open_alerts()), "seq": self.book.seq,
                **({"influx": self.influx.status()} if self.influx is not None else {})}

    # -- running ------------------------------------------------------------------------------
    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        self._build(loop)
        freeze_long_lived()  # catalogue, rules and alert book: out of the cyclic collector's walks
        if not self.config.http.auth:
            log.warning("access control is OFF (http.auth: false): anyone reaching %s:%d can act as admin",
                        self.settings.http_host, self.settings.http_port)
        self.pager.start()
        self.publisher.start()
        self.ingestion.start()

        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on sockets that say so, and without
        # it every answer on a kept-alive connection waited ~40 ms for a delayed ACK.
        listener = socket.socket(socket.AF_INET6 if ":" in self.settings.http_host else socket.AF_INET,
                                 socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.settings.http_host, self.settings.http_port))
        port = listener.getsockname()[1]
        app = create_app(self.context, self.hub)
        server = _Server(uvicorn.Config(app, ws="websockets-sansio", log_level="warning", lifespan="off",
                                        ws_ping_interval=20, ws_ping_timeout=20))
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, server.request_exit)
        url = f"http://{self.settings.http_host}:{port}/"
        simulator = printer = None
        try:
            serving = asyncio.create_task(server.serve(sockets=[listener]))
            await self._announce(url, port)
            if self.settings.simulate:
                simulator = self._start_simulator()
                printer = start_demo_printer([r.webhook for r in self.config.alerting.management.receivers
                                              if r.webhook])
            await serving
        finally:
            self.stop_event.set()
            if simulator is not None:
                simulator.join(timeout=10)
            self.ingestion.stop()
            self.pager.stop()
            if printer is not None:
                printer.stop()
            self.publisher.stop()
            self.archive.close()
            if self.shared_last_values is not None:
                self.shared_last_values.close()
            if self.influx is not None:
                self.influx.close()
            self.store.close()
            self.dead_letters.close()
            self.tokens.close()
            if self.broker is not None:
                self.broker.stop()
            log.info("stopped")

    async def _announce(self, url: str, port: int) -> None:
        subscribed = await asyncio.to_thread(self.ingestion.wait_subscribed, 15)
        if not subscribed:
            log.warning("telemetry subscription not acknowledged yet by %s; /healthz reports 503 until it is",
                        self.publisher.address.url)
        workers = f", {self.workers} ingestion workers" if self.workers > 1 else ""
        print(f"lifeline: {len(self.catalogue.sensors)} sensors, {len(self.catalogue)} channels, "
              f"{len(self.config.rules)} rules, {self.ingestion.bindings} rule bindings{workers}", flush=True)
        print(f"lifeline: MQTT {self.publisher.address.url}, telemetry on "
              f"{self.config.mqtt.topic_prefix}/<gateway>/telemetry", flush=True)
        if self.settings.simulate and self.config.http.auth:
            token = self.tokens.create("operator", "demo")
            print(f"lifeline: dashboard {url}?token={token}  (demo operator token)", flush=True)
        else:
            print(f"lifeline: dashboard {url}", flush=True)

    def _start_simulator(self) -> threading.Thread:
        from simulators.run import simulate

        def run() -> None:
            try:
                simulate(self.config, self.settings.mqtt_url, scenario=self.settings.scenario, speed=1.0,
                         stop=self.stop_event, log=lambda *a: log.info(" ".join(map(str, a))))
            except Exception:
                log.exception("simulator stopped")

        thread = threading.Thread(target=run, name="simulator", daemon=True)
        thread.start()
        return thread


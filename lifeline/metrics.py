"""The service's Prometheus metrics, in a registry of its own (no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
MAX_GATEWAY_LABELS = 2000  # spoofed gateway ids must not grow the label set without bound


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.readings = Counter("lifeline_readings", "Accepted readings", registry=r)
        self.messages = Counter("lifeline_messages", "Telemetry messages received", registry=r)
        self.rejections = Counter("lifeline_rejections", "Rejected message parts by gateway and reason",
                                  ["gateway", "reason"], registry=r)
        self.alert_events = Counter("lifeline_alert_events", "Alert transitions by event and level",
                                    ["event", "level"], registry=r)
        self.batch_seconds = Histogram("lifeline_batch_seconds", "Time to decode, detect and alert one batch",
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.ingest_latency = Histogram("lifeline_ingest_latency_seconds",
                                        "From message arrival to the end of its batch's processing",
                                        buckets=_LATENCY_BUCKETS, registry=r)
        self.backlog = Gauge("lifeline_ingest_backlog_messages", "Messages received but not yet processed",
                             registry=r)
        self.ws_clients = Gauge("lifeline_ws_clients", "Connected websocket clients", registry=r)
        self.ws_dropped = Counter("lifeline_ws_dropped_clients", "Websocket clients disconnected for lagging",
                                  registry=r)
        self.auth_refused = Counter("lifeline_http_refused", "Requests refused by access control",
                                    ["status"], registry=r)
        self.mqtt_connected = Gauge("lifeline_mqtt_subscribed", "1 while the telemetry subscription is active",
                                    registry=r)
        # The InfluxDB sink (archive/influx_sink.py); the gauges are read from the sink at scrape time.
        self.influx_up = Gauge("lifeline_influx_up", "1 while InfluxDB accepts writes", registry=r)
        self.influx_lag = Gauge("lifeline_influx_lag_seconds",
                                "Age of the oldest reading or alert event not yet written to InfluxDB", registry=r)
        self.influx_pending = Gauge("lifeline_influx_pending", "Readings and alert events not yet written to "
                                    "InfluxDB (queue and spool)", registry=r)
        self.influx_spool_bytes = Gauge("lifeline_influx_spool_bytes", "Size of the InfluxDB disk spool", registry=r)
        self.influx_lines = Counter("lifeline_influx_lines", "Lines written to InfluxDB", registry=r)
        self.influx_errors = Counter("lifeline_influx_write_errors", "InfluxDB write requests that failed and "
                                     "will be retried", registry=r)
        self.influx_refused = Counter("lifeline_influx_refused_lines", "Lines InfluxDB refused for good (HTTP 400)",
                                      registry=r)
        self.influx_dropped = Counter("lifeline_influx_dropped", "Readings and alert events dropped because the "
                                      "spool reached influx.spool_max_mb", registry=r)
        # Notifications (alerting/delivery.py, alerting/dispatcher.py); receiver names come from the config.
        # The alarm-load gauges (lifeline_alarm_*) are computed at scrape time by alerting/alarm_load.py.
        self.notifications = Counter("lifeline_notifications", "Notification delivery attempts by receiver and "
                                     "outcome (sent, failed: will retry, given_up)", ["receiver", "outcome"], registry=r)
        self.notifications_pending = Gauge("lifeline_notifications_pending", "Notifications waiting for delivery "
                                           "or a retry", ["receiver"], registry=r)
        self.notifications_suppressed = Counter("lifeline_notifications_suppressed", "Alert notifications held back "
                                                "by reason (silenced, inhibited, flapping)", ["reason"], registry=r)
        self._gateway_labels: set[str] = set()

    def gateway_label(self, gateway: str) -> str:
        if gateway in self._gateway_labels or len(self._gateway_labels) < MAX_GATEWAY_LABELS:
            self._gateway_labels.add(gateway)
            return gateway
        return "_other"

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

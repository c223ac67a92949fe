"""Notifiers: how one message reaches one target. One class per kind of receiver:

- AppriseTarget: any apprise URL (json://, mailto://, dingtalk://, wecom://, feishu://, ...);
- WebhookTarget: a plain HTTP POST of the notification's JSON payload;
- MqttTarget: the payload published, QoS 1, on a topic of the service's broker.

`send(title, body, payload)` (payload: the notification as JSON bytes) returns when the
target accepted the message and raises DeliveryError otherwise;
each has a timeout, so a dead target costs at most that long (and only its own worker's
time: see alerting/delivery.py).
"""

from __future__ import annotations

import logging
import threading
import urllib.error
import urllib.request
from collections.abc import Callable

from lifeline.alerting_config import ReceiverSpec, redacted_url


class DeliveryError(Exception):
    """The target did not accept the message; the text says why."""


class AppriseTarget:
    def __init__(self, url: str, timeout_s: float):
        self.url = url
        self.timeout_s = timeout_s
        self.description = redacted_url(url)

    def send(self, title: str, body: str, payload: bytes) -> None:
        import apprise

        _ApprisePlainLog.install()
        sender = apprise.Apprise()
        if not sender.add(_with_timeouts(self.url, self.timeout_s)):
            raise DeliveryError(f"apprise does not understand {self.description}")
        with _ApprisePlainLog.capture() as log:
            ok = sender.notify(title=title, body=body)
        if not ok:
            raise DeliveryError(log.text() or "apprise reported a failure")


class WebhookTarget:
    def __init__(self, url: str, timeout_s: float):
        self.url = url
        self.timeout_s = timeout_s
        self.description = redacted_url(url)

    def send(self, title: str, body: str, payload: bytes) -> None:
        request = urllib.request.Request(self.url, data=payload, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "User-Agent": "lifeline-alerting"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                response.read(65536)
        except urllib.error.HTTPError as exc:
            raise DeliveryError(f"HTTP {exc.code} from {self.description}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"{self.description}: {reason}") from None


class MqttTarget:
    def __init__(self, topic: str, publish: Callable[[str, bytes, int], None] | None):
        self.topic = topic
        self.publish = publish
        self.description = f"mqtt topic {topic}"

    def send(self, title: str, body: str, payload: bytes) -> None:
        if self.publish is None:
            raise DeliveryError("no MQTT connection to publish on")
        try:
            self.publish(self.topic, payload, 1)
        except Exception as exc:  # paho raises a few kinds; all mean "not sent"
            raise DeliveryError(f"publish to {self.topic} failed: {exc}") from None


Target = AppriseTarget | WebhookTarget | MqttTarget


def targets_of(receiver: ReceiverSpec, publish: Callable[[str, bytes, int], None] | None) -> list[Target]:
    """The targets a receiver delivers to, each retried on its own."""
    if receiver.urls:
        return [AppriseTarget(url, receiver.timeout_s) for url in receiver.urls]
    if receiver.webhook:
        return [WebhookTarget(receiver.webhook, receiver.timeout_s)]
    return [MqttTarget(receiver.mqtt_topic or "", publish)]


def _with_timeouts(url: str, timeout_s: float) -> str:
    """Apprise's connect (cto) and read (rto) timeouts, unless the URL sets its own."""
    if "cto=" in url or "rto=" in url:
        return url
    seconds = f"{timeout_s:g}"
    return f"{url}{'&' if '?' in url else '?'}cto={seconds}&rto={seconds}"


class _ApprisePlainLog(logging.Handler):
    """Collects apprise's warnings per thread, so a failed send can say why (apprise's
    notify() only answers yes or no) while several receivers send at once."""

    _installed: _ApprisePlainLog | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._local = threading.local()

    @classmethod
    def install(cls) -> None:
        with cls._lock:
            if cls._installed is None:
                cls._installed = cls()
                logging.getLogger("apprise").addHandler(cls._installed)

    @classmethod
    def capture(cls) -> _Capture:
        assert cls._installed is not None
        return _Capture(cls._installed._local)

    def emit(self, record: logging.LogRecord) -> None:
        lines = getattr(self._local, "lines", None)
        if lines is not None:
            lines.append(record.getMessage())


class _Capture:
    def __init__(self, local: threading.local):
        self._local = local

    def __enter__(self) -> _Capture:
        self._local.lines = []
        return self

    def __exit__(self, *exc) -> None:
        self.lines = self._local.lines
        self._local.lines = None

    def text(self) -> str:
        return " ".join(getattr(self, "lines", None) or [])[:500]

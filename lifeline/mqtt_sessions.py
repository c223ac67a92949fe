"""The broker sessions telemetry is subscribed with, remembered from one start to the next.

Telemetry subscriptions live in persistent broker sessions, one per ingestion process
(`mqtt.client_id`, or `<client_id>-<i>` for worker i). When the number of workers or the
split of gateways changes, a session nobody connects to any more would keep collecting
readings for ever, and a session whose gateways moved to another worker would keep
receiving them too (a gateway's readings would then be handled twice). So the sessions and
filters of the last run are kept in `<data>/mqtt-sessions.json`: at start, sessions no longer
used are ended, and filters a session no longer serves are unsubscribed when it connects.
Readings queued in an ended session while the service was down are lost.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from ingest.telemetry_subscriber import end_session
from lifeline.mqtturl import BrokerAddress

log = logging.getLogger("lifeline.mqtt")

FILE_NAME = "mqtt-sessions.json"


def reconcile_sessions(data_dir: Path, address: BrokerAddress, planned: dict[str, list[str]],
                       first_run: dict[str, list[str]]) -> dict[str, list[str]]:
    """Ends the sessions of the last run that are not `planned` (client id -> filters) and
    records the plan; returns the filters each planned session must unsubscribe.

    `first_run` stands for the last run when nothing was recorded yet (a single process
    with the configured client id)."""
    path = data_dir / FILE_NAME
    try:
        previous = json.loads(path.read_text())
    except FileNotFoundError:
        previous = first_run
    except ValueError:
        log.warning("%s is unreadable; assuming a single-process last run", path)
        previous = first_run
    for client_id in sorted(set(previous) - set(planned)):
        try:
            end_session(address, client_id)
            log.info("ended the MQTT session %s of an earlier run", client_id)
        except (OSError, ConnectionError) as exc:
            log.warning("could not end the MQTT session %s of an earlier run: %s", client_id, exc)
            return {}  # keep the record: try again at the next start
    path.write_text(json.dumps(planned, indent=1))
    return {client_id: sorted(set(previous.get(client_id, ())) - set(filters))
            for client_id, filters in planned.items()}

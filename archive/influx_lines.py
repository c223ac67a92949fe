"""InfluxDB line protocol for accepted readings and alert transitions.

Schema (documented in the README, "Deployment"):

- measurement ``reading``, one for every domain: tags ``asset``, ``domain``, ``gateway``,
  ``sensor``; one float field per metric (``ch4``, ``temp``, ``acc_z``...); timestamp = the
  reading's own time in epoch milliseconds. The readings of one sensor at one time become one
  point (one line with several fields). One measurement keeps every Grafana query the same shape
  (``r._measurement == "reading" and r.domain == "gas"``) and a new domain needs no new schema.
- measurement ``alert_event``: tags ``asset``, ``domain``, ``event``, ``gateway``, ``level``,
  ``metric``, ``rule``, ``sensor``; fields ``value``, ``threshold`` (floats), ``seq`` (integer),
  ``alert``, ``peak_level``, ``condition``, ``workflow``, ``message`` (strings); timestamp = the
  reading time of a detector event, the wall clock of an operator's action.

Every point carries an explicit timestamp, so writing a line again overwrites the same point
(InfluxDB identifies a point by measurement, tag set and timestamp): a batch that is resent
after an outage cannot create duplicates.
"""

from __future__ import annotations

import numpy as np

from alerting.alert import OPERATOR_EVENTS
from alerting.lifecycle import Event
from ingest.batch import Batch
from lifeline.catalogue import Catalogue

READING_MEASUREMENT = "reading"
EVENT_MEASUREMENT = "alert_event"

_KEY_ESCAPES = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": " ", "\r": " "})
_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": "\\n"})


def escape_key(text: str) -> str:
    """A tag key, tag value or field key: commas, equals signs and spaces escaped."""
    return text.translate(_KEY_ESCAPES)


def _string_field(text: str) -> str:
    return '"' + text.translate(_STRING_ESCAPES) + '"'


def _tags(tags: dict[str, str]) -> str:
    """`,key=value...` sorted by key (InfluxDB's canonical order); empty values are left out."""
    return "".join(f",{escape_key(k)}={escape_key(v)}" for k, v in sorted(tags.items()) if v)


class LineFormat:
    """Turns batches and alert events into line protocol, with every per-sensor string built once.

    series : (sensors,) object array, ``reading,<tags> `` of each sensor
    field_key : (channels,) object array, ``<metric>=`` of each channel
    """

    def __init__(self, catalogue: Catalogue):
        self.catalogue = catalogue
        self.series = np.array(
            [READING_MEASUREMENT + _tags({"sensor": s.id, "domain": s.domain, "asset": s.asset,
                                          "gateway": s.gateway}) + " " for s in catalogue.sensors] or [""],
            dtype=object)
        self.field_key = np.array([escape_key(c.metric) + "=" for c in catalogue.channels] or [""], dtype=object)

    def reading_lines(self, batch: Batch) -> list[str]:
        """One line per (sensor, ts) with one field per metric; a repeated (channel, ts) keeps
        the value that came last."""
        if not len(batch):
            return []
        sensor = self.catalogue.channel_sensor[batch.channel]
        order = np.lexsort((batch.channel, batch.ts, sensor))  # stable: equal keys keep arrival order
        channel, ts, value, sensor = batch.channel[order], batch.ts[order], batch.value[order], sensor[order]
        last = np.r_[(channel[1:] != channel[:-1]) | (ts[1:] != ts[:-1]), True]
        if not last.all():
            channel, ts, value, sensor = channel[last], ts[last], value[last], sensor[last]
        fields = [k + repr(v) for k, v in zip(self.field_key[channel].tolist(), value.tolist(), strict=True)]
        starts = np.flatnonzero(np.r_[True, (sensor[1:] != sensor[:-1]) | (ts[1:] != ts[:-1])])
        series = self.series[sensor[starts]].tolist()
        stamps = ts[starts].tolist()
        if len(starts) == len(fields):  # every point has one field
            return [f"{s}{f} {t}" for s, f, t in zip(series, fields, stamps, strict=True)]
        ends = np.r_[starts[1:], len(fields)].tolist()
        return [f"{s}{','.join(fields[a:b])} {t}"
                for s, a, b, t in zip(series, starts.tolist(), ends, stamps, strict=True)]

    @staticmethod
    def event_line(event: Event, wall_ms: int) -> str:
        alert = event.alert
        ts = wall_ms if event.event in OPERATOR_EVENTS else alert.updated_at
        tags = _tags({"event": event.event, "rule": alert.rule, "sensor": alert.sensor, "metric": alert.metric,
                      "domain": alert.domain, "asset": alert.asset, "gateway": alert.gateway, "level": alert.level})
        fields = ",".join((
            f"value={float(alert.value)!r}", f"threshold={float(alert.threshold)!r}", f"seq={event.seq}i",
            f"alert={_string_field(alert.id)}", f"peak_level={_string_field(alert.peak_level)}",
            f"condition={_string_field(alert.condition)}", f"workflow={_string_field(alert.workflow)}",
            f"message={_string_field(alert.message)}"))
        return f"{EVENT_MEASUREMENT}{tags} {fields} {int(ts)}"

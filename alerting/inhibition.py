"""Inhibition: some alerts make others pointless to notify.

An InhibitRule specifies that a class of (source) alerts should inhibit notifications for
another class of (target) alerts if all specified `equal` labels are equal between the two
alerts (Alertmanager's inhibit_rules). A source counts while it is open and its condition
is active. The defaults (lifeline/alerting_config.py, DEFAULT_INHIBIT_RULES):

- a silent gateway (kind gateway_silent) inhibits its sensors' silence alerts (same gateway);
- a sensor fault (kind fault) inhibits that sensor's hazard alerts (same sensor);
- a red alert inhibits the yellow ones on the same asset.

Inhibited alerts are still recorded and shown; they only notify no one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lifeline.alerting_config import InhibitRuleSpec


class Inhibitor:
    """Answers "is this alert inhibited?" against the currently open alerts.

    `update(sources)` takes the labels of every open alert once per dispatch round; each
    rule then keeps the `equal` label values of its active sources in a set, so a query is
    one set lookup per rule.
    """

    def __init__(self, rules: Iterable[InhibitRuleSpec]):
        self.rules = tuple(rules)
        self._sources: list[dict[tuple[str, ...], list[str]]] = [{} for _ in self.rules]

    def update(self, alerts: Iterable[Mapping[str, str]]) -> None:
        """`alerts`: labels of the open alerts (with `condition` and `id`)."""
        sources: list[dict[tuple[str, ...], list[str]]] = [{} for _ in self.rules]
        for labels in alerts:
            if labels.get("condition") != "active":
                continue
            for i, rule in enumerate(self.rules):
                if rule.source.matches(labels):
                    ids = sources[i].setdefault(tuple(labels.get(name, "") for name in rule.equal), [])
                    if len(ids) < 2:  # two are enough: an alert never inhibits itself
                        ids.append(labels.get("id", ""))
        self._sources = sources

    def muted_by(self, labels: Mapping[str, str], now: int = 0) -> str | None:
        """`inhibited by <source alert> (<rule>)`, or None."""
        for rule, sources in zip(self.rules, self._sources, strict=True):
            if not sources or not rule.target.matches(labels):
                continue
            own = labels.get("id")
            for source in sources.get(tuple(labels.get(name, "") for name in rule.equal), ()):
                if source != own:
                    return f"inhibited by {source} ({rule.name})"
        return None

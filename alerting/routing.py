"""Routing: which receivers hear of an alert, and how its notifications are grouped.

Routes are tried in order; an alert goes to the first route whose matchers match its labels
and stops there, unless that route says `continue: true` (Alertmanager's semantics). An
alert that matches no route notifies no one (it is still on the dashboard and on the MQTT
alert topic). A 96333 elevator-rescue line, a gas company's duty phone or a bureau's
mailbox are each just a route with a matcher and a receiver.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from lifeline.alerting_config import RouteSpec


class Router:
    def __init__(self, routes: Iterable[RouteSpec]):
        self.routes = tuple(routes)
        self.by_name = {r.name: r for r in self.routes}

    def routes_for(self, labels: Mapping[str, str]) -> list[RouteSpec]:
        matched = []
        for route in self.routes:
            if route.match.matches(labels):
                matched.append(route)
                if not route.continue_matching:
                    break
        return matched


def group_key(route: RouteSpec, labels: Mapping[str, str]) -> tuple[str, ...]:
    """The incident an alert belongs to on `route`: its values of the route's `group_by`."""
    return tuple(labels.get(name, "") for name in route.group_by)

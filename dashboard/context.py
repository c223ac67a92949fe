"""What the API layer needs from the rest of the service, passed in explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import HTTPException, Request

from alerting.lifecycle import AlertBook
from alerting.pager import Pager
from alerting.store import AlertStore
from archive.sqlite_archive import ReadingArchive
from ingest.dead_letters import DeadLetters
from ingest.last_values import LastValues
from lifeline.catalogue import Catalogue
from lifeline.config import Config
from lifeline.metrics import Metrics
from lifeline.tokens import TokenStore


@dataclass
class AppContext:
    catalogue: Catalogue
    book: AlertBook
    store: AlertStore
    archive: ReadingArchive
    dead_letters: DeadLetters
    last_values: LastValues
    tokens: TokenStore
    metrics: Metrics
    healthy: Callable[[], bool]  # telemetry subscription acknowledged and connected
    status: Callable[[], dict]  # extra fields for /healthz
    auth: bool = True
    config: Config | None = None  # rules (detail charts) and the config file's folder (map base)
    pager: Pager | None = None  # silences, notifications, audit trail, alarm load


def pager_of(request: Request) -> Pager:
    """The alert-management pager of a request's app; 503 for an app assembled without one."""
    pager = request.app.state.context.pager
    if pager is None:
        raise HTTPException(503, "alert management is not running")
    return pager

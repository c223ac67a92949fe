"""Empty query parameters mean "not given".

Forms and hand-written URLs send `?domain=&level=&since=`; an empty filter should select
everything rather than fail validation as an empty integer or an unknown level.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send


class DropEmptyQueryParameters:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and scope.get("query_string"):
            raw = scope["query_string"].decode("latin-1")
            pairs = parse_qsl(raw, keep_blank_values=True)
            if any(value == "" for _, value in pairs):
                kept = urlencode([(key, value) for key, value in pairs if value != ""])
                scope = dict(scope, query_string=kept.encode("latin-1"))
        await self.app(scope, receive, send)

"""The HTTP application, assembled explicitly from its routers."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from dashboard import (
    alerts_api,
    audit_api,
    detail_api,
    map_api,
    notifications_api,
    sensors_api,
    silences_api,
    status_api,
    system_api,
    tokens_api,
    websocket,
)
from dashboard.context import AppContext
from dashboard.empty_query import DropEmptyQueryParameters
from dashboard.hub import AlertHub

STATIC = Path(__file__).parent / "static"


def create_app(context: AppContext, hub: AlertHub) -> FastAPI:
    app = FastAPI(title="Lifeline", version="0.1.0",
                  description="City lifeline monitoring and early warning: alerts, sensors, live events.")
    app.state.context = context
    app.state.hub = hub
    app.add_middleware(DropEmptyQueryParameters)

    # Starlette's class, so its own refusals (unknown route, method, unparsable body) are JSON too.
    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(OverflowError)
    async def number_out_of_range(request: Request, exc: OverflowError) -> JSONResponse:
        # Query integers are unbounded in Python; SQLite and numpy hold 64 bits.
        return JSONResponse({"error": f"a number in the request is out of range: {exc}"}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    app.include_router(alerts_api.router)
    app.include_router(sensors_api.router)
    app.include_router(system_api.router)
    app.include_router(detail_api.router)
    app.include_router(map_api.router)
    app.include_router(status_api.router)
    app.include_router(tokens_api.router)
    app.include_router(silences_api.router)
    app.include_router(notifications_api.router)
    app.include_router(audit_api.router)
    app.include_router(websocket.router)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        # The page reads ?token= itself and keeps it for the session.
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

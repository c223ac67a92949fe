"""The HTTP application, assembled explicitly from its routers."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from dashboard import alerts_api, detail_api, map_api, sensors_api, status_api, system_api, websocket
from dashboard.context import AppContext
from dashboard.hub import AlertHub

STATIC = Path(__file__).parent / "static"


def create_app(context: AppContext, hub: AlertHub) -> FastAPI:
    app = FastAPI(title="Lifeline", version="0.1.0",
                  description="City lifeline monitoring and early warning: alerts, sensors, live events.")
    app.state.context = context
    app.state.hub = hub

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

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
    app.include_router(websocket.router)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        # The page reads ?token= itself and keeps it for the session.
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app

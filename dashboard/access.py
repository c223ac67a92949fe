"""Access control: bearer tokens with roles (CONTRACT §6)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from lifeline.tokens import Principal

OPEN_ACCESS = Principal("admin", "")
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


class Refused(HTTPException):
    """401/403 carried as a JSON `{"error": ...}` body by the app's handler."""


def token_of(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def principal_for(request: Request, token: str | None) -> Principal:
    context = request.app.state.context
    if not context.auth:
        return OPEN_ACCESS
    if not token:
        context.metrics.auth_refused.labels("401").inc()
        raise Refused(401, "missing token: send 'Authorization: Bearer <token>'", headers=_CHALLENGE)
    principal = context.tokens.lookup(token)
    if principal is None:
        context.metrics.auth_refused.labels("401").inc()
        raise Refused(401, "unknown or revoked token", headers=_CHALLENGE)
    return principal


def require(role: str):
    """FastAPI dependency: the request's principal, which must have at least `role`.

    Integrators may call read endpoints (role "viewer") but only see their owner's data.
    """

    def dependency(request: Request) -> Principal:
        principal = principal_for(request, token_of(request))
        allowed = principal.can(role) or (role == "viewer" and principal.role == "integrator")
        if not allowed:
            request.app.state.context.metrics.auth_refused.labels("403").inc()
            raise Refused(403, f"role {principal.role!r} may not do this (needs {role})")
        return principal

    return dependency


def owner_filter(principal: Principal) -> str | None:
    """The owner an integrator is confined to; None for everyone else."""
    return principal.owner if principal.role == "integrator" else None


Viewer = Annotated[Principal, Depends(require("viewer"))]
Operator = Annotated[Principal, Depends(require("operator"))]
Admin = Annotated[Principal, Depends(require("admin"))]


def _staff(request: Request, principal: Viewer) -> Principal:
    """Reading what belongs to no one owner (silences, notifications, alarm load): not integrators."""
    if principal.role == "integrator":
        request.app.state.context.metrics.auth_refused.labels("403").inc()
        raise Refused(403, "integrators may only read their owner's sensors, alerts and rejections")
    return principal


Staff = Annotated[Principal, Depends(_staff)]

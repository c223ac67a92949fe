"""REST: API tokens, for admins (CONTRACT §6: `admin` manages tokens).

The same store as `lifeline tokens create|list|revoke`; a token's secret is returned once, by
the request that creates it, and never listed.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from dashboard.access import Admin

router = APIRouter(prefix="/api/tokens", tags=["tokens"])


class NewToken(BaseModel):
    role: Literal["viewer", "operator", "admin", "integrator"]
    owner: str = Field(default="", max_length=200, description="gateway owner an integrator token may read")


@router.get("")
def list_tokens(request: Request, principal: Admin) -> list[dict]:
    """`[{"id", "role", "owner", "created_at", "revoked"}]`, oldest first; never the secrets."""
    return request.app.state.context.tokens.entries()


@router.post("", status_code=201)
def create_token(body: NewToken, request: Request, principal: Admin) -> dict:
    """`{"token", "role", "owner"}`: the only time the token is shown."""
    try:
        token = request.app.state.context.tokens.create(body.role, body.owner)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    return {"token": token, "role": body.role, "owner": body.owner}


@router.delete("/{token_id}")
def revoke_token(token_id: str, request: Request, principal: Admin) -> dict:
    """Revoke by id (from the list); refused from the token's next request on."""
    try:
        revoked = request.app.state.context.tokens.revoke(token_id)
    except ValueError as exc:
        raise HTTPException(400, str(exc)) from None
    if not revoked:
        raise HTTPException(404, f"no active token {token_id}")
    return {"id": token_id, "revoked": True}

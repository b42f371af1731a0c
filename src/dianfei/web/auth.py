"""Who is calling: the caller's role from a bearer token or the session cookie."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from dianfei.security.tokens import role_for

COOKIE = "dianfei_token"


def caller_role(request: Request) -> str:
    """The caller's role from a bearer token or the session cookie; 401 without one."""
    auth = request.headers.get("authorization", "")
    presented = auth[7:] if auth.lower().startswith("bearer ") else request.cookies.get(COOKIE)
    role = role_for(presented, request.app.state.console_token)
    if role is None:
        raise HTTPException(status_code=401, detail="sign in with the console token")
    return role


Role = Annotated[str, Depends(caller_role)]

"""Bearer-token authentication and role checks, as FastAPI dependencies."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from torch.errors import Forbidden, Unauthorized
from torch.store import users
from torch.store.users import User

bearer = HTTPBearer(auto_error=False, description="a token from `torch user add`")


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> User:
    if credentials is None:
        raise Unauthorized("send Authorization: Bearer <token>")
    async with request.app.state.pool.acquire() as conn:
        user = await users.user_for_token(conn, credentials.credentials)
    if user is None:
        raise Unauthorized("the token is not valid")
    return user


def require(*roles: str) -> Callable[..., Awaitable[User]]:
    """A dependency that lets through only users with one of these roles."""

    async def check(user: User = Depends(authenticate)) -> User:
        if user.role not in roles:
            raise Forbidden(f"the {user.role} role may not use this route")
        return user

    return check

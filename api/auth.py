"""Bearer-token authentication and role checks, as FastAPI dependencies."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from torch.errors import Forbidden, TooManyRequests, Unauthorized
from torch.store import users
from torch.store.users import User

bearer = HTTPBearer(auto_error=False, description="a token from `torch user add`")


class Throttle:
    """Counts failed authentications by client address over the last minute; an address
    with too many is refused (429) until the oldest of them is a minute old. Per API
    process: behind a load balancer, the limit applies in each."""

    WINDOW_S = 60.0
    MAX_ADDRESSES = 100_000

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._limit = per_minute
        self._clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def check(self, address: str) -> None:
        recent = self._recent(address)
        if recent is not None and len(recent) >= self._limit:
            wait = int(recent[0] + self.WINDOW_S - self._clock()) + 1
            raise TooManyRequests(
                f"too many failed sign-ins from this address; try again in {wait} s", wait
            )

    def failed(self, address: str) -> None:
        recent = self._recent(address)
        if recent is None:
            recent = self._failures[address] = deque()
            if len(self._failures) > self.MAX_ADDRESSES:
                self._failures.popitem(last=False)
        recent.append(self._clock())

    def _recent(self, address: str) -> deque[float] | None:
        recent = self._failures.get(address)
        if recent is None:
            return None
        horizon = self._clock() - self.WINDOW_S
        while recent and recent[0] < horizon:
            recent.popleft()
        if not recent:
            del self._failures[address]
            return None
        return recent


async def authenticate(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> User:
    throttle: Throttle = request.app.state.throttle
    address = request.client.host if request.client else "unknown"
    throttle.check(address)
    user = None
    if credentials is not None:
        async with request.app.state.pool.acquire() as conn:
            user = await users.user_for_token(conn, credentials.credentials)
    if user is None:
        throttle.failed(address)
        if credentials is None:
            raise Unauthorized("send Authorization: Bearer <token>")
        raise Unauthorized("the token is not valid: unknown, expired or revoked")
    return user


async def still_allowed(conn: asyncpg.Connection, token: str, roles: Sequence[str]) -> User | None:
    """The user of a token that is still valid, with one of these roles: for a request that
    goes on (a stream), which its authentication at the start does not cover."""
    user = await users.user_for_token(conn, token)
    return user if user is not None and user.has(*roles) else None


def require(*roles: str) -> Callable[..., Awaitable[User]]:
    """A dependency that lets through only users with one of these roles."""

    async def check(user: User = Depends(authenticate)) -> User:
        if not user.has(*roles):
            raise Forbidden(f"the {user.role} role may not use this route")
        return user

    return check

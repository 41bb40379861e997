"""Users, their bearer tokens, and the audit trail."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal
from uuid import UUID

import asyncpg

from torch.errors import InvalidInput, NotFound
from torch.store import db

ROLES = ("officer", "probation", "supervisor", "admin")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: str
    team_id: int = 1
    force: str = "default"
    also: tuple[str, ...] = ()  # further roles, e.g. an admin who is also a supervisor

    def has(self, *roles: str) -> bool:
        return self.role in roles or any(r in roles for r in self.also)

    @property
    def caseload_team(self) -> int | None:
        """The one team whose subjects a probation officer sees; None: the whole force."""
        if self.has("probation") and not self.has("officer", "supervisor"):
            return self.team_id
        return None


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def add_user(
    conn: asyncpg.Connection,
    name: str,
    role: str,
    ttl: timedelta | None = None,
    team: str = "default",
    also: tuple[str, ...] = (),
) -> tuple[User, str]:
    """Create a user with a role (and perhaps further ones) and a first token, valid for
    `ttl` (None: until revoked); the token is returned once and never stored."""
    for r in (role, *also):
        if r not in ROLES:
            raise InvalidInput(f"role {r!r} is not one of {', '.join(ROLES)}")
    also = tuple(r for r in dict.fromkeys(also) if r != role)
    token = secrets.token_urlsafe(32)
    team_id = await team_id_of(conn, team)
    async with conn.transaction():
        user_id = await db.insert_id(
            conn,
            "INSERT INTO users (name, role, team_id, also)"
            " VALUES ($1, $2, $3, $4::text[]::user_role[]) RETURNING id",
            name,
            role,
            team_id,
            list(also),
            exists=f"user {name} already exists",
            invalid=f"user name {name!r} must be 1-64 letters, digits, '.', '_', '@' or '-'",
        )
        await _insert_token(conn, int(user_id), token, ttl)
    return User(int(user_id), name, role, team_id, also=also), token


async def team_id_of(conn: asyncpg.Connection, team: str) -> int:
    team_id = await conn.fetchval("SELECT id FROM teams WHERE name = $1", team)
    if team_id is None:
        raise NotFound(f"no team named {team} (torch team add NAME --force FORCE)")
    return int(team_id)


async def add_team(conn: asyncpg.Connection, name: str, force: str) -> int:
    await conn.execute("INSERT INTO forces (name) VALUES ($1) ON CONFLICT DO NOTHING", force)
    return await db.insert_id(
        conn,
        "INSERT INTO teams (name, force) VALUES ($1, $2) RETURNING id",
        name,
        force,
        exists=f"team {name} already exists",
        invalid="team and force names must be 1-64 letters, digits, spaces, '.', '_' or '-'",
    )


async def _insert_token(
    conn: asyncpg.Connection, user_id: int, token: str, ttl: timedelta | None
) -> None:
    await conn.execute(
        "INSERT INTO api_tokens (user_id, token_hash, expires_at) VALUES ($1, $2, now() + $3)",
        user_id,
        token_hash(token),
        ttl,
    )


async def issue_token(conn: asyncpg.Connection, name: str, ttl: timedelta | None) -> str:
    """A further token for an existing user (its earlier tokens stay valid until revoked)."""
    user = await user_named(conn, name)
    if user is None:
        raise NotFound(f"no active user named {name}")
    token = secrets.token_urlsafe(32)
    await _insert_token(conn, user.id, token, ttl)
    return token


async def revoke_tokens(conn: asyncpg.Connection, name: str) -> int:
    """Revoke every live token of the user; returns how many."""
    n = await _revoke(conn, name)
    if n == 0 and await user_named(conn, name) is None:
        raise NotFound(f"no active user named {name}")
    return n


async def _revoke(conn: asyncpg.Connection, name: str) -> int:
    status = await conn.execute(
        "UPDATE api_tokens t SET revoked_at = now() FROM users u"
        " WHERE u.id = t.user_id AND u.name = $1 AND t.revoked_at IS NULL",
        name,
    )
    return db.affected(status)


async def disable(conn: asyncpg.Connection, name: str) -> int:
    """A leaver: the user can no longer sign in nor be given a token, and every live token
    is revoked; their audit records stay theirs. Returns the tokens revoked."""
    async with conn.transaction():
        user_id = await conn.fetchval(
            "UPDATE users SET disabled_at = now() WHERE name = $1 AND disabled_at IS NULL"
            " RETURNING id",
            name,
        )
        if user_id is None:
            raise NotFound(f"no active user named {name}")
        return await _revoke(conn, name)


async def move(conn: asyncpg.Connection, name: str, team: str) -> tuple[str, str]:
    """Put the user in another team (and so, perhaps, another force): what they may see
    changes with their next request. Returns the old team's name and the new one's."""
    old = await change_team(conn, "users", "x.name = $1 AND x.disabled_at IS NULL", name, team)
    if old is None:
        raise NotFound(f"no active user named {name}")
    return old, team


async def change_team(
    conn: asyncpg.Connection, table: Literal["users", "subjects"], where: str, key: str, team: str
) -> str | None:
    """Put the row `x` of `table` that `where` picks ($1: key) in `team`; the name of the
    team it was in, or None when no row was picked."""
    team_id = await team_id_of(conn, team)
    old = await conn.fetchval(
        f"UPDATE {table} x SET team_id = $2 FROM {table} o JOIN teams t ON t.id = o.team_id"
        f" WHERE x.id = o.id AND {where} RETURNING t.name",
        key,
        team_id,
    )
    return None if old is None else str(old)


# A user as every caller sees them: roles, team and force.
USER = """
SELECT u.id, u.name, u.role::text AS role, u.team_id, tm.force, u.also::text[] AS also
FROM users u JOIN teams tm ON tm.id = u.team_id
"""


def _user(row: asyncpg.Record | None) -> User | None:
    return None if row is None else User(**{**dict(row), "also": tuple(row["also"])})


async def user_for_token(conn: asyncpg.Connection, token: str) -> User | None:
    row = await conn.fetchrow(
        USER
        + """
        JOIN api_tokens t ON t.user_id = u.id
        WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.disabled_at IS NULL
          AND (t.expires_at IS NULL OR t.expires_at > now())
        """,
        token_hash(token),
    )
    return _user(row)


async def audit(
    conn: asyncpg.Connection,
    user: User,
    method: str,
    route: str,
    subject_ids: Sequence[int],
    *,
    crime_ref: str | None = None,
    reason: str | None = None,
    query_id: UUID | None = None,
) -> None:
    await conn.execute(
        "INSERT INTO audit_log (user_id, method, route, crime_ref, reason, query_id, subject_ids)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        user.id,
        method,
        route,
        crime_ref,
        reason,
        query_id,
        list(subject_ids),
    )


async def name_of(conn: asyncpg.Connection, user_id: int) -> str:
    return str(await conn.fetchval("SELECT name FROM users WHERE id = $1", user_id))


async def user_named(conn: asyncpg.Connection, name: str) -> User | None:
    row = await conn.fetchrow(USER + " WHERE u.name = $1 AND u.disabled_at IS NULL", name)
    return _user(row)

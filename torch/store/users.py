"""Users, their bearer tokens, and the audit trail."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

import asyncpg

from torch.errors import InvalidInput
from torch.store import db

ROLES = ("officer", "probation", "supervisor", "admin")


@dataclass(frozen=True, slots=True)
class User:
    id: int
    name: str
    role: str


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def add_user(conn: asyncpg.Connection, name: str, role: str) -> tuple[User, str]:
    """Create a user and a first token; the token is returned once and never stored."""
    if role not in ROLES:
        raise InvalidInput(f"role {role!r} is not one of {', '.join(ROLES)}")
    token = secrets.token_urlsafe(32)
    async with conn.transaction():
        user_id = await db.insert_id(
            conn,
            "INSERT INTO users (name, role) VALUES ($1, $2) RETURNING id",
            name,
            role,
            exists=f"user {name} already exists",
            invalid=f"user name {name!r} must be 1-64 letters, digits, '.', '_', '@' or '-'",
        )
        await conn.execute(
            "INSERT INTO api_tokens (user_id, token_hash) VALUES ($1, $2)",
            user_id,
            token_hash(token),
        )
    return User(int(user_id), name, role), token


async def user_for_token(conn: asyncpg.Connection, token: str) -> User | None:
    row = await conn.fetchrow(
        """
        SELECT u.id, u.name, u.role::text AS role
        FROM api_tokens t JOIN users u ON u.id = t.user_id
        WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.disabled_at IS NULL
          AND (t.expires_at IS NULL OR t.expires_at > now())
        """,
        token_hash(token),
    )
    return None if row is None else User(row["id"], row["name"], row["role"])


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
    row = await conn.fetchrow(
        "SELECT id, name, role::text AS role FROM users WHERE name = $1 AND disabled_at IS NULL",
        name,
    )
    return None if row is None else User(row["id"], row["name"], row["role"])

"""Alembic migrations: the only way the schema changes."""

from __future__ import annotations

from alembic import op
from sqlalchemy.util import await_only


def execute_script(sql: str) -> None:
    """Run several SQL statements (and function bodies) as one script.

    SQLAlchemy prepares each statement, which PostgreSQL allows for one
    statement only; asyncpg's simple-query path takes a whole script.
    """
    driver = op.get_bind().connection.driver_connection
    assert driver is not None
    await_only(driver.execute(sql))

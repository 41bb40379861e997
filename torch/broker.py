"""Broker accounts: who may connect to Mosquitto, and what each may publish or read.

Every tag has its own account, named by its serial, that may publish only on its
own topics; the services have accounts of their own kinds. Nothing anonymous is
accepted. The password and access-list files are rendered here, in Mosquitto's
formats, and written by `torch broker sync`, which then asks the broker to reload.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import signal
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import asyncpg

ITERATIONS = 1000  # PBKDF2-SHA512; the passwords are 32 random bytes, not words


class AccountKind(StrEnum):
    DEVICE = "device"  # a tag: publishes on tags/{serial}/... and owntracks/{serial}/...
    INGEST = "ingest"  # the ingest worker: reads what tags publish, publishes alerts
    LISTENER = "listener"  # a consumer of alerts, e.g. a control room's display
    RELAY = "relay"  # a trusted gateway that forwards many tags (a vendor's platform)
    VICTIM = "victim"  # a protected person's device, as victim.{ref}: victims/{ref}/fixes


VICTIM_PREFIX = "victim."


# What each kind may do; {name} is the account's name.
RULES: dict[AccountKind, tuple[tuple[str, str], ...]] = {
    AccountKind.DEVICE: (("write", "tags/{name}/#"),),  # and its OwnTracks topics, below
    AccountKind.INGEST: (
        ("read", "tags/#"),
        ("read", "owntracks/#"),
        ("read", "victims/#"),
        ("write", "torch/alerts/#"),
    ),
    AccountKind.LISTENER: (("read", "torch/alerts/#"),),
    AccountKind.RELAY: (("write", "tags/#"), ("write", "owntracks/#")),
    AccountKind.VICTIM: (("write", "victims/{name}/fixes"),),
}


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    kind: AccountKind
    password_hash: str


def new_password() -> str:
    return secrets.token_urlsafe(32)


def password_hash(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """Mosquitto's PBKDF2-SHA512 form ($7$), as mosquitto_passwd writes it."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    b64 = base64.b64encode
    return f"$7${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def password_matches(password: str, stored: str) -> bool:
    """Whether `password` is the one hashed as `stored` (password_hash's form)."""
    try:
        _, kind, iterations, salt, _digest = stored.split("$")
        expected = password_hash(password, base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return kind == "7" and hmac.compare_digest(expected, stored)


def password_file(accounts: Iterable[Account]) -> str:
    return "".join(f"{a.name}:{a.password_hash}\n" for a in accounts)


def acl_file(accounts: Iterable[Account]) -> str:
    """One block per account; a client may do only what its block allows."""
    lines = ["# Written by `torch broker sync`; edits here are overwritten.", ""]
    for a in accounts:
        lines.append(f"user {a.name}")
        name = a.name.removeprefix(VICTIM_PREFIX) if a.kind is AccountKind.VICTIM else a.name
        lines += [f"topic {access} {topic.format(name=name)}" for access, topic in RULES[a.kind]]
        if a.kind is AccountKind.DEVICE:
            lines += [f"topic write {t}" for t in owntracks_topics(a.name)]
        lines.append("")
    return "\n".join(lines)


def owntracks_topics(serial: str) -> list[str]:
    """The OwnTracks topics that name this serial: owntracks/{user}/{device} is read as the
    serial user-device, so a phone registered as "jo-phone" publishes on owntracks/jo/phone.
    Every split at a '-' names the same serial, so each is the tag's own."""
    parts = serial.split("-")
    return [f"owntracks/{'-'.join(parts[:i])}/{'-'.join(parts[i:])}" for i in range(1, len(parts))]


def write_files(directory: Path, accounts: list[Account], mode: int = 0o600) -> bool:
    """Write passwd and acl into the broker's directory, each replaced whole; by default
    readable by the broker's own user (the directory's owner) and nobody else. Returns
    whether either changed (a file already as it should be is left alone)."""
    directory.mkdir(parents=True, exist_ok=True)
    owner = directory.stat()
    changed = False
    for name, text in (("passwd", password_file(accounts)), ("acl", acl_file(accounts))):
        if _holds(directory / name, text, mode, owner.st_uid):
            continue
        tmp = directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(tmp, mode)
        if os.geteuid() == 0:
            os.chown(tmp, owner.st_uid, owner.st_gid)
        tmp.replace(directory / name)
        changed = True
    return changed


def _holds(path: Path, text: str, mode: int, uid: int) -> bool:
    """Whether the file already holds `text`, with `mode`, and (where we may chown) is the
    broker's own: else the broker could not read it when it next starts."""
    try:
        found = path.stat()
        mine = found.st_uid == uid or os.geteuid() != 0
        return mine and found.st_mode & 0o777 == mode and path.read_text() == text
    except FileNotFoundError:
        return False


def reload(directory: Path) -> bool:
    """Ask a running broker that keeps its pid in the directory to re-read its files.
    Only a Mosquitto process is signalled: a pid file left by a broker that died may name
    another process since, which SIGHUP would stop."""
    try:
        pid = int((directory / "mosquitto.pid").read_text().strip())
        if Path(f"/proc/{pid}/comm").read_text().strip() != "mosquitto":
            return False
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return False
    return True


class Synced(NamedTuple):
    accounts: int
    changed: bool  # the files changed
    reloaded: bool  # and a running broker was asked to re-read them


async def sync(conn: asyncpg.Connection, directory: Path, mode: int = 0o600) -> Synced:
    """Write the files for the accounts in the database and, where they changed, have the
    broker reload them. Reloads are not free: each re-checks every connected client, and
    Mosquitto 2.0.11 has crashed in them (docs/operations.md), so none is asked for
    nothing."""
    from torch.store import broker as store

    accounts = await store.accounts(conn)
    changed = write_files(directory, accounts, mode)
    return Synced(len(accounts), changed, changed and reload(directory))

"""The `torch` command: one entry point for operators and scripts.

Exit codes: 0 done, 1 refused (the message says why), 2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from torch import logs, memory
from torch.errors import NotFound, TorchError
from torch.fixes import service_time
from torch.settings import Settings
from torch.words import plural

log = logging.getLogger("torch")

Handler = Callable[[argparse.Namespace, Settings], int]


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    memory.keep_freed_memory()  # correlation works on large arrays (torch.memory)
    try:
        settings = Settings()
    except ValueError as err:
        print(f"error: configuration: {err}", file=sys.stderr)
        return 1
    logs.configure(settings.log_format, settings.log_level)
    try:
        return int(args.handler(args, settings))
    except TorchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except ConnectionError as err:  # PostgreSQL (or the broker) not there
        print(f"error: cannot connect: {err}; is the service running?", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="torch", description="TORCH: GPS tag tracking for IOM.")
    sub = p.add_subparsers(required=True, metavar="COMMAND")
    _add_db_commands(sub)
    _add_service_commands(sub)
    _add_registry_commands(sub)
    _add_broker_commands(sub)
    _add_correlate_command(sub)
    _add_user_commands(sub)
    _add_retention_commands(sub)
    _add_record_commands(sub)
    from simulators.cli import add_parser as add_sim_parser

    add_sim_parser(sub)
    return p


def _add_db_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The database's schema, backups and distribution."""
    db = sub.add_parser("db", help="database schema").add_subparsers(
        required=True, metavar="ACTION"
    )
    up = db.add_parser("upgrade", help="run the migrations up to REVISION")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(handler=_db_upgrade)
    bk = db.add_parser("backup", help="pg_dump the database (custom format) into FILE")
    bk.add_argument("file", type=Path)
    bk.set_defaults(handler=_db_backup)
    rs = db.add_parser(
        "restore", help="restore a `torch db backup` FILE into the (empty) configured database"
    )
    rs.add_argument("file", type=Path)
    rs.set_defaults(handler=_db_restore)
    ds = db.add_parser(
        "distribute", help="distribute the tables over a Citus cluster (docs/citus.md)"
    )
    ds.add_argument("--print", action="store_true", help="print the statements, run nothing")
    ds.set_defaults(handler=_db_distribute)


def _add_service_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The long-running services."""
    sub.add_parser("ingest", help="run the ingest worker (MQTT -> PostGIS)").set_defaults(
        handler=_ingest
    )
    sub.add_parser("api", help="run the HTTP API").set_defaults(handler=_api)


def _add_registry_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Who wears what: subjects, teams, protected persons, devices."""
    subject = sub.add_parser("subject", help="subjects").add_subparsers(
        required=True, metavar="ACTION"
    )
    sa = subject.add_parser("add", help="register a subject by pseudonymous reference")
    sa.add_argument("ref", help="pseudonymous reference, e.g. IOM-0042")
    sa.add_argument("--name", help="display name (never logged)")
    sa.add_argument("--team", default="default", help="the team whose caseload it is")
    sa.set_defaults(handler=_subject_add)
    sm = subject.add_parser(
        "move", help="transfer a subject to another team's caseload (perhaps another force's)"
    )
    sm.add_argument("ref")
    sm.add_argument("--team", required=True, help="the team taking the caseload over")
    sm.set_defaults(handler=_subject_move)

    team = sub.add_parser("team", help="teams (caseloads) and their forces").add_subparsers(
        required=True, metavar="ACTION"
    )
    ta = team.add_parser("add", help="a team; its probation staff see only its subjects")
    ta.add_argument("name")
    ta.add_argument("--force", required=True, help="the force; its supervisors see the team")
    ta.set_defaults(handler=_team_add)

    victim = sub.add_parser("victim", help="protected persons").add_subparsers(
        required=True, metavar="ACTION"
    )
    va = victim.add_parser(
        "add",
        help="register a protected person by pseudonymous reference, with a broker account "
        "for their device (user name victim.REF); prints its password as the last line",
    )
    va.add_argument("ref")
    va.add_argument("--officer", action="append", default=[], help="a named officer (user)")
    va.set_defaults(handler=_victim_add)
    vo = victim.add_parser(
        "officer",
        help="name a user as one of the protected person's officers (who may see where they"
        " are), or with --remove no longer",
    )
    vo.add_argument("ref")
    vo.add_argument("name", help="the user")
    vo.add_argument("--remove", action="store_true", help="no longer one of their officers")
    vo.set_defaults(handler=_victim_officer)
    vc = victim.add_parser(
        "credentials",
        help="give the protected person's device (a new phone) a new broker password; prints"
        " it as the last line",
    )
    vc.add_argument("ref")
    vc.set_defaults(handler=_victim_credentials)

    device = sub.add_parser("device", help="devices").add_subparsers(
        required=True, metavar="ACTION"
    )
    da = device.add_parser(
        "add",
        help="register a tag and its broker account (user name: the serial); prints the "
        "broker password as the last line",
    )
    da.add_argument("serial")
    da.add_argument("--model")
    da.set_defaults(handler=_device_add)
    dc = device.add_parser(
        "credentials", help="give a tag a new broker password; prints it as the last line"
    )
    dc.add_argument("serial")
    dc.set_defaults(handler=_device_credentials)

    assign = sub.add_parser("assign", help="record that a subject wears a device")
    assign.add_argument("serial")
    assign.add_argument("ref")
    assign.add_argument("--from", dest="start", type=timestamp_arg, help="RFC 3339; default now")
    assign.add_argument("--to", dest="end", type=timestamp_arg, help="RFC 3339; default open")
    assign.add_argument("--user", help="the user on whose word it is recorded (kept with it)")
    assign.set_defaults(handler=_assign)
    unassign = sub.add_parser(
        "unassign",
        help="record that a device was taken off: end its assignment at T (default now)",
    )
    unassign.add_argument("serial")
    unassign.add_argument("--at", type=timestamp_arg, help="RFC 3339; default now")
    unassign.add_argument("--user", help="the user on whose word it is recorded (kept with it)")
    unassign.set_defaults(handler=_unassign)
    listing = sub.add_parser(
        "assignments",
        help="which tag each subject wore when, and when and by whom that was recorded"
        " (tab-separated)",
    )
    listing.add_argument("--serial", help="only this tag's")
    listing.add_argument("--ref", help="only this subject's")
    listing.set_defaults(handler=_assignments)


def _add_broker_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The broker's accounts."""
    broker = sub.add_parser("broker", help="the broker's accounts and access list").add_subparsers(
        required=True, metavar="ACTION"
    )
    broker.add_parser(
        "sync", help="write Mosquitto's password and access-list files and reload it"
    ).set_defaults(handler=_broker_sync)
    ba = broker.add_parser(
        "account", help="a service account; prints its password as the last line"
    )
    ba.add_argument("name")
    ba.add_argument("--kind", required=True, choices=["ingest", "listener", "relay"])
    ba.add_argument(
        "--password-env",
        metavar="VAR",
        help="take the password from this environment variable (for provisioning) instead of"
        " making one",
    )
    ba.set_defaults(handler=_broker_account)
    bc = broker.add_parser(
        "check",
        help="whether a live account's password is the one in an environment variable; exits 1"
        " if not",
    )
    bc.add_argument("name")
    bc.add_argument("--password-env", metavar="VAR", required=True)
    bc.set_defaults(handler=_broker_check)
    br = broker.add_parser("revoke", help="refuse an account (a tag's or a service's)")
    br.add_argument("name")
    br.set_defaults(handler=_broker_revoke)


def _add_correlate_command(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Bulk correlation from the command line."""
    co = sub.add_parser("correlate", help="correlate a CSV of crimes with the subjects' tracks")
    co.add_argument(
        "crimes",
        type=Path,
        help="CSV: crime_ref, offence, lat, lon (or easting, northing), from, to, radius_m",
    )
    co.add_argument("--user", required=True, help="the API user on whose behalf (audited)")
    co.add_argument("--reason", required=True, help="why the correlation is run (audited)")
    co.add_argument("--out", type=Path, help="write the findings here (default: standard output)")
    co.set_defaults(handler=_correlate)


def _add_user_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """API users and their tokens."""
    user = sub.add_parser("user", help="API users").add_subparsers(required=True, metavar="ACTION")
    ua = user.add_parser("add", help="create a user; prints a bearer token as the last line")
    ua.add_argument("name")
    ua.add_argument(
        "--role",
        required=True,
        action="append",
        choices=["officer", "probation", "supervisor", "admin"],
        help="the user's role; give it again for further roles (an admin who may also read "
        "location data as a supervisor: --role admin --role supervisor)",
    )
    ua.add_argument(
        "--team",
        default="default",
        help="probation staff see this team's subjects; the others, its force's",
    )
    ua.set_defaults(handler=_user_add)
    ut = user.add_parser("token", help="issue a further token; prints it as the last line")
    ut.add_argument("name")
    ut.set_defaults(handler=_user_token)
    ur = user.add_parser("revoke", help="revoke every token of a user at once")
    ur.add_argument("name")
    ur.set_defaults(handler=_user_revoke)
    um = user.add_parser("move", help="put a user in another team (and perhaps force)")
    um.add_argument("name")
    um.add_argument("--team", required=True)
    um.set_defaults(handler=_user_move)
    ud = user.add_parser(
        "disable",
        help="a leaver: revoke every token and refuse new ones; their audit records stay",
    )
    ud.add_argument("name")
    ud.set_defaults(handler=_user_disable)


def _add_retention_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """How long fixes are kept: retention, maintenance, holds."""
    ret = sub.add_parser("retention", help="purging fixes past retention").add_subparsers(
        required=True, metavar="ACTION"
    )
    rr = ret.add_parser(
        "run", help="drop the day partitions older than TORCH_RETENTION_DAYS, keeping held fixes"
    )
    rr.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    rr.add_argument("--user", help="the user on whose authority (audited); needed unless --dry-run")
    rr.set_defaults(handler=_retention_run)

    mt = sub.add_parser(
        "maintain",
        help="the maintenance loop: fix partitions made days ahead, retention applied",
    )
    mt.add_argument(
        "--every", type=at_least(0.0, strictly=True), default=3600, help="seconds between rounds"
    )
    mt.add_argument(
        "--days-ahead", type=at_least(1), default=7, help="partitions made this far ahead"
    )
    mt.add_argument(
        "--user", help="the user on whose authority retention purges (audited); without one, "
        "partitions only",
    )  # fmt: skip
    mt.add_argument("--once", action="store_true", help="one round, then exit (for cron)")
    mt.set_defaults(handler=_maintain)

    force = sub.add_parser("force", help="forces").add_subparsers(required=True, metavar="ACTION")
    fr = force.add_parser("retention", help="how long a force keeps its subjects' fixes")
    fr.add_argument("name")
    which = fr.add_mutually_exclusive_group(required=True)
    which.add_argument("--days", type=int, help="keep fixes this many days")
    which.add_argument("--default", action="store_true", help="follow TORCH_RETENTION_DAYS")
    fr.set_defaults(handler=_force_retention)

    hold = sub.add_parser("hold", help="legal holds").add_subparsers(
        required=True, metavar="ACTION"
    )
    ha = hold.add_parser("add", help="keep a subject's fixes over a range past retention")
    ha.add_argument("ref", help="the subject's reference")
    ha.add_argument("--from", dest="start", type=timestamp_arg, required=True)
    ha.add_argument("--to", dest="end", type=timestamp_arg, required=True)
    ha.add_argument("--case", required=True, help="the case reference")
    ha.add_argument("--reason", required=True)
    ha.add_argument("--user", required=True, help="the user placing it (audited)")
    ha.set_defaults(handler=_hold_add)
    hr = hold.add_parser("release", help="release a hold: its fixes then follow retention")
    hr.add_argument("id", type=int)
    hr.add_argument("--reason", required=True)
    hr.add_argument("--user", required=True, help="the user releasing it (audited)")
    hr.set_defaults(handler=_hold_release)
    hold.add_parser("list", help="every hold, live or released").set_defaults(handler=_hold_list)


def _add_record_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """The audit trail, dead letters and track tiles."""
    audit = sub.add_parser("audit", help="the audit trail").add_subparsers(
        required=True, metavar="ACTION"
    )
    audit.add_parser(
        "verify",
        help="walk the hash chain; names every changed, removed or reordered record "
        "(exit 3 if any)",
    ).set_defaults(handler=_audit_verify)

    dl = sub.add_parser("deadletters", help="rejected messages").add_subparsers(
        required=True, metavar="ACTION"
    )
    ls = dl.add_parser("list", help="list dead letters, newest first")
    ls.add_argument("--reason", help="only this reason code, e.g. unknown_serial")
    ls.add_argument("--serial")
    ls.add_argument("--limit", type=at_least(1), default=50)
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    ls.set_defaults(handler=_deadletters_list)
    rp = dl.add_parser("replay", help="store unknown-serial letters whose device is now registered")
    rp.add_argument("--serial", help="only this serial")
    rp.set_defaults(handler=_deadletters_replay)

    tiles = sub.add_parser("tiles", help="the track tiles crime-scene queries read").add_subparsers(
        required=True, metavar="ACTION"
    )
    tr = tiles.add_parser(
        "rebuild", help="rebuild every tile from the fixes (after bulk loads or restores)"
    )
    tr.set_defaults(handler=_tiles_rebuild)


T = TypeVar("T", int, float)


def at_least(least: T, *, strictly: bool = False) -> Callable[[str], T]:
    """An argument type: a number of the type of `least`, not below it (above it, strictly)."""

    def number(text: str) -> T:
        try:
            value = type(least)(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if strictly and not value > least:  # NaN too
            raise argparse.ArgumentTypeError(f"{text} is not more than {least:g}")
        if not value >= least:
            raise argparse.ArgumentTypeError(f"{text} is less than {least:g}")
        return value

    return number


def timestamp_arg(text: str) -> datetime:
    """An RFC 3339 time with an offset (torch.fixes.service_time), as an argument type."""
    try:
        return service_time(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run_on_db(
    settings: Settings, work: Callable[[Any], Awaitable[Any]], admin: bool = False
) -> Any:
    """Run `work(conn)` on one database connection (the owner's, with admin)."""
    from torch.store import db

    url = settings.admin_database_url if admin else settings.database_url

    async def go() -> Any:
        conn = await db.connect(url.get_secret_value())
        try:
            return await work(conn)
        finally:
            await conn.close()

    return asyncio.run(go())


def _db_upgrade(args: argparse.Namespace, settings: Settings) -> int:
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
    from alembic import command
    from alembic.config import Config
    from alembic.util import CommandError

    import migrations
    from torch.errors import InvalidInput
    from torch.store.db import alembic_url

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    cfg.attributes["url"] = alembic_url(settings.admin_database_url.get_secret_value())
    try:
        command.upgrade(cfg, args.revision)
    except CommandError as err:  # no such revision, say
        raise InvalidInput(f"cannot upgrade to {args.revision!r}: {err}") from None
    return 0


def _ingest(_args: argparse.Namespace, settings: Settings) -> int:
    from ingest.worker import run

    run(settings)
    return 0


def _api(_args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from api.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        loop="uvloop",  # asyncpg reads the tiles of an answer (megabytes) faster on it
        http="httptools",
        log_config=None,  # uvicorn's own lines go through torch.logs like the rest
        access_log=False,  # the API logs each request itself, without query strings
    )
    return 0


def _tiles_rebuild(_args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import tiles

    def shown(done: int, total: int) -> None:
        print(f"\rday {done} of {total}", end="", file=sys.stderr, flush=True)

    made = run_on_db(settings, lambda c: tiles.rebuild(c, shown))
    print(file=sys.stderr)
    print(f"{made} track tiles built")
    return 0


def _subject_add(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import registry

    subject_id = run_on_db(
        settings, lambda c: registry.add_subject(c, args.ref, args.name, args.team)
    )
    print(f"subject {args.ref} added (id {subject_id})")
    return 0


def _subject_move(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import registry

    old, new = run_on_db(settings, lambda c: registry.move_subject(c, args.ref, args.team))
    print(f"subject {args.ref} moved from team {old} to team {new}")
    return 0


def _team_add(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import users

    team_id = run_on_db(settings, lambda c: users.add_team(c, args.name, args.force))
    print(f"team {args.name} of force {args.force} added (id {team_id})")
    return 0


def _device_add(args: argparse.Namespace, settings: Settings) -> int:
    from torch.broker import AccountKind
    from torch.store import broker, registry

    async def work(conn: Any) -> tuple[int, str]:
        async with conn.transaction():
            device_id = await registry.add_device(conn, args.serial, args.model)
            password = await broker.set_account(conn, args.serial, AccountKind.DEVICE)
        await sync_broker(conn, settings)
        return device_id, password

    device_id, password = run_on_db(settings, work)
    print(f"device {args.serial} added (id {device_id}); broker user {args.serial}, password:")
    print(password)
    return 0


def _victim_add(args: argparse.Namespace, settings: Settings) -> int:
    from torch.broker import VICTIM_PREFIX, AccountKind
    from torch.store import broker, victims

    account = VICTIM_PREFIX + args.ref

    async def work(conn: Any) -> tuple[int, str]:
        async with conn.transaction():
            victim_id = await victims.add(conn, args.ref)
            for name in args.officer:
                await victims.name_officer(conn, victim_id, name)
            password = await broker.set_account(conn, account, AccountKind.VICTIM)
        await sync_broker(conn, settings)
        return victim_id, password

    victim_id, password = run_on_db(settings, work)
    print(
        f"protected person {args.ref} added (id {victim_id}); their device publishes on"
        f" victims/{args.ref}/fixes as broker user {account}, password:"
    )
    print(password)
    return 0


def _victim_officer(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import victims

    async def work(conn: Any) -> bool:
        async with conn.transaction():
            victim_id = await victims.id_of(conn, args.ref)
            if args.remove:
                return await victims.unname_officer(conn, victim_id, args.name)
            await victims.name_officer(conn, victim_id, args.name)
            return True

    changed = run_on_db(settings, work)
    if args.remove:
        state = "no longer one" if changed else "was not one"
        print(f"{args.name} {state} of the officers of protected person {args.ref}")
    else:
        print(f"{args.name} is one of the officers of protected person {args.ref}")
    return 0


def _victim_credentials(args: argparse.Namespace, settings: Settings) -> int:
    from torch.broker import VICTIM_PREFIX, AccountKind
    from torch.store import broker, victims

    account = VICTIM_PREFIX + args.ref

    async def work(conn: Any) -> str:
        await victims.id_of(conn, args.ref)
        password = await broker.set_account(conn, account, AccountKind.VICTIM)
        await sync_broker(conn, settings)
        return password

    password = run_on_db(settings, work)
    print(f"new broker password for {account} (the old one no longer works):")
    print(password)
    return 0


def _device_credentials(args: argparse.Namespace, settings: Settings) -> int:
    from torch.broker import AccountKind
    from torch.errors import NotFound
    from torch.store import broker, registry

    async def work(conn: Any) -> str:
        if not await registry.device_ids(conn, [args.serial]):
            raise NotFound(f"no device with serial {args.serial}")
        password = await broker.set_account(conn, args.serial, AccountKind.DEVICE)
        await sync_broker(conn, settings)
        return password

    password = run_on_db(settings, work)
    print(f"new broker password for {args.serial} (the old one no longer works):")
    print(password)
    return 0


async def sync_broker(conn: Any, settings: Settings) -> None:
    """Write the broker's password and access-list files and have it reload them."""
    from torch import broker

    done = await broker.sync(conn, settings.broker_dir, settings.broker_files_permissions)
    if done.changed and not done.reloaded:
        log.warning(
            "broker files in %s (%d accounts) written, but no broker runs from there: the"
            " accounts take effect when one that reads them starts (TORCH_BROKER_DIR)",
            settings.broker_dir,
            done.accounts,
        )
        return
    outcome = "written; broker reloaded" if done.changed else "unchanged; broker not reloaded"
    log.info("broker files in %s (%d accounts) %s", settings.broker_dir, done.accounts, outcome)


def _broker_sync(_args: argparse.Namespace, settings: Settings) -> int:
    run_on_db(settings, lambda c: sync_broker(c, settings))
    return 0


def _broker_account(args: argparse.Namespace, settings: Settings) -> int:
    from torch.broker import AccountKind
    from torch.errors import InvalidInput
    from torch.store import broker

    given = None
    if args.password_env:
        given = os.environ.get(args.password_env)
        if not given:
            raise InvalidInput(f"the environment variable {args.password_env} is empty or unset")

    async def work(conn: Any) -> str:
        password = await broker.set_account(conn, args.name, AccountKind(args.kind), given)
        await sync_broker(conn, settings)
        return password

    password = run_on_db(settings, work)
    if given:
        print(f"broker account {args.name} ({args.kind}) set from ${args.password_env}")
    else:
        print(f"broker account {args.name} ({args.kind}); password:")
        print(password)
    return 0


def _broker_check(args: argparse.Namespace, settings: Settings) -> int:
    from torch.broker import password_matches
    from torch.store import broker

    given = os.environ.get(args.password_env) or ""
    stored = run_on_db(settings, lambda c: broker.live_hash(c, args.name))
    if stored is None:
        print(f"no live broker account named {args.name}")
        return 1
    if not password_matches(given, stored):
        print(f"broker account {args.name}: ${args.password_env} is not its password")
        return 1
    print(f"broker account {args.name}: ${args.password_env} is its password")
    return 0


def _broker_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import broker

    async def work(conn: Any) -> None:
        await broker.revoke(conn, args.name)
        await sync_broker(conn, settings)

    run_on_db(settings, work)
    print(f"broker account {args.name} revoked")
    return 0


def _assign(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import registry

    start = args.start or datetime.now(UTC)

    async def work(conn: Any) -> Any:
        by = await _user_id(conn, args.user)
        return await registry.assign(conn, args.serial, args.ref, start, args.end, by)

    a = run_on_db(settings, work)
    end = a.end.isoformat() if a.end else "open end"
    print(f"device {a.serial} assigned to {a.subject_ref} from {a.start.isoformat()} to {end}")
    return 0


def _unassign(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import registry

    at = args.at or datetime.now(UTC)

    async def work(conn: Any) -> Any:
        return await registry.unassign(conn, args.serial, at, await _user_id(conn, args.user))

    a = run_on_db(settings, work)
    print(f"device {a.serial} taken off {a.subject_ref} at {at.isoformat()}")
    return 0


async def _user_id(conn: Any, name: str | None) -> int | None:
    """The id of the active user of that name, on whose word the register is written; None
    if no name is given."""
    return None if name is None else int((await _acting(conn, name)).id)


def _assignments(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import registry

    rows = run_on_db(settings, lambda c: registry.history(c, args.serial, args.ref))
    print("serial\tsubject\tfrom\tto\trecorded\tend recorded\trecorded by\tend recorded by")
    for r in rows:
        end = r.end.isoformat() if r.end else "open"
        recorded = [t.isoformat() if t else "-" for t in (r.recorded_at, r.end_recorded_at)]
        by = [name or "-" for name in (r.recorded_by, r.end_recorded_by)]
        print("\t".join([r.serial, r.subject_ref, r.start.isoformat(), end, *recorded, *by]))
    return 0


def _correlate(args: argparse.Namespace, settings: Settings) -> int:
    import time

    from torch import correlate
    from torch.errors import InvalidInput, NotFound
    from torch.store import users

    try:
        text = args.crimes.read_bytes().decode("utf-8")
    except OSError as err:
        raise InvalidInput(f"cannot read {args.crimes}: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InvalidInput(f"{args.crimes} is not UTF-8 text: save it as CSV UTF-8") from None
    crimes, errors = correlate.parse(
        text,
        settings.service_area,
        timedelta(days=settings.proximity_max_window_days),
    )
    for e in errors:
        print(f"{args.crimes}:{e.line}: {e.message}", file=sys.stderr)
    started = time.monotonic()

    async def progress(done: int) -> None:
        rate = done / max(time.monotonic() - started, 1e-9)
        print(
            f"\rcorrelated {done:,} of {len(crimes):,} crimes ({rate:,.0f}/s)",
            end="",
            file=sys.stderr,
            flush=True,
        )

    async def work(conn: Any) -> list[dict[str, Any]]:
        user = await users.user_named(conn, args.user)
        if user is None:
            raise NotFound(f"no user {args.user}")
        # each crime is read in a snapshot of its own (torch.nearby), then the record is kept
        found = await correlate.run_as_set(conn, settings, crimes, progress)
        async with conn.transaction():
            await users.audit(
                conn,
                user,
                "CLI",
                "torch correlate",
                sorted({f["subject_id"] for f in found}),
                reason=args.reason,
            )
        return found

    found = run_on_db(settings, work)
    print(file=sys.stderr)
    text = correlate.to_csv(found)
    if args.out:
        args.out.write_text(text)
    else:
        print(text, end="")
    print(
        f"{len(crimes):,} crimes, {len(errors):,} bad rows, {len(found):,} findings",
        file=sys.stderr,
    )
    return 0 if not errors else 1


def _user_add(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import users

    ttl = settings.token_ttl
    user, token = run_on_db(
        settings,
        lambda c: users.add_user(c, args.name, args.role[0], ttl, args.team, tuple(args.role[1:])),
    )
    print(
        f"user {user.name} added with role {', '.join((user.role, *user.also))} (id {user.id});"
        f" bearer token, valid for {settings.token_ttl_days} days:"
    )
    print(token)
    return 0


def _user_token(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import users

    token = run_on_db(settings, lambda c: users.issue_token(c, args.name, settings.token_ttl))
    print(f"a new bearer token for {args.name}, valid for {settings.token_ttl_days} days:")
    print(token)
    return 0


def _user_revoke(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import users

    n = run_on_db(settings, lambda c: users.revoke_tokens(c, args.name))
    print(f"revoked {plural(n, 'token')} of {args.name}")
    return 0


def _user_move(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import users

    old, new = run_on_db(settings, lambda c: users.move(c, args.name, args.team))
    print(f"user {args.name} moved from team {old} to team {new}")
    return 0


def _user_disable(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import users

    n = run_on_db(settings, lambda c: users.disable(c, args.name))
    print(f"user {args.name} disabled; revoked {plural(n, 'token')}")
    return 0


async def _acting(conn: Any, name: str | None) -> Any:
    from torch.errors import NotFound
    from torch.store import users

    user = await users.user_named(conn, name) if name else None
    if user is None:
        raise NotFound(f"no active user named {name}")
    return user


def _retention_run(args: argparse.Namespace, settings: Settings) -> int:
    from torch.errors import InvalidInput
    from torch.store import retention

    if not args.dry_run and not args.user:
        raise InvalidInput("--user NAME is needed to purge (the purge is audited)")
    today = datetime.now(UTC).date()
    default = settings.retention_days

    async def work(conn: Any) -> retention.Applied:
        user = None if args.dry_run else await _acting(conn, args.user)
        return await retention.apply(conn, today, default, user)

    days, before, letters = run_on_db(settings, work, admin=True)
    verb = "would" if args.dry_run else "did"
    for d in days:
        if d.whole:
            print(f"{d.partition}: {verb} drop ({d.fixes} fixes)")
        else:
            print(f"{d.partition}: {verb} trim ({d.fixes - d.kept} fixes; {d.kept} kept)")
    purged, kept = retention.totals(days)
    print(
        f"retention {default} days unless a force sets its own: {len(days)} day partitions,"
        f" {purged} fixes {'to purge' if args.dry_run else 'purged'},"
        f" {kept} kept (legal hold or a longer retention)"
    )
    if letters:
        print(
            f"dead letters received before {before.date().isoformat()}:"
            f" {letters} {'to purge' if args.dry_run else 'purged'}"
        )
    return 0


def _shown(verb: str) -> Callable[[int, int], None]:
    def show(done: int, total: int) -> None:
        print(f"\r{verb} table {done} of {total}", end="", file=sys.stderr, flush=True)

    return show


def _db_backup(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import backup

    url = settings.admin_database_url.get_secret_value()
    tables = run_on_db(settings, backup.tables_with_data, admin=True)
    backup.dump(url, args.file, tables, _shown("dumped"))
    print(file=sys.stderr)
    print(f"{args.file}: {args.file.stat().st_size:,} bytes, {tables} tables")
    return 0


def _db_restore(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import backup

    if not args.file.is_file():
        raise NotFound(f"no backup at {args.file}")
    backup.restore(settings.admin_database_url.get_secret_value(), args.file, _shown("restored"))
    print(file=sys.stderr)
    print(f"restored {args.file} into the configured database")
    return 0


def _db_distribute(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import citus

    if args.print:
        print(citus.DISTRIBUTE.strip())
        return 0
    tables = run_on_db(settings, citus.distribute, admin=True)
    print(f"{tables} tables distributed or made reference tables")
    return 0


def _maintain(args: argparse.Namespace, settings: Settings) -> int:
    from torch import maintenance

    url = settings.admin_database_url.get_secret_value()  # DDL needs the owner
    if args.once:
        r = run_on_db(
            settings,
            lambda c: maintenance.once(
                c,
                args.days_ahead,
                settings.retention_days,
                args.user,
                settings.victim_retention_days,
            ),
            admin=True,
        )
        print(r.summary(args.days_ahead))
        return 0 if r.purged_days is not None or args.user is None else 1

    async def forever() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await maintenance.loop(
            url, args.every, args.days_ahead, settings.retention_days, args.user, stop,
            settings.victim_retention_days,
        )  # fmt: skip

    asyncio.run(forever())
    return 0


def _force_retention(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import retention

    days = None if args.default else args.days
    if days is not None and days < 1:
        from torch.errors import InvalidInput

        raise InvalidInput(f"--days {days} must be at least 1")
    run_on_db(settings, lambda c: retention.set_force_retention(c, args.name, days), admin=True)
    shown = f"{days} days" if days else f"the default ({settings.retention_days} days)"
    print(f"force {args.name}: fixes kept for {shown}")
    return 0


def _hold_add(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import retention

    async def work(conn: Any) -> int:
        user = await _acting(conn, args.user)
        return await retention.add_hold(
            conn, args.ref, args.start, args.end, args.case, args.reason, user
        )

    hold_id = run_on_db(settings, work)
    span = f"from {args.start.isoformat()} to {args.end.isoformat()}"
    print(f"legal hold {hold_id} on {args.ref} {span}")
    return 0


def _hold_release(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import retention

    async def work(conn: Any) -> None:
        await retention.release_hold(conn, args.id, args.reason, await _acting(conn, args.user))

    run_on_db(settings, work)
    print(f"legal hold {args.id} released")
    return 0


def _hold_list(_args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import retention

    for h in run_on_db(settings, retention.holds):
        state = f"released {h['released_at'].isoformat()}" if h["released_at"] else "in force"
        print(
            f"{h['id']}\t{h['ref']}\t{h['start'].isoformat()}\t{h['end'].isoformat()}"
            f"\t{h['case_ref']}\t{h['by']}\t{state}"
        )
    return 0


def _audit_verify(_args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import audit

    v = run_on_db(settings, audit.verify)
    for p in v.problems:
        print(f"record {p.seq}: {p.problem}")
    state = "intact" if v.intact else f"BROKEN: {len(v.problems)} problems"
    print(f"audit trail {state}; {v.records} records; head {v.head_seq} {v.head_hash}")
    return 0 if v.intact else 3


def _deadletters_list(args: argparse.Namespace, settings: Settings) -> int:
    from torch.store import deadletters

    rows = run_on_db(
        settings,
        lambda c: deadletters.listing(
            c, reason_code=args.reason, serial=args.serial, limit=args.limit
        ),
    )
    for r in rows:
        if args.json:
            print(
                json.dumps(
                    {
                        "id": r.id,
                        "received_at": r.received_at.isoformat(),
                        "topic": r.topic,
                        "reason_code": r.reason_code,
                        "reason": r.reason,
                        "item_index": r.item_index,
                        "serial": r.serial,
                        "replayed": r.replayed_at is not None,
                        "payload": r.payload.decode("utf-8", "replace"),
                    }
                )
            )
        else:
            item = "" if r.item_index is None else f"[{r.item_index}]"
            done = " (replayed)" if r.replayed_at else ""
            print(
                f"{r.id}\t{r.received_at:%Y-%m-%dT%H:%M:%SZ}\t{r.topic}{item}\t"
                f"{r.reason_code}: {r.reason}{done}"
            )
    return 0


def _deadletters_replay(args: argparse.Namespace, settings: Settings) -> int:
    from ingest.pipeline import Pipeline, limits_from

    async def go() -> Any:
        pipeline = Pipeline(
            settings.database_url.get_secret_value(), "replay", limits_from(settings)
        )
        try:
            return await pipeline.replay(args.serial)
        finally:
            await pipeline.close()

    w = asyncio.run(go())
    print(
        f"replayed: {w.fixes} fixes stored, {w.duplicates} duplicates, {w.events} events, "
        f"{w.dead_letters} new dead letters"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

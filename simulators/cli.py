"""`torch sim`: the command-line form of the simulator (other tools script these options)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulators.output import Progress
    from simulators.tag import Options, Out

from torch.cli import at_least, run_on_db, sync_broker, timestamp_arg


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "sim",
        help="simulate a fleet of tags",
        description="Simulate GPS tags worn by subjects in Hertfordshire, publishing to the "
        "broker (or writing JSON Lines) per the MQTT contract.",
    )
    p.add_argument("--tags", type=_tags, default=10, help="number of tags, 1 to 20,000")
    p.add_argument("--seed", type=int, default=1, help="same seed and options, same bytes")
    p.add_argument(
        "--pace",
        type=_not_negative,
        default=1.0,
        help="simulated seconds per second: 1 real time, 60 accelerated, 0 as fast "
        "as possible (backfill)",
    )
    p.add_argument(
        "--start",
        type=timestamp_arg,
        help="simulated start, RFC 3339 (default: now for --pace 1, else --hours before now)",
    )
    p.add_argument(
        "--hours", type=at_least(0.0, strictly=True), default=24.0, help="how much simulated time"
    )
    p.add_argument("--out", type=Path, help="write JSON Lines to this file instead of publishing")
    p.add_argument("--replay", type=Path, help="publish a JSON Lines file written by --out")
    p.add_argument("--scenario", help="run a scripted scenario (see --list-scenarios)")
    p.add_argument("--truth", type=Path, help="with --scenario: write its ground truth here")
    p.add_argument("--list-scenarios", action="store_true", help="list the scenarios and exit")
    p.add_argument("--interval", type=_seconds, default=60, help="seconds between fixes")
    p.add_argument("--moving-interval", type=_seconds, help="seconds between fixes while moving")
    p.add_argument("--malformed-rate", type=_share, default=0.005, help="share of garbled messages")
    p.add_argument("--duplicate-rate", type=_share, default=0.01, help="share delivered twice")
    p.add_argument("--gap-rate", type=_not_negative, default=0.5, help="coverage gaps per tag-day")
    p.add_argument("--owntracks-share", type=_share, default=0.05, help="share of OwnTracks phones")
    p.add_argument("--silent-share", type=_share, default=0.01, help="share of tags that go silent")
    p.add_argument(
        "--tamper-rate", type=_not_negative, default=0.02, help="strap tampers per tag-day"
    )
    p.add_argument(
        "--forget-charge", type=_share, default=0.3, help="share of nights the tag is not charged"
    )
    p.add_argument(
        "--outlier-rate",
        type=_share,
        default=0.0,
        help="share of fixes 300 m to 3 km off the truth whatever their accuracy says"
        " (none by default)",
    )
    p.add_argument(
        "--no-noise",
        action="store_true",
        help="report true positions (accuracy figures are still given; no outliers)",
    )
    p.add_argument(
        "--no-register",
        action="store_true",
        help="do not register subjects and devices in the database",
    )
    p.set_defaults(handler=run)


def _share(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text} is not a share between 0 and 1")
    return value


def _not_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"{text} is not 0 or more")
    return value


def _seconds(text: str) -> int:
    value = int(text)
    if value < 1:  # a tag reporting every 0 s would never let simulated time move on
        raise argparse.ArgumentTypeError(f"{text} is less than 1 s")
    return value


def _tags(text: str) -> int:
    n = int(text)
    if not 1 <= n <= 20_000:
        raise argparse.ArgumentTypeError(f"--tags {n} is not between 1 and 20,000")
    return n


def options(args: argparse.Namespace) -> Options:
    from simulators.tag import Options  # numpy and the world: only when simulating

    return Options(
        interval_s=args.interval,
        moving_interval_s=args.moving_interval,
        gap_rate=args.gap_rate,
        duplicate_rate=args.duplicate_rate,
        malformed_rate=args.malformed_rate,
        owntracks_share=args.owntracks_share,
        silent_share=args.silent_share,
        tamper_rate=args.tamper_rate,
        forget_charge=args.forget_charge,
        outlier_rate=args.outlier_rate,
        noise=not args.no_noise,
    )


def begin_of(args: argparse.Namespace) -> float:
    if args.start is not None:
        return float(args.start.timestamp())
    now = float(int(time.time()) // 60 * 60)
    return now if args.pace == 1 else now - args.hours * 3600


def run(args: argparse.Namespace, settings: Any) -> int:
    from simulators import fleet, scenarios

    if args.list_scenarios:
        for name, description in scenarios.CATALOGUE.items():
            print(f"{name:14} {description}")
        return 0
    if args.replay:
        return _replay(args, settings)
    begin = begin_of(args)
    if args.scenario:
        script = scenarios.build(args.scenario, args.seed, begin, noise=not args.no_noise)
        tags, end = script.tags, script.end
    else:
        end = begin + args.hours * 3600
        tags = fleet.tags(args.tags, args.seed, options(args), begin, end)
    members = fleet.members(tags)
    if args.out:
        _write_members(args.out, members)
    passwords = None
    if not args.out and not args.no_register:
        passwords = _register(settings, members, begin)
    outs: Iterable[Out] = fleet.stream(tags)
    if args.scenario and args.truth:
        outs = list(outs)  # the truth is checked against what is emitted
        script.write_truth(args.truth, outs)
    messages = ((o.t, o.topic, o.payload, fleet.fix_count(o)) for o in outs)
    _send(args, settings, messages, begin, passwords)
    return 0


def _send(
    args: argparse.Namespace,
    settings: Any,
    messages: Iterator[tuple[float, str, str, int]],
    begin: float,
    passwords: dict[str, str] | None,
    progress: Progress | None = None,
) -> None:
    """Publish each tag on its own connection with the broker account made for it when it
    was registered; without registration, on one connection as TORCH_MQTT_USERNAME (a
    relay account)."""
    from simulators.output import JsonlSink, MqttSink, Pacer, Progress, Sink, TagSinks, drain

    sink: Sink
    if args.out:
        sink = JsonlSink(args.out)
        pace = 0.0
    elif passwords is not None:
        sink = TagSinks(settings.mqtt_host, settings.mqtt_port, passwords, f"sim-{os.getpid()}")
        pace = args.pace
    else:
        password = settings.mqtt_password.get_secret_value() if settings.mqtt_password else None
        sink = MqttSink(
            settings.mqtt_host,
            settings.mqtt_port,
            f"torch-sim-{os.getpid()}",
            settings.mqtt_username,
            password,
        )
        pace = args.pace
    drain(messages, sink, Pacer(pace, begin), progress or Progress())


def _members_path(out: Path) -> Path:
    return out.with_name(out.name + ".fleet.json")


def _write_members(out: Path, members: list[Any]) -> None:
    body = {"members": [{"ref": m.ref, "serial": m.serial} for m in members]}
    _members_path(out).write_text(json.dumps(body, indent=1) + "\n")


def _register(settings: Any, members: list[Any], begin: float) -> dict[str, str]:
    """Register the tags, their subjects and their broker accounts (with new passwords, which
    the broker takes up at once); returns the passwords by serial."""
    from torch import broker
    from torch.store import broker as accounts
    from torch.store import registry

    pairs = [(m.ref, m.serial) for m in members]
    start = datetime.fromtimestamp(min(begin, time.time()) - 86400, UTC)

    async def work(conn: Any) -> tuple[int, int, dict[str, str]]:
        assigned, other = await registry.ensure_fleet(conn, pairs, "simulated", start)
        passwords: dict[str, str] = {}
        async with conn.transaction():
            for m in members:
                passwords[m.serial] = await accounts.set_account(
                    conn, m.serial, broker.AccountKind.DEVICE
                )
        await sync_broker(conn, settings)  # says so when no broker will take the accounts up
        return assigned, other, passwords

    assigned, other, passwords = run_on_db(settings, work)
    passwords = dict(passwords)
    print(
        f"registered {len(members)} tags ({assigned} newly assigned"
        + (f", {other} already assigned otherwise" if other else "")
        + ")",
        file=sys.stderr,
    )
    return passwords


def _replay(args: argparse.Namespace, settings: Any) -> int:
    from simulators.fleet import Member
    from simulators.output import Progress, read_jsonl

    side = _members_path(args.replay)
    passwords = None
    if side.exists() and not args.no_register:
        rows = json.loads(side.read_text())["members"]
        passwords = _register(
            settings, [Member(r["ref"], r["serial"]) for r in rows], time.time() - 400 * 86400
        )
    messages = ((0.0, topic, payload, 0) for topic, payload in read_jsonl(args.replay))
    args.pace = 0.0
    _send(args, settings, messages, 0.0, passwords, Progress(simulated=False))
    return 0

"""`torch sim`: the command-line form of the simulator."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("sim", help="simulate a fleet of tags")
    p.add_argument("--tags", type=int, default=5, help="number of tags (1 to 20,000)")
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(handler=_sim)


def _sim(args: argparse.Namespace, settings: Any) -> int:
    from simulators.minimal import run

    return run(args, settings)

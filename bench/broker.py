"""The benchmarks' own broker, started fresh, and the accounts they sign in with."""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def fresh(port: int) -> Path:
    """A broker of our own on `port` with no sessions left by earlier runs (they would have
    every message queued for them), stopped when this process ends; returns its state
    directory."""
    state = Path(f"/tmp/torch-bench-broker-{port}")
    script = str(ROOT / "scripts/broker.sh")
    subprocess.run([script, "stop", str(state), str(port)], check=True)
    shutil.rmtree(state, ignore_errors=True)
    subprocess.run([script, "start", str(state), str(port)], check=True)
    atexit.register(subprocess.run, [script, "stop", str(state), str(port)], check=False)
    return state


def account(name: str, kind: str, state: Path, database_url: str) -> str:
    """`torch broker account`: creates (or renews) it and reloads the broker; the password."""
    env = dict(os.environ, TORCH_DATABASE_URL=database_url, TORCH_BROKER_DIR=str(state))
    out = subprocess.run(
        [str(ROOT / ".venv/bin/torch"), "broker", "account", name, "--kind", kind],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return out.splitlines()[-1]

"""No secret, token or password in any log line or error message of a full run."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from tests.factories import fix
from tests.services import (
    BROKER_STATE,
    PASSWORDS,
    TORCH,
    Api,
    Database,
    Publisher,
    mqtt_client,
    service_env,
    wait_for,
)


def cli(*args: str, errors: list[str]) -> str:
    """Run the command; keep what it wrote on stderr (its log), return its stdout."""
    out = subprocess.run([TORCH, *args], env=service_env(), capture_output=True, text=True)
    errors.append(out.stderr)
    return out.stdout


def test_a_full_run_logs_no_secret(  # type: ignore[no-untyped-def]
    broker, db: Database, workers, publisher: Publisher, tmp_path: Path
) -> None:
    stderr: list[str] = []
    token = cli("user", "add", "pat", "--role", "probation", errors=stderr).splitlines()[-1]
    device_password = cli("device", "add", "LOG-1", errors=stderr).splitlines()[-1]
    cli("subject", "add", "IOM-LOG", errors=stderr)
    cli("assign", "LOG-1", "IOM-LOG", "--from", "2026-01-01T00:00:00Z", errors=stderr)
    worker = workers("logs")
    api = Api(tmp_path / "api.log", port=18031)
    try:
        # a tag signing in with its own account, and someone guessing at it
        tag = mqtt_client("log-tag", "LOG-1", device_password)
        tag.connect("127.0.0.1", broker.port)
        tag.loop_start()
        tag.publish("tags/LOG-1/fixes", str(fix(0)).replace("'", '"'), qos=1).wait_for_publish(10)
        tag.disconnect()
        tag.loop_stop()
        guess = "guessed-password-0xDEADBEEF"
        intruder = mqtt_client("log-intruder", "LOG-1", guess)
        intruder.connect("127.0.0.1", broker.port)
        intruder.loop(2)
        # a simulated fleet, each tag with a password made for it and never shown
        start = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()
        cli("sim", "--tags", "3", "--hours", "0.5", "--pace", "0", "--start", start, errors=stderr)
        wait_for(lambda: db.count("fixes") > 10, timeout=30)
        # the API with the right token, a wrong one, and a malformed request
        good = {"Authorization": f"Bearer {token}"}
        bad_token = "Zm9yZ2VkLXRva2VuLXRoYXQtbG9va3MtcmVhbA"
        answers = [
            httpx.get(f"{api.url}/v1/subjects", headers=good),
            httpx.get(f"{api.url}/v1/subjects", headers={"Authorization": f"Bearer {bad_token}"}),
            httpx.post(f"{api.url}/v1/proximity", headers=good, json={"crime_ref": token}),
        ]
        assert [a.status_code for a in answers] == [200, 401, 422]
        cli("user", "revoke", "pat", errors=stderr)
        cli("sim", "--tags", "0", errors=stderr)  # a usage error
        cli("user", "add", "x", "--role", "nobody", errors=stderr)  # and a refusal
    finally:
        api.stop()
        worker.terminate()
    secrets = {
        "token": token,
        "wrong token": bad_token,
        "device password": device_password,
        "guessed password": guess,
        **{f"broker password of {name}": pw for name, pw in PASSWORDS.items()},
        "database password in a URL": ":torch@",
    }
    logs = {
        "worker": worker.log.read_text(),
        "api": (tmp_path / "api.log").read_text(),
        "broker": (BROKER_STATE / "mosquitto.log").read_text(),
        "command line": "\n".join(stderr),
        "error messages": "\n".join(a.text for a in answers[1:]),
    }
    # there was something to look at (the broker logs only errors and warnings, maybe none)
    assert [k for k, v in logs.items() if not v] in ([], ["broker"])
    leaks = [
        f"{what} in the {where} log"
        for where, text in logs.items()
        for what, secret in secrets.items()
        if secret in text
    ]
    assert leaks == []

"""Screenshots of the web app's main screens for the README, on simulated data.

Needs `make setup` (or `make test`, for Chromium) and nothing running on port 8010. It starts
its own ingest worker and API on the local database, publishes the simulator's `all`
scenario (a day in the past), gives a subject its exclusion zone, and drives Debian's
Chromium through the crime-scene query, zones and track, alerts and device health views.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parent.parent
TORCH = str(ROOT / ".venv" / "bin" / "torch")
PORT = 8010
URL = f"http://127.0.0.1:{PORT}"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
ARGS += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]


def env() -> dict[str, str]:
    values = dict(os.environ, TORCH_API_PORT=str(PORT), TORCH_MAP_TILE_URL="")
    for line in (ROOT / ".run" / "secrets" / "ingest.env").read_text().splitlines():
        name, _, value = line.partition("=")
        values[name] = value
    return values


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def wait_up() -> None:
    for _ in range(100):
        try:
            if httpx.get(f"{URL}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.2)
    sys.exit("the API did not start")


def simulate(truth: Path) -> dict:
    start = (datetime.now(UTC) - timedelta(hours=20)).replace(minute=0, second=0, microsecond=0)
    step(f"publishing the simulator's 'all' scenario from {start:%Y-%m-%d %H:%M}Z")
    subprocess.run(
        [
            TORCH,
            "sim",
            "--scenario",
            "all",
            "--pace",
            "0",
            "--start",
            start.isoformat(),
            "--truth",
            str(truth),
        ],
        env=env(),
        check=True,
    )
    time.sleep(5)  # the worker stores the last batch and checks the zones
    return json.loads(truth.read_text())


def token() -> str:
    name = f"screenshots-{int(time.time())}"
    out = subprocess.run(
        [TORCH, "user", "add", name, "--role", "supervisor"],
        env=env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip().splitlines()[-1]


def give_zone(bearer: str, truth: dict) -> tuple[int, str]:
    subject = truth["subjects"]["enters_Z1"]
    headers = {"Authorization": f"Bearer {bearer}"}
    found = httpx.get(f"{URL}/v1/subjects", params={"ref": subject["ref"]}, headers=headers)
    subject_id = found.json()[0]["id"]
    body = {
        "kind": "exclusion",
        "label": "victim's street",
        "geometry": truth["exclusion_zones"]["Z1"],
        "schedule": None,
        "valid_from": truth["start"],
    }
    httpx.post(f"{URL}/v1/subjects/{subject_id}/zones", json=body, headers=headers)
    return subject_id, subject["entered"][:10]


def shoot(page: Page, out: Path, name: str) -> None:
    page.wait_for_timeout(600)
    page.screenshot(path=str(out / f"{name}.png"))
    step(f"wrote {out / name}.png")


def screens(out: Path, bearer: str, truth: dict, subject_id: int, day: str) -> None:
    scene = truth["scene"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
        page = browser.new_page(
            viewport={"width": 1400, "height": 860}, locale="en-GB", timezone_id="UTC"
        )
        page.goto(URL + "/")
        shoot(page, out, "sign-in")
        page.fill("#signin-token", bearer)
        page.click("text=Sign in")
        page.wait_for_selector("#scene-form")
        page.fill("#crime-ref", "41/12345/26")
        page.fill("#crime-reason", "burglary reported at the scene overnight")
        page.fill("#scene-lat", str(scene["lat"]))
        page.fill("#scene-lon", str(scene["lon"]))
        page.press("#scene-lon", "Tab")
        page.fill("#scene-radius", str(scene["radius_m"]))
        page.fill("#scene-from", scene["from"][:16])
        page.fill("#scene-to", scene["to"][:16])
        page.click("#scene-run")
        page.wait_for_selector("#scene-counts")
        shoot(page, out, "crime-scene")
        page.click("#tab-zones")
        page.select_option("#zone-subject", str(subject_id))
        page.wait_for_selector("#zone-list article")
        page.fill("#track-day", day)
        page.click("#track-show")
        page.wait_for_selector("#track-message:has-text('fixes')")
        shoot(page, out, "zones-and-track")
        page.click("#tab-alerts")
        page.wait_for_selector("#alert-live:has-text('live')")
        shoot(page, out, "alerts")
        page.click("#tab-devices")
        page.wait_for_selector("#device-table tbody tr")
        shoot(page, out, "devices")
        browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    logs = Path(tempfile.mkdtemp(prefix="torch-shots-"))
    step(f"starting an ingest worker and the API on port {PORT} (logs in {logs})")
    procs = [
        subprocess.Popen(
            [TORCH, cmd],
            env=env(),
            stdout=(logs / f"{cmd}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for cmd in ("ingest", "api")
    ]
    try:
        wait_up()
        truth = simulate(logs / "truth.json")
        bearer = token()
        subject_id, day = give_zone(bearer, truth)
        screens(args.out, bearer, truth, subject_id, day)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    main()

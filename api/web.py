"""What the web app needs besides the other routes: who is signed in, device health, and the
app itself, served at / from its build (`make web`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

from api.auth import authenticate, require
from torch.fixes import rfc3339
from torch.settings import Settings
from torch.store import subjects as store
from torch.store.users import User

router = APIRouter(prefix="/v1", tags=["app"])

# The app's own files and the map tiles; no inline script, no other origin for code.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data: {tiles}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
NOT_BUILT = """<!doctype html><meta charset="utf-8"><title>TORCH</title>
<p>The web app has not been built. Run <code>make web</code> (or <code>make demo</code>),
then reload. The API itself is at <a href="/docs">/docs</a>.</p>"""


@router.get("/me", summary="The signed-in user, their roles, and the app's map settings")
async def me(request: Request, user: User = Depends(authenticate)) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    return {
        "name": user.name,
        "role": user.role,
        "roles": [user.role, *user.also],
        "force": user.force,
        "caseload": "team" if user.caseload_team is not None else "force",
        "map": {"tile_url": settings.map_tile_url, "attribution": settings.map_attribution},
    }


@router.get("/devices", summary="Device health for the caseload: last seen, battery, strap")
async def devices(
    request: Request, user: User = Depends(require("probation", "supervisor"))
) -> list[dict[str, Any]]:
    settings: Settings = request.app.state.settings
    async with request.app.state.pool.acquire() as conn:
        rows = await store.device_health(conn, user)
    now = datetime.now(UTC)
    return [_health(h, now, settings) for h in rows]


def _health(h: store.DeviceHealth, now: datetime, settings: Settings) -> dict[str, Any]:
    problems = []
    if h.last_seen_at is None or (now - h.last_seen_at).total_seconds() > settings.silent_after_s:
        problems.append("no_comms")
    if h.battery is not None and h.battery <= settings.battery_low_pct:
        problems.append("battery_low")
    if h.strap == "open":
        problems.append("strap_open")
    return {
        "subject_id": h.subject_id,
        "subject_ref": h.subject_ref,
        "serial": h.serial,
        "last_seen_at": rfc3339(h.last_seen_at),
        "last_fix_at": rfc3339(h.last_fix_at),
        "battery": h.battery,
        "strap": h.strap,
        "problems": problems,
    }


class App(StaticFiles):
    """The built app, with a content security policy that keeps its code to this origin."""

    def __init__(self, directory: str, tile_url: str) -> None:
        super().__init__(directory=directory, html=True)
        self.csp = CSP.format(tiles=_origin(tile_url)).replace(" ;", ";")

    async def get_response(self, path: str, scope: Scope) -> Any:
        response = await super().get_response(path, scope)
        response.headers["Content-Security-Policy"] = self.csp
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        return response


def _origin(url: str) -> str:
    """scheme://host[:port] of a tile URL, for the policy (tile hosts may be {s}.-templated)."""
    if "://" not in url:
        return ""
    scheme, rest = url.split("://", 1)
    host = rest.split("/", 1)[0].replace("{s}.", "*.")
    return f"{scheme}://{host}"


def mount(app: FastAPI, settings: Settings) -> None:
    """Serve the app at / if it has been built; otherwise / says how to build it."""
    if (settings.web_dir / "index.html").is_file():
        app.mount("/", App(str(settings.web_dir), settings.map_tile_url), name="web")
        return

    @app.get("/", include_in_schema=False)
    async def not_built() -> HTMLResponse:
        return HTMLResponse(NOT_BUILT, status_code=503)

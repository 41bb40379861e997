"""Typed settings, read from ``TORCH_*`` environment variables.

Build a ``Settings`` in an entry point (``Settings()``), never at import time.
The defaults are the local set-up that ``make demo`` creates.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_DATABASE_PASSWORD = "torch"


def processors() -> int:
    """The processors this process may run on."""
    return len(os.sched_getaffinity(0))


def _default_worker_id() -> str:
    return f"ingest-{socket.gethostname()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TORCH_", extra="ignore")

    env: Literal["development", "production"] = Field(
        "development", description="production refuses development passwords"
    )
    database_url: SecretStr = Field(
        SecretStr(f"postgresql://torch_app:{DEV_DATABASE_PASSWORD}@127.0.0.1:5432/torch"),
        description="PostgreSQL/PostGIS connection URL of the services: a role that does not "
        "own the tables, and may only read and append the audit trail",
    )
    admin_database_url: SecretStr = Field(
        SecretStr(f"postgresql://torch:{DEV_DATABASE_PASSWORD}@127.0.0.1:5432/torch"),
        description="the owner's URL, for migrations and retention (dropping partitions)",
    )

    max_request_bytes: int = Field(
        5 * 1024 * 1024, ge=1024, description="largest HTTP request body the API accepts"
    )
    victim_retention_days: int = Field(
        90, ge=1, le=3650, description="how long protected persons' fixes are kept"
    )
    retention_days: int = Field(
        365, ge=1, description="fixes older than this are purged by `torch retention run`"
    )
    token_ttl_days: int = Field(90, ge=1, le=3650, description="how long a bearer token is valid")
    auth_failures_per_minute: int = Field(
        10, ge=1, description="bad or missing tokens from one address before it is refused a while"
    )

    mqtt_host: str = Field("127.0.0.1", description="broker host")
    mqtt_port: int = Field(1883, description="broker port")
    mqtt_username: str | None = Field(None, description="broker user name")
    mqtt_password: SecretStr | None = Field(None, description="broker password")
    broker_dir: Path = Field(
        # the checkout's broker, which scripts/setup.sh runs, wherever a command is run from
        Path(__file__).resolve().parent.parent / ".run" / "mosquitto",
        description="where `torch broker sync` writes Mosquitto's passwd and acl files (the "
        "broker's state directory, holding its pid file)",
    )
    broker_files_mode: str = Field(
        "600",
        pattern="^[0-7]{3}$",
        description="permissions of the broker's files (octal): 600 where the command runs as "
        "root or as the broker's user; 644 where the broker runs as another user (the "
        "hashes are of random passwords)",
    )
    mqtt_keepalive_s: int = Field(30, description="MQTT keep-alive interval")
    mqtt_session_expiry_s: int = Field(
        7 * 24 * 3600, description="how long the broker keeps the worker's queue while it is away"
    )
    mqtt_share_group: str | None = Field(
        None, description="MQTT v5 shared-subscription group; set it to run several workers"
    )
    fix_topics: str = Field("tags/+/fixes", description="topic filter for tag fixes")
    event_topics: str = Field("tags/+/events", description="topic filter for tag events")
    victim_topics: str = Field(
        "victims/+/fixes", description="topic filter for protected persons' fixes"
    )
    owntracks_topics: str = Field(
        "owntracks/+/+", description="topic filter for OwnTracks location messages"
    )

    worker_id: str = Field(
        default_factory=_default_worker_id,
        description="stable id of this ingest worker; it names its persistent MQTT session",
    )
    batch_size: int = Field(2000, ge=1, le=100_000, description="messages per transaction")
    db_connections: int = Field(
        2, ge=1, le=16, description="transactions the ingest worker keeps in flight at once"
    )
    state_flush_ms: int = Field(
        1000, ge=10, le=60_000, description="how often device_state gets each device's newest fix"
    )
    flush_interval_ms: int = Field(
        25,
        ge=1,
        le=60_000,
        description="longest a message waits for its batch to fill (under load, batches "
        "fill while the previous ones commit; 100 ms cost alerts 50 ms at the median)",
    )

    breach_open_after: int = Field(
        2, ge=1, le=20, description="consecutive fixes clearly on the wrong side that open a breach"
    )
    breach_close_after: int = Field(
        2, ge=1, le=20, description="consecutive fixes clearly back on the right side that close it"
    )
    breach_inside_s: float = Field(
        120, gt=0, description="time on the wrong side between two fixes that opens a breach"
    )
    tiles_refresh_ms: int = Field(
        5000,
        ge=10,
        le=3_600_000,
        description="how often the worker brings the track tiles up to date (more often "
        "rewrites each live hour's tile more often: at 5,000 fixes/s every second costs "
        "alerts half a second at p99; queries read fixes not yet tiled directly)",
    )
    battery_low_pct: int = Field(
        15, ge=1, le=100, description="battery level at or below which battery_low is raised"
    )
    silent_after_s: float = Field(
        900, gt=0, description="no message (no_comms) or no usable fix (no_fix) for this long"
    )
    escalate_after_s: float = Field(
        1800, gt=0, description="an alert left unacknowledged this long is escalated"
    )
    sweep_ms: int = Field(
        10_000, ge=100, description="how often the worker looks for silent tags and stale alerts"
    )
    publish_alerts: bool = Field(
        True,
        description="whether this worker publishes the alert outbox on MQTT (with several "
        "workers any number may: each alert is taken by one)",
    )
    alert_poll_ms: int = Field(
        1000,
        ge=10,
        le=3_600_000,
        description="how often the worker looks in the alert outbox without being woken "
        "(a notification wakes it as soon as an alert commits)",
    )

    max_future_s: int = Field(300, description="fixes further ahead of receipt are rejected")
    max_age_days: int = Field(400, description="fixes older than this are rejected")
    max_payload_bytes: int = Field(1_048_576, description="largest accepted MQTT payload")
    service_area: tuple[float, float, float, float] = Field(
        (-9.0, 49.75, 2.0, 61.0),
        description="lon/lat box (west, south, east, north) in which fixes are accepted; "
        "defaults to the area of use of the British National Grid (EPSG:27700)",
    )

    proximity_max_window_days: float = Field(7, gt=0, description="longest crime-scene window")
    proximity_max_gap_s: float = Field(
        300, gt=0, description="fixes further apart than this bound a gap, not a track"
    )
    proximity_max_speed_ms: float = Field(
        40,
        gt=0,
        description="fastest a subject is assumed to travel through a gap; a fix reached and"
        " left faster than this, between two that are not, is a likely GPS outlier",
    )
    proximity_default_acc_m: float = Field(20, gt=0, description="accuracy of a fix without acc")
    correlate_workers: int = Field(
        default_factory=processors,
        ge=1,
        le=64,
        description="processes a bulk correlation shares its crimes among (default: the "
        "processors this one may run on)",
    )

    log_format: Literal["json", "text", "auto"] = Field(
        "auto", description="log lines as JSON objects, or text; auto: text at a terminal"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="the least severe log lines written"
    )
    metrics_token: SecretStr | None = Field(
        None,
        description="bearer token that /metrics requires (API and worker); without one, "
        "/metrics is open in development and refused in production",
    )
    worker_http_host: str = Field(
        "127.0.0.1", description="the worker's health and metrics listen address"
    )
    worker_http_port: int = Field(
        9108, ge=0, le=65535, description="the worker's health and metrics port (0: any free)"
    )

    api_host: str = Field("127.0.0.1", description="API listen address")
    api_port: int = Field(8000, description="API listen port")
    web_dir: Path = Field(
        Path(__file__).resolve().parent.parent / "web" / "dist",
        description="the built web app (`make web`), served at /; absent: / says how to build it",
    )
    map_tile_url: str = Field(
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        description="the web app's base map tiles ({z}/{x}/{y}); empty for none: the map is "
        "then a plain background with the zones, tracks and scenes drawn on it",
    )
    map_attribution: str = Field(
        "&copy; OpenStreetMap contributors", description="credit shown with the base map"
    )

    @property
    def token_ttl(self) -> timedelta:
        return timedelta(days=self.token_ttl_days)

    @property
    def broker_files_permissions(self) -> int:
        """broker_files_mode as the permission bits it spells."""
        return int(self.broker_files_mode, 8)

    @model_validator(mode="after")
    def _refuse_development_secrets(self) -> Settings:
        for name, url in (
            ("TORCH_DATABASE_URL", self.database_url),
            ("TORCH_ADMIN_DATABASE_URL", self.admin_database_url),
        ):
            if self.env == "production" and f":{DEV_DATABASE_PASSWORD}@" in url.get_secret_value():
                raise ValueError(
                    f"{name} uses the development password; set a real one for production"
                )
        return self

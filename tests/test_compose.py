"""The Docker stack's wiring (no Docker engine runs here: its file is checked, not run)."""

from __future__ import annotations

from pathlib import Path

import yaml

from torch.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
STACK = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = STACK["services"]


def test_migrations_run_before_every_service_of_the_project() -> None:
    assert "torch db upgrade" in SERVICES["migrate"]["command"][0]
    for name in ("mqtt", "ingest", "maintain", "api"):
        assert SERVICES[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }


def test_long_running_services_restart_and_report_readiness() -> None:
    lasting = ["db", "mqtt", "ingest", "maintain", "api", "proxy", "prometheus"]
    assert {n: SERVICES[n]["restart"] for n in lasting} == dict.fromkeys(lasting, "unless-stopped")
    assert "http://127.0.0.1:8000/readyz" in " ".join(SERVICES["api"]["healthcheck"]["test"])
    port = Settings.model_fields["worker_http_port"].default
    assert f"http://127.0.0.1:{port}/readyz" in " ".join(SERVICES["ingest"]["healthcheck"]["test"])
    assert {"db", "mqtt"} <= {n for n, s in SERVICES.items() if "healthcheck" in s}


def test_prometheus_scrapes_both_services_with_the_metrics_token() -> None:
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]
    }
    port = Settings.model_fields["worker_http_port"].default
    assert targets == {"torch-api": ["api:8000"], "torch-ingest": [f"ingest:{port}"]}
    assert {j["authorization"]["credentials_file"] for j in config["scrape_configs"]} == {
        "/run/secrets/metrics_token"
    }
    env = SERVICES["migrate"]["environment"]
    assert env["TORCH_METRICS_TOKEN"].endswith(":?set TORCH_METRICS_TOKEN in .env}")
    assert env["TORCH_WORKER_HTTP_HOST"] == "0.0.0.0"
    assert STACK["secrets"]["metrics_token"] == {"environment": "TORCH_METRICS_TOKEN"}


def test_data_lives_in_volumes() -> None:
    assert "pgdata:/var/lib/postgresql/data" in SERVICES["db"]["volumes"]
    assert "mqttdata:/mosquitto/data" in SERVICES["mqtt"]["volumes"]

"""What the API and the ingest worker tell their operators, decided once for both: who may
read the metrics, and what a readiness check answers."""

from __future__ import annotations

import hmac

from torch.settings import Settings


def metrics_refusal(settings: Settings, authorization: str | None) -> tuple[int, str] | None:
    """None when a caller with this Authorization header may read /metrics; otherwise the
    status and the reason. With TORCH_METRICS_TOKEN set, the caller must present it as a
    bearer token; without one, /metrics is open in development and closed in production."""
    token = settings.metrics_token
    if token is None:
        if settings.env == "production":
            return 403, "set TORCH_METRICS_TOKEN to serve /metrics"
        return None
    expected = f"Bearer {token.get_secret_value()}".encode()
    if authorization is None or not hmac.compare_digest(authorization.encode(), expected):
        return 401, "/metrics needs `Authorization: Bearer <metrics token>`"
    return None


def readiness(checks: dict[str, str]) -> tuple[int, dict[str, str]]:
    """/readyz's status and body: 200 when every check is "ok", else 503 with each check."""
    ready = all(v == "ok" for v in checks.values())
    return (200 if ready else 503), {"status": "ok" if ready else "unavailable", **checks}

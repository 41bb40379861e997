"""Schemathesis over the whole OpenAPI schema, against the real API on the real database:
whatever it sends, no 5xx, and every 4xx is a problem-details body."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from api.app import create_app
from tests.services import Api, Broker, Database, add_user, service_env
from torch.settings import Settings

# The schema as the application publishes it at /openapi.json, without a server to ask.
SCHEMA = schemathesis.openapi.from_dict(create_app(Settings(_env_file=None)).openapi()).exclude(
    path="/v1/alerts/stream"  # a stream that never ends; tested on its own in test_zones
)


@pytest.fixture(scope="module")
def target(
    tmp_path_factory: pytest.TempPathFactory, broker: Broker
) -> Iterator[dict[str, Any]]:  # the broker: /readyz asks for it
    db = Database()
    db.reset()
    db.execute("INSERT INTO subjects (ref) VALUES ('IOM-FUZZ')")
    token = add_user("fuzz", "supervisor")
    server = Api(tmp_path_factory.mktemp("fuzz") / "api.log", port=18021)
    yield {"url": server.url, "headers": {"Authorization": f"Bearer {token}"}}
    server.stop()
    db.close()


SEEN: set[tuple[str, int]] = set()  # (operation, status) the fuzzer got back


@SCHEMA.parametrize()
@settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,  # the same cases every run
)
def test_no_server_error_and_every_refusal_is_a_problem(case: Any, target: dict[str, Any]) -> None:
    response = case.call(base_url=target["url"], headers=target["headers"], timeout=30)
    SEEN.add((f"{case.method} {case.path}", response.status_code))
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"
    if 400 <= response.status_code < 500:
        kind = response.headers.get("content-type")
        kind = kind[0] if isinstance(kind, list) else kind
        assert kind == "application/problem+json", f"{response.status_code}: {response.text}"
        body = response.json()
        assert body["status"] == response.status_code
        assert body["title"] and body["detail"]


def test_the_fuzzer_got_past_authentication_into_the_handlers() -> None:
    """Not a fuzzer that only ever met a 401 (it drops the token now and then on purpose):
    valid requests were answered, invalid ones refused by the handlers' own checks (the
    API runs as torch_app, like production)."""
    assert service_env()["TORCH_DATABASE_URL"].startswith("postgresql://torch_app:")
    statuses = {status for _, status in SEEN}
    assert {200, 404, 422} <= statuses
    assert 403 not in statuses  # a supervisor may use every route fuzzed
    assert ("POST /v1/proximity", 200) in SEEN

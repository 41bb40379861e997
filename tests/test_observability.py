"""Health checks, Prometheus metrics and structured logs of the worker and the API."""

from __future__ import annotations

import contextlib
import json
import subprocess
from pathlib import Path

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import fix, fixes_topic
from tests.services import TORCH, Api, Database, Publisher, add_user, service_env, wait_for


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a Prometheus exposition, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_worker_health_readiness_and_metrics(  # type: ignore[no-untyped-def]
    db: Database, workers, publisher: Publisher, device
) -> None:
    device("T1")
    worker = workers("metrics", TORCH_METRICS_TOKEN="scrape-secret")
    assert httpx.get(f"{worker.http}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{worker.http}/readyz")
    assert (ready.status_code, ready.json()) == (
        200,
        {"status": "ok", "database": "ok", "broker": "ok", "alerts": "ok"},
    )
    publisher.send(fixes_topic(), [fix(0), fix(60), fix(120)])
    publisher.send(fixes_topic(), fix(60))  # again: stored once, counted as a duplicate
    publisher.send(fixes_topic(), "this is not JSON")
    publisher.send("tags/NOSUCH/fixes", fix(0))
    publisher.flush()
    wait_for(lambda: db.count("dead_letters") == 2 and db.count("fixes") == 3)

    assert httpx.get(f"{worker.http}/metrics").status_code == 401
    wrong = {"Authorization": "Bearer guessed"}
    assert httpx.get(f"{worker.http}/metrics", headers=wrong).status_code == 401
    auth = {"Authorization": "Bearer scrape-secret"}
    m = samples(httpx.get(f"{worker.http}/metrics", headers=auth).text)
    assert m[("torch_fixes_stored_total", ())] == 3
    assert m[("torch_fix_duplicates_total", ())] == 1
    assert m[("torch_dead_letters_total", (("reason", "bad_json"),))] == 1
    assert m[("torch_dead_letters_total", (("reason", "unknown_serial"),))] == 1
    assert m[("torch_ingest_batch_messages_sum", ())] == 4
    assert (
        m[("torch_ingest_commit_seconds_count", ())] == m[("torch_ingest_batch_messages_count", ())]
    )
    # the fixes are about an hour old (tests.factories.BASE): none committed within 900 s of
    # its time, all within six hours; and each within 30 s of its receipt
    fix_lag = (("le", "900.0"), ("since", "fix"))
    assert m[("torch_ingest_lag_seconds_bucket", fix_lag)] == 0
    assert m[("torch_ingest_lag_seconds_bucket", (("le", "21600.0"), ("since", "fix")))] == 4
    assert m[("torch_ingest_lag_seconds_count", (("since", "fix"),))] == 4
    assert m[("torch_ingest_lag_seconds_bucket", (("le", "30.0"), ("since", "receipt")))] == 4
    assert m[("torch_broker_connected", ())] == 1
    assert m[("torch_alert_link_connected", ())] == 1
    assert m[("torch_ingest_inbox_messages", ())] == 0


def test_a_worker_without_its_broker_is_alive_but_not_ready(db: Database, tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [TORCH, "ingest"],
            env=service_env(TORCH_WORKER_ID="lonely", TORCH_MQTT_PORT="1"),  # nothing there
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        port = wait_for(
            lambda: next(
                (json.loads(line)["port"] for line in log.read_text().splitlines()
                 if '"port"' in line), None,
            )
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{url}/healthz").status_code == 200
        ready = httpx.get(f"{url}/readyz")
        assert (ready.status_code, ready.json()) == (
            503,
            {
                "status": "unavailable",
                "database": "ok",
                "broker": "disconnected",
                "alerts": "disconnected",  # the alert publisher's own session
            },
        )
    finally:
        proc.terminate()
        proc.wait(30)


def test_api_request_ids_logs_and_metrics(db: Database, broker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    token = add_user("obs", "supervisor")
    db.execute("INSERT INTO subjects (ref) VALUES ('IOM-OBS-1')")
    api = Api(tmp_path / "api.log", port=18041, TORCH_METRICS_TOKEN="scrape-secret")
    try:
        auth = {"Authorization": f"Bearer {token}"}
        given = httpx.get(
            f"{api.url}/v1/subjects?ref=IOM-OBS-1", headers={**auth, "X-Request-ID": "case-7.1"}
        )
        assert (given.status_code, given.headers["x-request-id"]) == (200, "case-7.1")
        made = httpx.get(f"{api.url}/v1/subjects", headers={**auth, "X-Request-ID": "no good!"})
        assert made.headers["x-request-id"] != "no good!"
        assert len(made.headers["x-request-id"]) == 32
        missing = httpx.get(f"{api.url}/v1/subjects/999999", headers=auth)
        assert missing.status_code == 404
        assert missing.json()["request_id"] == missing.headers["x-request-id"]
        ready = httpx.get(f"{api.url}/readyz")
        assert (ready.status_code, ready.json()) == (
            200,
            {"status": "ok", "database": "ok", "broker": "ok"},
        )

        assert httpx.get(f"{api.url}/metrics").status_code == 401
        m = samples(
            httpx.get(f"{api.url}/metrics", headers={"Authorization": "Bearer scrape-secret"}).text
        )
        listed = (("method", "GET"), ("route", "/v1/subjects"), ("status", "200"))
        assert m[("torch_http_requests_total", listed)] == 2
        one = (("method", "GET"), ("route", "/v1/subjects/{subject_id}"), ("status", "404"))
        assert m[("torch_http_requests_total", one)] == 1
        timed = (("method", "GET"), ("route", "/v1/subjects"))
        assert m[("torch_http_request_seconds_count", timed)] == 2
    finally:
        api.stop()
    lines = [json.loads(line) for line in (tmp_path / "api.log").read_text().splitlines()]
    answered = [e for e in lines if e.get("request_id") == "case-7.1"]
    assert [(e["route"], e["status"], e["level"]) for e in answered] == [
        ("/v1/subjects", 200, "info")
    ]
    text = (tmp_path / "api.log").read_text()
    assert "IOM-OBS-1" not in text  # the query string is never logged
    assert token not in text


def test_the_alert_publisher_is_not_running_once_its_thread_has_ended(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A fault it does not retry (here in sending) ends its thread, logged; /readyz then
    says "stopped" (ingest.worker), where it would otherwise say "ok" for a worker that
    never publishes again; the worker still stops cleanly."""
    from ingest.alerts import AlertPublisher
    from tests.services import DATABASE_URL

    alert = db.fetchval(
        "INSERT INTO alerts (id, type, severity, occurred_at)"
        " VALUES (gen_random_uuid(), 'exclusion_breach', 'high', now()) RETURNING id"
    )
    db.execute(
        "INSERT INTO alert_outbox (alert_id, topic, payload) VALUES ($1, 'torch/alerts/x', '{}')",
        alert,
    )
    sent: list[str] = []

    async def send(topic: str, _payload: bytes) -> None:
        sent.append(topic)
        raise RuntimeError("a fault the publisher does not expect")

    publisher = AlertPublisher(DATABASE_URL, "fault", send, 0.05)
    assert publisher.running is False
    publisher.start()
    wait_for(lambda: not publisher.running)
    assert sent == ["torch/alerts/x"]
    assert db.fetchval("SELECT published_at FROM alert_outbox") is None  # still to publish
    publisher.stop()
    assert [r.getMessage() for r in caplog.records if r.name == "torch.ingest.alerts"] == [
        "the alert publisher stopped: alerts wait in the outbox"
    ]


def test_an_error_of_the_apis_own_is_answered_as_problem_details_with_the_request_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A request that fails on a fault of the service answers 500 in the same problem
    format as every other error, quoting the request id under which the fault is logged,
    and nothing of the fault itself (its text may hold what it was working on)."""
    import asyncio

    from api.app import create_app
    from tests.services import APP_DATABASE_URL
    from torch.settings import Settings

    app = create_app(Settings(database_url=APP_DATABASE_URL))

    async def fails() -> None:
        raise RuntimeError("a fault at 51.7527, -0.3394")

    async def refused() -> None:  # what asyncpg raises for a value a column cannot take
        raise asyncpg.exceptions.CharacterNotInRepertoireError(
            'invalid byte sequence for encoding "UTF8": 0x00'
        )

    app.add_api_route("/v1/fails", fails)
    app.add_api_route("/v1/refused", refused)
    for _ in range(2):  # before the web app's catch-all
        app.router.routes.insert(0, app.router.routes.pop())

    async def ask(path: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            return await client.get(path, headers={"X-Request-ID": "case-9"})

    answer = asyncio.run(ask("/v1/fails"))
    assert (answer.status_code, answer.headers["content-type"], answer.headers["x-request-id"]) == (
        500,
        "application/problem+json",
        "case-9",
    )
    assert answer.json() == {
        "type": "about:blank",
        "title": "Internal error",
        "status": 500,
        "detail": "the request failed on an error of the service's own; the operators can find"
        " it in the log under the request id",
        "request_id": "case-9",
    }
    failed = [r for r in caplog.records if r.getMessage() == "GET /v1/fails failed"]
    assert len(failed) == 1 and failed[0].exc_info is not None
    # a value the database refused, that no check before the route caught: the request's
    refused = asyncio.run(ask("/v1/refused"))
    assert (refused.status_code, refused.json()["detail"]) == (
        422,
        "a value in the request cannot be stored or compared: invalid byte sequence for"
        ' encoding "UTF8": 0x00',
    )


class Outage:
    """A TCP relay to PostgreSQL that can be cut: `cut` closes it and every connection
    through it, as a database host that goes away does; `restore` listens again."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        import socket

        self.upstream = upstream
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._open: list[socket.socket] = []
        self.restore()

    def restore(self) -> None:
        import socket
        import threading

        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self._open.append(listener)

        def pump(source: socket.socket, sink: socket.socket) -> None:
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
            except OSError:
                pass
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

        def accept() -> None:
            while True:
                try:
                    client, _ = listener.accept()
                except OSError:
                    return  # cut
                server = socket.create_connection(self.upstream)
                self._open += [client, server]
                threading.Thread(target=pump, args=(client, server), daemon=True).start()
                threading.Thread(target=pump, args=(server, client), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    def cut(self) -> None:
        import socket

        for s in self._open:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._open = []


def test_while_the_database_cannot_be_reached_requests_get_503_then_work_again(
    db: Database, tmp_path: Path
) -> None:
    """Not a fault of the service's: 503 with Retry-After and what to do, no traceback in
    the log; and the API serves again once the database is back, without a restart."""
    from urllib.parse import urlsplit

    from tests.services import APP_DATABASE_URL

    where = urlsplit(APP_DATABASE_URL)
    outage = Outage((where.hostname or "127.0.0.1", where.port or 5432))
    relayed = where._replace(netloc=f"{where.username}:{where.password}@127.0.0.1:{outage.port}")
    api = Api(tmp_path / "api.log", port=18046, TORCH_DATABASE_URL=relayed.geturl())
    token = add_user("outage-1", "supervisor")

    def subjects() -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.get(f"{api.url}/v1/subjects", headers=headers, timeout=10)

    try:
        assert subjects().status_code == 200
        outage.cut()
        answer = subjects()
        assert (answer.status_code, answer.headers["retry-after"]) == (503, "5")
        assert answer.headers["content-type"] == "application/problem+json"
        body = answer.json()
        assert (body["title"], body["detail"]) == (
            "Service unavailable",
            "the database cannot be reached just now: send the request again in 5 seconds",
        )
        outage.restore()
        wait_for(lambda: subjects().status_code == 200, timeout=15)
    finally:
        api.stop()
        outage.cut()
    log = (tmp_path / "api.log").read_text()
    assert "GET /v1/subjects: the database cannot be reached" in log
    assert "GET /v1/subjects failed" not in log  # not logged as a fault, with its traceback

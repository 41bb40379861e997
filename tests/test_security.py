"""Access, tokens and the audit trail, each attacked the way someone would try to break it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.services import APP_DATABASE_URL, Api, Database, add_user, torch_cli
from torch.audit import Link, Problem, walk


@pytest.fixture
def app_db(db: Database) -> Iterator[Database]:
    """A connection as the services' own role (torch_app), not the tables' owner."""
    conn = Database(APP_DATABASE_URL)
    yield conn
    conn.close()


def audited(db: Database, n: int) -> None:
    """n audit records written as the services write them (as torch_app)."""
    user = db.fetchval("INSERT INTO users (name, role) VALUES ('ann', 'officer') RETURNING id")
    for i in range(n):
        db.execute(
            "INSERT INTO audit_log (user_id, method, route, crime_ref, reason, subject_ids)"
            " VALUES ($1, 'POST', '/v1/proximity', $2, 'burglary', $3)",
            user,
            f"CR-{i + 1}",
            [i + 1],
        )


def verify() -> tuple[int, list[str]]:
    out = torch_cli("audit", "verify", check=False)
    return out.returncode, out.stdout.splitlines()


def test_the_chain_is_numbered_and_linked_as_records_are_written(app_db: Database) -> None:
    audited(app_db, 4)
    rows = app_db.fetch("SELECT seq, prev_hash, hash FROM audit_log ORDER BY seq")
    assert [r["seq"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["prev_hash"] == b""
    assert [r["prev_hash"] for r in rows[1:]] == [r["hash"] for r in rows[:-1]]
    code, lines = verify()
    assert code == 0
    assert lines == [f"audit trail intact; 4 records; head 4 {rows[-1]['hash'].hex()}"]


def test_a_changed_record_is_named(app_db: Database, db: Database) -> None:
    audited(app_db, 4)
    db.execute("UPDATE audit_log SET reason = 'curiosity' WHERE seq = 3")  # as the owner
    code, lines = verify()
    assert code == 3
    assert lines[0] == "record 3: record 3 changed after it was written"
    assert lines[1].startswith("audit trail BROKEN: 1 problems; 4 records; head 4 ")


def test_a_removed_record_is_named(app_db: Database, db: Database) -> None:
    audited(app_db, 5)
    db.execute("DELETE FROM audit_log WHERE seq IN (2, 3)")
    code, lines = verify()
    assert (code, lines[0]) == (3, "record 4: record 2 to 3 removed before record 4")


def test_reordered_records_are_named(app_db: Database, db: Database) -> None:
    audited(app_db, 4)
    # swap the places of records 2 and 3, each keeping its own hash
    db.execute("UPDATE audit_log SET seq = -seq WHERE seq IN (2, 3)")
    db.execute("UPDATE audit_log SET seq = CASE seq WHEN -2 THEN 3 ELSE 2 END WHERE seq < 0")
    code, lines = verify()
    assert code == 3
    assert lines[:2] == [
        "record 2: record 2 changed after it was written",
        "record 3: record 3 changed after it was written",
    ]


def test_the_walk_tells_a_broken_link_from_a_changed_record() -> None:
    found = walk(
        [
            Link(1, True, True, "a"),
            Link(2, True, False, "b"),  # intact itself, but not the successor of 1
            Link(3, False, True, "c"),
            Link(6, True, False, "f"),
        ]
    )
    assert found.problems == [
        Problem(2, "record 2 does not follow record 1: records reordered or replaced"),
        Problem(3, "record 3 changed after it was written"),
        Problem(6, "record 4 to 5 removed before record 6"),
    ]
    assert (found.records, found.head_seq, found.head_hash) == (4, 6, "f")


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE audit_log SET reason = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
def test_the_services_role_cannot_rewrite_the_trail(app_db: Database, sql: str) -> None:
    audited(app_db, 1)
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        app_db.execute(sql)
    assert app_db.count("audit_log") == 1


@pytest.fixture
def api(db: Database, tmp_path: Path) -> Iterator[str]:
    server = Api(tmp_path / "api.log", port=18011, TORCH_AUTH_FAILURES_PER_MINUTE="3")
    yield server.url
    server.stop()


def test_audit_routes_are_for_supervisors(api: str, app_db: Database) -> None:
    audited(app_db, 3)
    boss = {"Authorization": f"Bearer {add_user('sue', 'supervisor')}"}
    officer = {"Authorization": f"Bearer {add_user('olly', 'officer')}"}
    assert httpx.get(f"{api}/v1/audit/verify", headers=officer).status_code == 403
    v = httpx.get(f"{api}/v1/audit/verify", headers=boss).json()
    assert (v["intact"], v["records"], v["head"]["seq"], v["problems"]) == (True, 3, 3, [])
    rows = httpx.get(f"{api}/v1/audit", params={"user": "ann", "subject": 2}, headers=boss).json()
    assert [(r["seq"], r["user"], r["crime_ref"], r["subject_ids"]) for r in rows] == [
        (2, "ann", "CR-2", [2])
    ]
    # pages: two records, then the one before the last of them
    page = httpx.get(f"{api}/v1/audit", params={"limit": 2}, headers=boss).json()
    assert [r["seq"] for r in page] == [3, 2]
    after = {"limit": 2, "before": page[-1]["seq"]}
    assert [r["seq"] for r in httpx.get(f"{api}/v1/audit", params=after, headers=boss).json()] == [
        1
    ]


def test_expired_and_revoked_tokens_are_refused(api: str, db: Database) -> None:
    token = add_user("kim", "probation")
    second = torch_cli("user", "token", "kim").stdout.splitlines()[-1]
    headers = {"Authorization": f"Bearer {token}"}
    assert httpx.get(f"{api}/v1/subjects", headers=headers).status_code == 200
    expires = db.fetchval("SELECT min(expires_at - created_at) FROM api_tokens")
    assert expires.days == 90
    db.execute("UPDATE api_tokens SET expires_at = now() - interval '1 second'"
               " WHERE token_hash = sha256($1::text::bytea)", token)  # fmt: skip
    r = httpx.get(f"{api}/v1/subjects", headers=headers)
    assert (r.status_code, r.json()["detail"]) == (
        401,
        "the token is not valid: unknown, expired or revoked",
    )
    other = {"Authorization": f"Bearer {second}"}
    assert httpx.get(f"{api}/v1/subjects", headers=other).status_code == 200
    assert torch_cli("user", "revoke", "kim").stdout == "revoked 2 tokens of kim\n"
    assert httpx.get(f"{api}/v1/subjects", headers=other).status_code == 401


def test_repeated_bad_tokens_are_throttled(api: str) -> None:
    good = {"Authorization": f"Bearer {add_user('lee', 'probation')}"}
    codes = [
        httpx.get(f"{api}/v1/subjects", headers={"Authorization": f"Bearer guess{i}"}).status_code
        for i in range(4)
    ]
    assert codes == [401, 401, 401, 429]
    refused = httpx.get(f"{api}/v1/subjects", headers=good)  # the address, not the token
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 61
    assert refused.json()["title"] == "Too many requests"


@pytest.fixture
def caseloads(db: Database) -> dict[str, int]:
    """Teams north and south of force herts, team east of force beds; a subject in each,
    wearing a tag since January."""
    torch_cli("team", "add", "north", "--force", "herts")
    torch_cli("team", "add", "south", "--force", "herts")
    torch_cli("team", "add", "east", "--force", "beds")
    ids = {}
    for team in ("north", "south", "east"):
        ref = f"IOM-{team.upper()}"
        ids[team] = int(torch_cli("subject", "add", ref, "--team", team).stdout.split()[-1][:-1])
        torch_cli("device", "add", f"TAG-{team}")
        torch_cli("assign", f"TAG-{team}", ref, "--from", "2026-01-01T00:00:00Z")
    return ids


def as_user(name: str, role: str, team: str) -> dict[str, str]:
    token = torch_cli("user", "add", name, "--role", role, "--team", team).stdout.split()[-1]
    return {"Authorization": f"Bearer {token}"}


def test_each_role_sees_its_caseload_and_no_more(api: str, caseloads: dict[str, int]) -> None:
    north, south, east = caseloads["north"], caseloads["south"], caseloads["east"]
    nora = as_user("nora", "probation", "north")
    sam = as_user("sam", "supervisor", "south")  # a supervisor of force herts
    adam = as_user("adam", "admin", "north")

    def ids(headers: dict[str, str]) -> list[int]:
        return [s["id"] for s in httpx.get(f"{api}/v1/subjects", headers=headers).json()]

    assert ids(nora) == [north]
    assert ids(sam) == [north, south]
    window = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}
    # another team's subject, or another force's, does not exist as far as they can tell
    for headers, subject in ((nora, south), (sam, east)):
        for path in ("", "/track", "/zones"):
            r = httpx.get(f"{api}/v1/subjects/{subject}{path}", params=window, headers=headers)
            assert (r.status_code, r.json()["detail"]) == (404, f"no subject with id {subject}")
    assert httpx.get(f"{api}/v1/subjects/{north}/track", params=window, headers=nora).is_success
    # admin manages users and devices but reads no location data
    r = httpx.get(f"{api}/v1/subjects/{north}/track", params=window, headers=adam)
    assert r.status_code == 403


def subject_ids(api: str, headers: dict[str, str]) -> list[int]:
    return [s["id"] for s in httpx.get(f"{api}/v1/subjects", headers=headers).json()]


def test_a_subject_moved_to_another_caseload_is_seen_by_its_new_team_only(
    api: str, caseloads: dict[str, int]
) -> None:
    north, south = caseloads["north"], caseloads["south"]
    nora = as_user("nora", "probation", "north")
    steve = as_user("steve", "probation", "south")
    sam = as_user("sam", "supervisor", "south")  # a supervisor of force herts
    out = torch_cli("subject", "move", "IOM-NORTH", "--team", "south").stdout
    assert out == "subject IOM-NORTH moved from team north to team south\n"
    assert subject_ids(api, nora) == []
    r = httpx.get(f"{api}/v1/subjects/{north}", headers=nora)
    assert (r.status_code, r.json()["detail"]) == (404, f"no subject with id {north}")
    assert subject_ids(api, steve) == [north, south]
    # to another force: out of sight of the first force's supervisors
    torch_cli("subject", "move", "IOM-NORTH", "--team", "east")
    assert subject_ids(api, sam) == [south]
    bad_team = torch_cli("subject", "move", "IOM-NORTH", "--team", "west", check=False)
    assert (bad_team.returncode, bad_team.stderr) == (
        1,
        "error: no team named west (torch team add NAME --force FORCE)\n",
    )
    nobody = torch_cli("subject", "move", "IOM-NOBODY", "--team", "south", check=False)
    assert (nobody.returncode, nobody.stderr) == (
        1,
        "error: no subject with reference IOM-NOBODY\n",
    )


def test_a_user_moved_sees_the_new_caseload_and_a_leaver_is_shut_out(
    api: str, caseloads: dict[str, int], db: Database
) -> None:
    nora = as_user("nora", "probation", "north")
    assert subject_ids(api, nora) == [caseloads["north"]]
    out = torch_cli("user", "move", "nora", "--team", "south").stdout
    assert out == "user nora moved from team north to team south\n"
    assert subject_ids(api, nora) == [caseloads["south"]]  # the same token, the next request
    torch_cli("user", "token", "nora")
    out = torch_cli("user", "disable", "nora").stdout
    assert out == "user nora disabled; revoked 2 tokens\n"
    assert httpx.get(f"{api}/v1/subjects", headers=nora).status_code == 401
    for cmd in (("user", "token", "nora"), ("user", "disable", "nora"), ("user", "move", "nora",
                "--team", "north")):  # fmt: skip
        refused = torch_cli(*cmd, check=False)
        assert (refused.returncode, refused.stderr) == (1, "error: no active user named nora\n")
    # the record of who they were stays, for the audit trail that names them
    assert db.fetchval("SELECT count(*) FROM users WHERE name = 'nora'") == 1
    # a user with no live token can be disabled too
    torch_cli("user", "add", "olly", "--role", "officer")
    torch_cli("user", "revoke", "olly")
    out = torch_cli("user", "disable", "olly").stdout
    assert out == "user olly disabled; revoked 0 tokens\n"


def test_the_tags_a_subject_wore_are_listed_for_their_caseload_only(
    api: str, caseloads: dict[str, int], db: Database
) -> None:
    north = caseloads["north"]
    nora = as_user("nora", "probation", "north")
    torch_cli("unassign", "TAG-north", "--at", "2026-06-01T09:00:00Z", "--user", "nora")
    torch_cli("device", "add", "TAG-n2")
    torch_cli("assign", "TAG-n2", "IOM-NORTH", "--from", "2026-06-01T09:30:00Z")
    recorded = db.fetch(
        "SELECT recorded_at, end_recorded_at FROM device_assignments"
        " WHERE subject_id = $1 ORDER BY lower(during)",
        north,
    )
    r = httpx.get(f"{api}/v1/subjects/{north}/devices", headers=nora)
    assert r.json() == [
        {
            "serial": "TAG-north",
            "from": "2026-01-01T00:00:00+00:00",
            "to": "2026-06-01T09:00:00+00:00",
            "recorded_at": recorded[0]["recorded_at"].isoformat(),
            "end_recorded_at": recorded[0]["end_recorded_at"].isoformat(),
            "recorded_by": None,
            "end_recorded_by": "nora",
        },
        {
            "serial": "TAG-n2",
            "from": "2026-06-01T09:30:00+00:00",
            "to": None,
            "recorded_at": recorded[1]["recorded_at"].isoformat(),
            "end_recorded_at": None,
            "recorded_by": None,
            "end_recorded_by": None,
        },
    ]
    steve = as_user("steve", "probation", "south")
    r = httpx.get(f"{api}/v1/subjects/{north}/devices", headers=steve)
    assert (r.status_code, r.json()["detail"]) == (404, f"no subject with id {north}")


def test_zones_of_another_caseload_cannot_be_read_or_changed(  # type: ignore[no-untyped-def]
    api: str, caseloads: dict[str, int]
) -> None:
    nora = as_user("nora", "probation", "north")
    steve = as_user("steve", "probation", "south")
    body = {
        "kind": "exclusion",
        "label": "victim's street",
        "geometry": {"type": "Point", "coordinates": [-0.34, 51.75]},
        "radius_m": 200,
    }
    made = httpx.post(f"{api}/v1/subjects/{caseloads['south']}/zones", json=body, headers=steve)
    assert made.status_code == 201
    zone = made.json()["id"]
    r = httpx.post(f"{api}/v1/subjects/{caseloads['south']}/zones", json=body, headers=nora)
    assert r.status_code == 404
    for method in ("GET", "DELETE"):
        r = httpx.request(method, f"{api}/v1/zones/{zone}", headers=nora)
        assert (r.status_code, r.json()["detail"]) == (404, f"no zone {zone}")
    assert httpx.get(f"{api}/v1/zones/{zone}/versions", headers=nora).status_code == 404
    assert httpx.get(f"{api}/v1/zones/{zone}", headers=steve).status_code == 200


def test_a_crime_scene_query_answers_only_for_the_askers_force(  # type: ignore[no-untyped-def]
    api: str, caseloads: dict[str, int], db: Database
) -> None:
    olly = as_user("olly", "officer", "north")
    body = {
        "crime_ref": "CR-1",
        "reason": "burglary",
        "scene": {"type": "Point", "coordinates": [-0.34, 51.75]},
        "radius_m": 100,
        "from": "2026-11-01T01:00:00Z",
        "to": "2026-11-01T03:00:00Z",
    }
    r = httpx.post(f"{api}/v1/proximity", json=body, headers=olly)
    assert r.status_code == 200
    answered = sorted((x["subject_id"], x["verdict"]) for x in r.json()["results"])
    assert answered == [(caseloads["north"], "no_data"), (caseloads["south"], "no_data")]
    audited = db.fetchval("SELECT subject_ids FROM audit_log WHERE route = '/v1/proximity'")
    assert sorted(audited) == [caseloads["north"], caseloads["south"]]


def test_an_oversized_request_body_is_refused_before_it_is_read(api: str) -> None:
    headers = {"Authorization": f"Bearer {add_user('bea', 'officer')}"}
    huge = b"crime_ref,offence,lat,lon,from,to,radius_m\n" + b"x" * (6 * 1024 * 1024)
    r = httpx.post(
        f"{api}/v1/crime-correlations",
        params={"reason": "bulk"},
        content=huge,
        headers={**headers, "Content-Type": "text/csv"},
    )
    assert (r.status_code, r.headers["content-type"]) == (413, "application/problem+json")
    assert r.json()["detail"] == "the request body may be at most 5242880 bytes"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(7):
            yield b"x" * (1024 * 1024)

    r = httpx.post(
        f"{api}/v1/proximity",
        content=chunks(),
        headers={**headers, "Content-Type": "application/json"},
    )
    assert r.status_code == 413


def test_an_admin_reads_locations_only_when_also_given_a_location_role(
    api: str, caseloads: dict[str, int]
) -> None:
    plain = as_user("ada", "admin", "north")
    out = torch_cli(
        "user", "add", "alan", "--role", "admin", "--role", "supervisor", "--team", "north"
    ).stdout.splitlines()
    assert (
        out[0]
        == "user alan added with role admin, supervisor (id 2); bearer token, valid for 90 days:"
    )
    both = {"Authorization": f"Bearer {out[-1]}"}
    window = {"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}
    track = f"{api}/v1/subjects/{caseloads['south']}/track"
    assert httpx.get(track, params=window, headers=plain).status_code == 403
    assert httpx.get(track, params=window, headers=both).status_code == 200
    # as a supervisor of force herts: the other force's subject stays out of reach
    other = f"{api}/v1/subjects/{caseloads['east']}/track"
    assert httpx.get(other, params=window, headers=both).status_code == 404
    assert httpx.get(f"{api}/v1/audit/verify", headers=both).status_code == 200

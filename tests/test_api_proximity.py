"""POST /v1/proximity over real HTTP, on scenario data ingested through the broker."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest

from tests.services import TORCH, Api, Database, Worker, add_user, service_env, wait_for

START = (datetime.now(UTC) - timedelta(days=2)).replace(hour=17, minute=0, second=0, microsecond=0)


@pytest.fixture(scope="module")
def world(broker, migrated, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:  # type: ignore[no-untyped-def]
    """The `all` scenario without GPS noise, ingested; an API; a user of each role."""
    d = tmp_path_factory.mktemp("world")
    db = Database()
    db.reset()
    sim = [TORCH, "sim", "--scenario", "all", "--no-noise", "--start", START.isoformat()]
    subprocess.run(
        [*sim, "--out", str(d / "s.jsonl"), "--truth", str(d / "truth.json")],
        check=True,
        capture_output=True,
        env=service_env(),
    )
    worker = Worker(d, "api-world").start()
    subprocess.run(
        [TORCH, "sim", "--replay", str(d / "s.jsonl")],
        check=True,
        capture_output=True,
        env=service_env(),
    )
    expected = (
        sum(
            1
            for line in (d / "s.jsonl").read_text().splitlines()
            if "/fixes" in json.loads(line)["topic"]
        )
        - 1
    )
    wait_for(lambda: db.count("fixes") >= expected, timeout=60)
    worker.stop()
    api = Api(d / "api.log")
    tokens = {
        role: add_user(f"{role}1", role) for role in ("officer", "probation", "supervisor", "admin")
    }
    yield {
        "truth": json.loads((d / "truth.json").read_text()),
        "api": api,
        "tokens": tokens,
        "db": db,
        "log": d / "api.log",
    }
    api.stop()
    db.close()


def ask(world: dict[str, Any], body: dict[str, Any], role: str = "officer") -> httpx.Response:
    """POST the body as Python's json writes it (NaN included, as some clients send)."""
    headers = {
        "Authorization": f"Bearer {world['tokens'][role]}",
        "Content-Type": "application/json",
    }
    return httpx.post(
        f"{world['api'].url}/v1/proximity", content=json.dumps(body), headers=headers, timeout=30
    )


def scene_query(truth: dict[str, Any], **changes: Any) -> dict[str, Any]:
    sc = truth["scene"]
    body = {
        "crime_ref": "41/12345/26",
        "reason": "burglary, suspects sought",
        "scene": {"type": "Point", "coordinates": [sc["lon"], sc["lat"]]},
        "radius_m": sc["radius_m"],
        "from": sc["from"],
        "to": sc["to"],
    }
    return {**body, **changes}


def by_ref(answer: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["subject_ref"]: r for r in answer["results"]}


def test_verdicts_for_the_planted_scene(world: dict[str, Any]) -> None:
    truth = world["truth"]
    response = ask(world, scene_query(truth))
    assert response.status_code == 200, response.text
    results = by_ref(response.json())
    subjects = truth["subjects"]
    assert len(results) == len(subjects)  # every subject wearing a device gets a verdict
    present = results[subjects["present"]["ref"]]
    assert (present["verdict"], present["closest_m"]) == ("present", 10.0)
    assert present["fixes"] and all(
        set(f) == {"time", "lat", "lon", "acc"} for f in present["fixes"]
    )
    # the tag whose fixes they are, as the assignments record it
    since = world["db"].fetchval(
        "SELECT lower(a.during) FROM device_assignments a JOIN devices d ON d.id = a.device_id"
        " WHERE d.serial = $1",
        subjects["present"]["serial"],
    )
    assert present["devices"] == [
        {"serial": subjects["present"]["serial"], "from": since.isoformat(), "to": None}
    ]
    for key in ("near_150", "near_400"):
        r = results[subjects[key]["ref"]]
        assert r["verdict"] == "excluded"
        assert abs(r["closest_m"] - subjects[key]["closest_true_m"]) <= 1.0
        when = datetime.fromisoformat(r["closest_at"]) - datetime.fromisoformat(
            subjects[key]["closest_true_at"]
        )
        assert abs(when.total_seconds()) <= 1.0
        assert (r["fixes"], r["closest_point"], r["coverage"], r["devices"]) == ([], None, 1.0, [])
    elsewhere = results[subjects["elsewhere"]["ref"]]
    assert elsewhere["verdict"] == "excluded" and elsewhere["closest_m"] > 15_000
    silent = results[subjects["silent"]["ref"]]
    assert (silent["verdict"], silent["closest_m"], silent["fixes"]) == ("no_data", None, [])


def test_a_presence_on_one_gps_outlier_comes_with_its_caveat(world: dict[str, Any]) -> None:
    """The scenario's subject 3 km away with one fix at the scene: `present` by the method,
    as its closest approach is that fix, with a reason that says it is likely an outlier,
    and the fixes a minute either side of it, 3 km off, among the fixes given."""
    truth = world["truth"]
    answer = ask(world, scene_query(truth)).json()
    r = by_ref(answer)[truth["subjects"]["outlier"]["ref"]]
    spike = datetime.fromisoformat(truth["subjects"]["outlier"]["outlier_at"])
    assert (r["verdict"], r["closest_m"]) == ("present", 0.0)
    # the fix itself, as its coordinates' sixth decimal places it: within a millisecond
    assert abs((datetime.fromisoformat(r["closest_at"]) - spike).total_seconds()) <= 0.001
    assert len(r["reasons"]) == 2
    assert r["reasons"][1].startswith(f"the fix at {spike:%Y-%m-%dT%H:%M:%SZ} would mean ")
    assert r["reasons"][1].endswith("it may be a GPS outlier, and the closest approach rests on it")
    minute = timedelta(minutes=1)
    assert [datetime.fromisoformat(f["time"]) for f in r["fixes"]] == [
        spike - minute,
        spike,
        spike + minute,
    ]
    # as reported: the spike at the scene, its neighbours 3 km north (0.027 degrees)
    north = [r["fixes"][k]["lat"] - truth["scene"]["lat"] for k in range(3)]
    assert [round(d, 3) for d in north] == [0.027, 0.0, 0.027]


def test_a_car_passing_between_two_fixes_is_found(world: dict[str, Any]) -> None:
    truth = world["truth"]
    car = truth["subjects"]["transit_Z2"]
    ring = truth["exclusion_zones"]["Z2"]["coordinates"][0]
    centre = [sum(p[0] for p in ring[:4]) / 4, sum(p[1] for p in ring[:4]) / 4]
    entered = datetime.fromisoformat(car["entered"])
    body = scene_query(
        truth,
        scene={"type": "Point", "coordinates": centre},
        radius_m=50,
        **{
            "from": (entered - timedelta(minutes=10)).isoformat(),
            "to": (entered + timedelta(minutes=10)).isoformat(),
        },
    )
    r = by_ref(ask(world, body).json())[car["ref"]]
    assert r["verdict"] == "present"
    assert r["closest_m"] <= 1.0
    assert len(r["fixes"]) == 2  # the two fixes either side of the crossing, 1.5 km apart


def test_a_gap_that_could_reach_the_scene_is_possible(world: dict[str, Any]) -> None:
    truth = world["truth"]
    k = truth["subjects"]["hidden_breach"]
    ring = truth["exclusion_zones"]["Z3"]["coordinates"][0]
    centre = [sum(p[0] for p in ring[:4]) / 4, sum(p[1] for p in ring[:4]) / 4]
    body = scene_query(
        truth,
        scene={"type": "Point", "coordinates": centre},
        radius_m=50,
        **{"from": k["gap_from"], "to": k["gap_to"]},
    )
    r = by_ref(ask(world, body).json())[k["ref"]]
    # the fixes taken in the gap were uploaded later, so the track is complete: present
    assert r["verdict"] == "present" and r["coverage"] == 1.0


def test_the_query_is_audited_and_recorded(world: dict[str, Any]) -> None:
    db: Database = world["db"]
    before = db.count("audit_log")
    response = ask(world, scene_query(world["truth"], reason="audit check"))
    answer = response.json()
    row = db.fetch(
        "SELECT u.name, a.method, a.route, a.crime_ref, a.reason, a.query_id::text,"
        " cardinality(a.subject_ids) AS n FROM audit_log a JOIN users u ON u.id = a.user_id"
        " ORDER BY a.id DESC LIMIT 1"
    )[0]
    assert db.count("audit_log") == before + 1
    assert tuple(row) == (
        "officer1",
        "POST",
        "/v1/proximity",
        "41/12345/26",
        "audit check",
        answer["query_id"],
        len(answer["results"]),
    )
    stored = db.fetchval(
        "SELECT response FROM proximity_queries WHERE id = $1::uuid", answer["query_id"]
    )
    assert stored == response.content  # the bytes sent
    # the two large values of every answer's records are compressed with lz4, which costs
    # PostgreSQL a third of pglz's time for the thousands of subjects a query audits
    compression = db.fetch(
        "SELECT attrelid::regclass::text, attname, attcompression::text FROM pg_attribute"
        " WHERE (attrelid, attname) IN (('audit_log'::regclass, 'subject_ids'),"
        " ('proximity_queries'::regclass, 'response')) ORDER BY 1"
    )
    assert [tuple(r) for r in compression] == [
        ("audit_log", "subject_ids", "l"),
        ("proximity_queries", "response", "l"),
    ]


def test_answers_asked_at_once_are_the_answer_asked_alone(world: dict[str, Any]) -> None:
    """Eight queries at once share the API's pool (each reads over up to three connections
    where it has them to spare, else over one): each is answered, with the verdicts of the
    same query asked alone, and each is audited."""
    db: Database = world["db"]
    body = scene_query(world["truth"])
    alone = ask(world, body).json()["results"]
    before = db.count("audit_log")
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: ask(world, body), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert all(a.json()["results"] == alone for a in answers)
    assert len({a.json()["query_id"] for a in answers}) == 8
    assert db.count("audit_log") == before + 8


def test_no_token_bad_token_and_wrong_role(world: dict[str, Any]) -> None:
    url = f"{world['api'].url}/v1/proximity"
    body = scene_query(world["truth"])
    none = httpx.post(url, json=body)
    assert none.status_code == 401 and none.headers["content-type"] == "application/problem+json"
    assert none.json()["detail"] == "send Authorization: Bearer <token>"
    bad = httpx.post(url, json=body, headers={"Authorization": "Bearer nope"})
    assert (bad.status_code, bad.json()["detail"]) == (
        401,
        "the token is not valid: unknown, expired or revoked",
    )
    admin = ask(world, body, role="admin")
    assert (admin.status_code, admin.json()["detail"]) == (
        403,
        "the admin role may not use this route",
    )
    for role in ("probation", "supervisor"):
        assert ask(world, body, role=role).status_code == 200
    assert httpx.get(f"{world['api'].url}/healthz").status_code == 200  # health needs no token


@pytest.mark.parametrize(
    ("changes", "field", "detail"),
    [
        ({"radius_m": 6000}, "radius_m", "radius_m: Input should be less than or equal to 5000"),
        (
            {"to": "2026-01-01T00:00:00Z", "from": "2026-01-02T00:00:00Z"},
            "to",
            "to must be after from",
        ),
        (
            {"from": "2026-01-01T00:00:00Z", "to": "2026-01-09T00:00:00Z"},
            "to",
            "the window may be at most 7 days long",
        ),
        ({"from": "2026-01-01T00:00:00"}, "from", "from: Input should have timezone info"),
        (
            {"from": "0001-01-01T00:00:00+01:00", "to": "0001-01-01T01:00:00+01:00"},
            "from",
            "from: must lie between 2000-01-01 and 2100-01-01 (UTC); "
            "to: must lie between 2000-01-01 and 2100-01-01 (UTC)",
        ),
        (
            {
                "scene": {
                    "type": "Polygon",
                    "coordinates": [
                        [
                            [-0.34, 51.75],
                            [-0.33, 51.76],
                            [-0.33, 51.75],
                            [-0.34, 51.76],
                            [-0.34, 51.75],
                        ]
                    ],
                }
            },
            "scene",
            "scene is not a valid polygon: Self-intersection at [-0.335, 51.755]",
        ),
        (
            {"scene": {"type": "Point", "coordinates": [-0.34]}},
            "scene",
            "scene: a position is [longitude, latitude] in decimal degrees, found [-0.34]",
        ),
        (
            {"scene": {"type": "Point", "coordinates": [float("nan"), 51.75]}},
            "scene",
            "scene: a position is [longitude, latitude] in decimal degrees, found [NaN, 51.75]",
        ),
        (
            {"scene": {"type": "Polygon", "coordinates": [[-0.34, 51.75], [-0.33, 51.76]]}},
            "scene",
            "scene: a position is [longitude, latitude] in decimal degrees, found -0.34",
        ),
        (
            {
                "scene": {
                    "type": "Polygon",
                    "coordinates": [[[-0.34, 51.75], [-0.33, 51.76], [-0.34, 51.75]]],
                }
            },
            "scene",
            "scene has a ring of 3 positions; a ring needs at least 4, the last the same as the "
            "first",
        ),
        ({"scene": {"type": "Point"}}, "scene", "scene has no coordinates"),
        (
            {"crime_ref": "41/1\x00/26"},
            "crime_ref",
            "crime_ref: must not contain the NUL character (U+0000)",
        ),
        (
            {"scene": {"type": "Point", "coordinates": [51.75, -0.34]}},
            "scene",
            "scene lies outside the service area (lon -9.0..2.0, lat 49.75..61.0); coordinates are "
            "[longitude, latitude]",
        ),
        ({"crime_ref": ""}, "crime_ref", "crime_ref: String should have at least 1 character"),
    ],
)
def test_bad_requests_say_what_to_fix(
    world: dict[str, Any], changes: dict[str, Any], field: str, detail: str
) -> None:
    response = ask(world, scene_query(world["truth"], **changes))
    assert response.status_code == 422
    problem = response.json()
    assert (problem["detail"], problem["errors"][0]["field"]) == (detail, field)


def test_a_body_that_is_not_json_is_refused_with_where_it_went_wrong(
    world: dict[str, Any],
) -> None:
    response = httpx.post(
        f"{world['api'].url}/v1/proximity",
        content=b'{"crime_ref": "41/1", }',
        headers={
            "Authorization": f"Bearer {world['tokens']['officer']}",
            "Content-Type": "application/json",
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "field": "body",
            "message": "the body is not valid JSON: Expecting property name enclosed in double "
            "quotes at character 22",
        }
    ]


def test_missing_reason_is_refused(world: dict[str, Any]) -> None:
    body = scene_query(world["truth"])
    del body["reason"]
    problem = ask(world, body).json()
    assert problem["errors"] == [{"field": "reason", "message": "Field required"}]


def get(world: dict[str, Any], path: str, role: str = "probation", **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {world['tokens'][role]}"}
    return httpx.get(f"{world['api'].url}{path}", params=params, headers=headers, timeout=30)


def subject_id(world: dict[str, Any], key: str) -> int:
    ref = world["truth"]["subjects"][key]["ref"]
    [row] = get(world, "/v1/subjects", ref=ref).json()
    return int(row["id"])


def test_subjects_by_reference_with_their_current_device(world: dict[str, Any]) -> None:
    s = world["truth"]["subjects"]["present"]
    rows = get(world, "/v1/subjects", role="officer", ref=s["ref"]).json()
    assert [(r["ref"], r["status"], r["device"]) for r in rows] == [
        (s["ref"], "active", s["serial"])
    ]
    assert get(world, f"/v1/subjects/{rows[0]['id']}", role="admin").json() == rows[0]
    missing = get(world, "/v1/subjects/987654")
    assert (missing.status_code, missing.json()["detail"]) == (404, "no subject with id 987654")


def test_position_between_two_fixes_and_in_a_gap(world: dict[str, Any]) -> None:
    db: Database = world["db"]
    truth = world["truth"]
    walker = subject_id(world, "near_150")
    at = datetime.fromisoformat(truth["scene"]["from"]) + timedelta(seconds=30)
    before = db.count("audit_log")
    body = get(world, f"/v1/subjects/{walker}/position", at=at.isoformat()).json()
    assert (body["before"]["time"], body["after"]["time"]) == (
        truth["scene"]["from"],
        (at + timedelta(seconds=30)).isoformat().replace("+00:00", "Z"),
    )
    mid = [(body["before"][k] + body["after"][k]) / 2 for k in ("lon", "lat")]
    assert body["position"]["coordinates"] == pytest.approx(mid, abs=1e-6)  # half-way, 1.25 m/s
    assert body["device"] == truth["subjects"]["near_150"]["serial"]
    # before any tag was assigned: no position, no tag to blame for it, and no track until
    # the subject's first fix, however long after
    unworn = get(world, f"/v1/subjects/{walker}/position", at="2001-01-01T00:00:00Z").json()
    first = db.fetchval(
        "SELECT min(f.fix_time) FROM fixes f JOIN device_assignments a"
        " ON a.device_id = f.device_id AND a.during @> f.fix_time WHERE a.subject_id = $1",
        walker,
    )
    assert (unworn["device"], unworn["position"], unworn["gap"]) == (
        None,
        None,
        {"from": None, "to": first.isoformat().replace("+00:00", "Z")},
    )
    assert db.count("audit_log") == before + 2
    silent = subject_id(world, "silent")
    gap = get(world, f"/v1/subjects/{silent}/position", at=truth["scene"]["from"]).json()
    assert (
        gap["position"] is None and gap["gap"]["from"] < truth["scene"]["from"] < gap["gap"]["to"]
    )
    assert gap["device"] == truth["subjects"]["silent"]["serial"]  # worn, and silent
    assert (
        get(world, f"/v1/subjects/{walker}/position", role="officer", at=at.isoformat()).status_code
        == 403
    )


def test_times_and_ids_out_of_range_are_refused_on_every_kind_of_route(
    world: dict[str, Any],
) -> None:
    walker = subject_id(world, "near_150")
    year_one = "0001-01-01T00:00:00+01:00"  # no UTC time: before the calendar began
    asked = [
        get(world, f"/v1/subjects/{walker}/position", at=year_one),
        get(world, f"/v1/subjects/{walker}/track", **{"from": year_one, "to": year_one}),
        get(world, "/v1/audit", role="supervisor", **{"from": "2100-01-01T00:00:00Z"}),
    ]
    asked.append(get(world, f"/v1/subjects/{2**63}/zones"))  # past the largest id there is
    assert [(r.status_code, r.json()["errors"][0]) for r in asked] == [
        (422, {"field": "at", "message": "must lie between 2000-01-01 and 2100-01-01 (UTC)"}),
        (422, {"field": "from", "message": "must lie between 2000-01-01 and 2100-01-01 (UTC)"}),
        (422, {"field": "from", "message": "must lie between 2000-01-01 and 2100-01-01 (UTC)"}),
        (
            422,
            {
                "field": "subject_id",
                "message": "Input should be less than or equal to 9223372036854775807",
            },
        ),
    ]


def test_track_in_three_formats(world: dict[str, Any]) -> None:
    walker = subject_id(world, "near_150")
    start = datetime.fromisoformat(world["truth"]["scene"]["from"])
    window = {"from": start.isoformat(), "to": (start + timedelta(minutes=10)).isoformat()}
    csv_rows = get(world, f"/v1/subjects/{walker}/track", format="csv", **window).text.splitlines()
    assert csv_rows[0] == "subject_id,time,lat,lon,acc,src,speed" and len(csv_rows) == 1 + 11
    geo = get(world, f"/v1/subjects/{walker}/track", **window).json()
    assert geo["features"][0]["geometry"]["type"] == "MultiLineString"
    assert [len(part) for part in geo["features"][0]["geometry"]["coordinates"]] == [11]
    assert len(geo["features"]) - 1 == 11 and geo["features"][0]["properties"]["gaps"] == []
    ref = world["truth"]["subjects"]["near_150"]["ref"]
    assert geo["features"][0]["properties"]["subject_ref"] == ref
    gpx = get(world, f"/v1/subjects/{walker}/track", format="gpx", **window).text
    assert gpx.count("<trkpt ") == 11 and gpx.startswith('<?xml version="1.0"')
    assert gpx.count("<trkseg>") == 1 and f"<trk><name>{ref}</name>" in gpx
    long = get(
        world,
        f"/v1/subjects/{walker}/track",
        **{"from": "2026-01-01T00:00:00Z", "to": "2026-02-01T00:00:00Z"},
    )
    assert (long.status_code, long.json()["detail"]) == (
        422,
        "the window may be at most 7 days long",
    )


def test_a_track_is_broken_at_a_gap_not_drawn_across_it(world: dict[str, Any]) -> None:
    """The "silent" tag was off from half an hour before the scene's window to half an hour
    after it: its track over the two hours around is two stretches with the gap between."""
    silent = subject_id(world, "silent")
    sc = world["truth"]["scene"]
    off_from = datetime.fromisoformat(sc["from"]) - timedelta(minutes=30)
    off_to = datetime.fromisoformat(sc["to"]) + timedelta(minutes=30)
    window = {
        "from": (off_from - timedelta(minutes=30)).isoformat(),
        "to": (off_to + timedelta(minutes=30)).isoformat(),
    }
    rows = get(world, f"/v1/subjects/{silent}/track", format="csv", **window).text.splitlines()
    times = [row.split(",")[1] for row in rows[1:]]
    before = [t for t in times if datetime.fromisoformat(t) < off_from]
    after = [t for t in times if datetime.fromisoformat(t) >= off_to]
    assert len(before) + len(after) == len(times) and len(before) > 1 and len(after) > 1
    line = get(world, f"/v1/subjects/{silent}/track", **window).json()["features"][0]
    assert line["properties"]["gaps"] == [{"from": before[-1], "to": after[0]}]
    assert [len(part) for part in line["geometry"]["coordinates"]] == [len(before), len(after)]
    gpx = get(world, f"/v1/subjects/{silent}/track", format="gpx", **window).text
    assert [segment.count("<trkpt ") for segment in gpx.split("<trkseg>")[1:]] == [
        len(before),
        len(after),
    ]


def test_evidence_pack_holds_the_answer_with_a_manifest_of_hashes(world: dict[str, Any]) -> None:
    import csv
    import hashlib
    import io
    import zipfile

    sent = ask(world, scene_query(world["truth"]))
    answer = sent.json()
    # asked at a known moment, so that the files' dates can be held to it
    asked = datetime(2026, 11, 21, 4, 30, 17, 250000, tzinfo=UTC)
    world["db"].execute(
        "UPDATE proximity_queries SET at = $1 WHERE id = $2", asked, UUID(answer["query_id"])
    )
    response = get(world, f"/v1/proximity/{answer['query_id']}/evidence", role="officer")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    z = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(z.namelist()) == [
        "MANIFEST.sha256",
        "answer.json",
        "fixes.csv",
        "method.md",
        "parameters.json",
        "query.json",
        "request.json",
        "verdicts.json",
        "version.txt",
    ]
    manifest = dict(
        reversed(line.split("  ")) for line in z.read("MANIFEST.sha256").decode().splitlines()
    )
    assert {name: hashlib.sha256(z.read(name)).hexdigest() for name in manifest} == manifest
    assert sorted(manifest) == sorted(set(z.namelist()) - {"MANIFEST.sha256"})
    assert z.read("answer.json") == sent.content  # the answer, byte for byte, as sent
    assert json.loads(z.read("verdicts.json")) == answer["results"]
    query = json.loads(z.read("query.json"))
    assert (query["asked_by"], query["asked_at"]) == (
        "officer1",
        "2026-11-21T04:30:17.250000+00:00",
    )
    # every file dated when the query was asked (zip dates: UTC, to even seconds), not when
    # the pack was fetched; so fetched again, the pack is the same bytes
    assert {i.date_time for i in z.infolist()} == {(2026, 11, 21, 4, 30, 16)}
    again = get(world, f"/v1/proximity/{answer['query_id']}/evidence", role="officer")
    assert hashlib.sha256(again.content).digest() == hashlib.sha256(response.content).digest()
    fixes = list(csv.DictReader(io.StringIO(z.read("fixes.csv").decode())))
    assert len(fixes) == sum(len(r["fixes"]) for r in answer["results"])
    present = world["truth"]["subjects"]["present"]
    mine = [f for f in fixes if f["subject_ref"] == present["ref"]]
    assert mine and {f["serial"] for f in mine} == {present["serial"]}
    other = add_user("officer2", "officer")
    stranger = httpx.get(
        f"{world['api'].url}/v1/proximity/{answer['query_id']}/evidence",
        headers={"Authorization": f"Bearer {other}"},
    )
    assert stranger.status_code == 404  # another officer's query does not exist for them
    assert (
        get(world, f"/v1/proximity/{answer['query_id']}/evidence", role="supervisor").status_code
        == 200
    )


def crimes_csv(world: dict[str, Any]) -> str:
    from torch import grid

    sc = world["truth"]["scene"]
    e, n = grid.point_to_grid(sc["lon"], sc["lat"])
    return (
        "crime_ref,offence,lat,lon,easting,northing,from,to,radius_m\n"
        f"41/1/26,burglary,{sc['lat']},{sc['lon']},,,{sc['from']},{sc['to']},100\n"
        f"41/2/26,robbery,,,{e:.1f},{n:.1f},{sc['from']},{sc['to']},100\n"
        f"41/3/26,theft,{sc['lat']},{sc['lon']},,,{sc['from']},{sc['to']},9000\n"
        f"41/4/26,theft,{sc['lat']},{sc['lon']},,,yesterday,{sc['to']},100\n"
    )


def test_bulk_correlation_job_with_progress_and_bad_rows(world: dict[str, Any]) -> None:
    present = world["truth"]["subjects"]["present"]["ref"]
    headers = {"Authorization": f"Bearer {world['tokens']['officer']}", "Content-Type": "text/csv"}
    started = httpx.post(
        f"{world['api'].url}/v1/crime-correlations",
        content=crimes_csv(world),
        params={"reason": "weekly acquisitive crime check"},
        headers=headers,
    )
    assert started.status_code == 202, started.text
    job = started.json()
    assert (job["status"], job["total"]) == ("running", 2)
    assert job["errors"] == [
        {"line": 4, "message": "radius_m 9000 is not between 0 and 5000"},
        {"line": 5, "message": "from 'yesterday' is not an RFC 3339 time"},
    ]
    done = wait_for(
        lambda: (
            (j := get(world, f"/v1/crime-correlations/{job['job_id']}", role="officer").json())[
                "status"
            ]
            == "done"
            and j
        ),
        timeout=30,
    )
    assert (done["done"], done["failure"]) == (2, None)
    found = {
        (r["line"], r["crime_ref"], r["subject_ref"], r["verdict"], r["caveat"])
        for r in done["results"]
    }
    # the subject 3 km off with one fix at the scene: present, with the caveat
    outlier = world["truth"]["subjects"]["outlier"]
    caveat = (
        f"The fix at {datetime.fromisoformat(outlier['outlier_at']):%Y-%m-%dT%H:%M:%SZ} would mean "
    )
    assert {(2, "41/1/26", present, "present", ""), (3, "41/2/26", present, "present", "")} <= found
    assert [(r[0], r[3]) for r in sorted(found) if r[2] == outlier["ref"]] == [
        (2, "present"),
        (3, "present"),
    ]
    assert all(
        r[4].startswith(caveat)
        and r[4].endswith("it may be a GPS outlier, and the closest approach rests on it.")
        for r in found
        if r[2] == outlier["ref"]
    )
    assert all(r["verdict"] in ("present", "possible") for r in done["results"])
    assert (
        get(world, f"/v1/crime-correlations/{job['job_id']}", role="probation").status_code == 403
    )


def test_a_job_of_more_crimes_than_a_chunk_is_shared_among_worker_processes(
    world: dict[str, Any],
) -> None:
    """More crimes than a chunk (torch.correlate.CHUNK) go to worker processes: 300 copies of
    the scene's crime find, each, what the same crime finds alone."""
    from torch import correlate

    sc = world["truth"]["scene"]
    headers = {"Authorization": f"Bearer {world['tokens']['officer']}", "Content-Type": "text/csv"}

    def job(n: int) -> dict[str, Any]:
        rows = "".join(
            f"41/{k}/26,burglary,{sc['lat']},{sc['lon']},{sc['from']},{sc['to']},100\n"
            for k in range(n)
        )
        started = httpx.post(
            f"{world['api'].url}/v1/crime-correlations",
            content="crime_ref,offence,lat,lon,from,to,radius_m\n" + rows,
            params={"reason": "weekly acquisitive crime check"},
            headers=headers,
        )
        assert started.status_code == 202, started.text
        url = f"/v1/crime-correlations/{started.json()['job_id']}"
        return wait_for(
            lambda: (j := get(world, url, role="officer").json())["status"] == "done" and j,
            timeout=60,
        )

    assert correlate.CHUNK < 300
    alone, shared = job(1), job(300)
    assert (shared["done"], shared["total"], shared["failure"]) == (300, 300, None)
    one = [{k: v for k, v in r.items() if k not in ("line", "crime_ref")} for r in alone["results"]]
    assert len(one) >= 2  # the subject at the scene and the outlier's, at least
    assert shared["results"] == [
        {"line": k + 2, "crime_ref": f"41/{k}/26", **r} for k in range(300) for r in one
    ]
    logged = [json.loads(line) for line in world["log"].read_text().splitlines()]
    told = [e["message"] for e in logged if e.get("message", "").startswith("correlation job")]
    assert [m.split(": ")[1].rsplit(" in ", 1)[0] for m in told[-2:]] == [
        f"1 crime, in the API's process, {len(one)} findings",
        f"300 crimes, shared among 2 worker processes, {300 * len(one):,} findings",
    ]


def test_a_job_left_running_by_a_stopped_api_says_it_was_interrupted(
    world: dict[str, Any], tmp_path: Path
) -> None:
    db: Database = world["db"]
    officer = db.fetchval("SELECT id FROM users WHERE name = 'officer1'")
    job_id = uuid4()
    db.execute(
        "INSERT INTO correlation_jobs (id, user_id, reason, status, total)"
        " VALUES ($1, $2, 'weekly acquisitive crime check', 'running', 3)",
        job_id,
        officer,
    )
    restarted = Api(tmp_path / "api.log", port=18002)  # its start-up finds the job running
    restarted.stop()
    job = get(world, f"/v1/crime-correlations/{job_id}", role="officer").json()
    assert (job["status"], job["done"], job["results"], job["failure"]) == (
        "interrupted",
        0,
        None,
        "the API stopped before the job finished; start it again",
    )


def test_correlate_from_the_command_line(world: dict[str, Any], tmp_path: Path) -> None:
    present = world["truth"]["subjects"]["present"]["ref"]
    crimes = tmp_path / "crimes.csv"
    crimes.write_text(crimes_csv(world))
    result = subprocess.run(
        [
            TORCH,
            "correlate",
            str(crimes),
            "--user",
            "supervisor1",
            "--reason",
            "weekly check",
            "--out",
            str(tmp_path / "found.csv"),
        ],
        capture_output=True,
        text=True,
        env=service_env(),
    )
    assert result.returncode == 1  # bad rows were reported
    assert f"{crimes}:4: radius_m 9000 is not between 0 and 5000" in result.stderr
    assert "2 crimes, 2 bad rows," in result.stderr
    rows = (tmp_path / "found.csv").read_text().splitlines()
    assert rows[0] == (
        "line,crime_ref,offence,subject_id,subject_ref,verdict,closest_m,closest_at,caveat"
    )
    assert any(r.startswith("2,41/1/26,burglary,") and f",{present},present," in r for r in rows)
    assert (
        world["db"].fetchval(
            "SELECT reason FROM audit_log WHERE route = 'torch correlate' ORDER BY id DESC LIMIT 1"
        )
        == "weekly check"
    )

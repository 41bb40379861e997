"""The simulator: deterministic, physically plausible, true to its ground truth, and
decodable by the ingest path except where it means to be broken."""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from shapely.geometry import LineString, shape
from shapely.geometry import Point as ShapelyPoint

from simulators import fleet, scenarios
from simulators.routine import make_subject, timeline
from simulators.tag import Options
from simulators.world import SPEED_LIMIT, Mode, Point
from tests.services import INGEST, MQTT_PORT, TORCH, Database, service_env, wait_for
from torch.decode import Limits, decode

BEGIN = datetime(2026, 11, 2, 0, 0, tzinfo=UTC).timestamp()  # a Monday
LIMITS = Limits(max_age=timedelta(days=10_000))


def run_fleet(n: int, hours: float, opts: Options, seed: int = 3) -> list[fleet.Out]:
    return list(fleet.stream(fleet.tags(n, seed, opts, BEGIN, BEGIN + hours * 3600)))


def fixes_of(payload: str) -> list[dict[str, object]]:
    body = json.loads(payload)
    return body if isinstance(body, list) else [body]


def test_same_seed_same_bytes_other_seed_other_bytes() -> None:
    a = [(o.topic, o.payload) for o in run_fleet(8, 12, Options())]
    b = [(o.topic, o.payload) for o in run_fleet(8, 12, Options())]
    c = [(o.topic, o.payload) for o in run_fleet(8, 12, Options(), seed=4)]
    assert a == b
    assert a != c
    assert len(a) > 8 * 12 * 50


def test_cli_writes_identical_files_for_the_same_seed(tmp_path: Path) -> None:
    args = [
        "sim",
        "--tags",
        "4",
        "--seed",
        "9",
        "--start",
        "2026-11-02T00:00:00Z",
        "--hours",
        "3",
        "--pace",
        "0",
    ]
    for name in ("a", "b"):
        subprocess.run(
            [TORCH, *args, "--out", str(tmp_path / f"{name}.jsonl")],
            check=True,
            capture_output=True,
            env=service_env(),
        )
    first = (tmp_path / "a.jsonl").read_bytes()
    assert first == (tmp_path / "b.jsonl").read_bytes()
    row = json.loads(first.splitlines()[0])
    assert sorted(row) == ["payload", "topic"] and isinstance(row["payload"], str)
    members = json.loads((tmp_path / "a.jsonl.fleet.json").read_text())["members"]
    assert [m["ref"] for m in members] == ["IOM-S00001", "IOM-S00002", "IOM-S00003", "IOM-S00004"]


def test_outliers_move_only_their_own_fixes_300_m_to_3_km() -> None:
    """The same fleet with and without outliers: the same messages, but for the fixes put
    300 m to 3 km off (their own random stream leaves every other draw as it was), about
    the share asked for."""
    quiet = Options(outlier_rate=0.0, malformed_rate=0, duplicate_rate=0)
    loud = Options(outlier_rate=0.05, malformed_rate=0, duplicate_rate=0)
    a, b = run_fleet(6, 12, quiet), run_fleet(6, 12, loud)
    assert [(o.t, o.topic) for o in a] == [(o.t, o.topic) for o in b]
    moved = total = 0
    for x, y in zip(a, b, strict=True):
        if "/fixes" not in x.topic and not x.topic.startswith("owntracks/"):
            assert x.payload == y.payload
            continue
        for fa, fb in zip(fixes_of(x.payload), fixes_of(y.payload), strict=True):
            d = Point.of(float(fa["lat"]), float(fa["lon"])).dist(  # type: ignore[arg-type]
                Point.of(float(fb["lat"]), float(fb["lon"]))  # type: ignore[arg-type]
            )
            assert d < 0.2 or 299 < d < 3001
            assert {k: v for k, v in fa.items() if k not in ("lat", "lon")} == {
                k: v for k, v in fb.items() if k not in ("lat", "lon")
            }
            total += 1
            moved += d > 1
    assert 0.035 < moved / total < 0.065, (moved, total)


def test_true_tracks_never_outrun_their_mode() -> None:
    for i in range(60):
        legs = timeline(make_subject(i, 5), BEGIN, BEGIN + 3 * 86400, 5).legs
        for before, leg in itertools.pairwise(legs):
            assert leg.t0 == pytest.approx(before.t1) and leg.a == before.b  # no teleporting
        for leg in legs:
            assert leg.speed <= SPEED_LIMIT[leg.mode] + 1e-9, (i, leg)


def test_emitted_fixes_without_noise_never_jump_faster_than_a_car() -> None:
    last: dict[str, tuple[float, Point]] = {}
    fastest = 0.0
    for o in run_fleet(40, 36, Options(noise=False, malformed_rate=0, owntracks_share=0)):
        if not o.topic.endswith("/fixes"):
            continue
        for f in fixes_of(o.payload):
            t = datetime.fromisoformat(str(f["ts"])).timestamp()
            p = Point.of(float(f["lat"]), float(f["lon"]))  # type: ignore[arg-type]
            if o.topic in last and t > last[o.topic][0]:
                t0, p0 = last[o.topic]
                fastest = max(fastest, (p.dist(p0) - 0.5) / (t - t0))
            last[o.topic] = (t, p)
    assert 20.0 < fastest <= SPEED_LIMIT[Mode.CAR]


def test_every_message_decodes_except_the_malformed_share() -> None:
    outs = run_fleet(30, 24, Options(malformed_rate=0.05))
    rejected = {
        o.seq * 100_000 + o.tag
        for o in outs
        if decode(o.topic, o.payload.encode(), datetime.fromtimestamp(o.t, UTC), LIMITS).rejections
    }
    garbled = {o.seq * 100_000 + o.tag for o in outs if o.kind == "malformed"}
    assert rejected == garbled  # the decoder refuses exactly what was garbled
    share = len(garbled) / sum(o.kind != "event" for o in outs)
    assert 0.04 < share < 0.06


def test_fleet_has_owntracks_phones_buffered_uploads_duplicates_and_events() -> None:
    outs = run_fleet(60, 48, Options(owntracks_share=0.1, forget_charge=0.8))
    kinds = {o.kind for o in outs}
    assert kinds == {"fix", "fixes", "duplicate", "malformed", "event"}
    assert any(o.topic.startswith("owntracks/sim/p") for o in outs)
    events = {json.loads(o.payload)["type"] for o in outs if o.kind == "event"}
    assert events == {"charger_on", "charger_off", "strap_open", "strap_closed", "battery_low"}
    per_tag: dict[str, list[str]] = {}
    for o in outs:
        if o.kind == "event":
            per_tag.setdefault(o.topic, []).append(json.loads(o.payload)["type"])
    for kinds in per_tag.values():  # the charger is plugged in and out in turn
        plugs = [k for k in kinds if k.startswith("charger")]
        assert all(a != b for a, b in itertools.pairwise(plugs))
    late = [o for o in outs if o.kind == "fixes"]
    assert all(len(fixes_of(o.payload)) >= 2 for o in late)
    # a buffered upload is published after the fixes it holds were taken
    assert all(
        datetime.fromisoformat(str(fixes_of(o.payload)[0]["ts"])).timestamp() < o.t for o in late
    )


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, list[tuple[str, str]]]:  # type: ignore[type-arg]
    d = tmp_path_factory.mktemp("scenario")
    subprocess.run(
        [
            TORCH,
            "sim",
            "--scenario",
            "all",
            "--start",
            "2026-11-20T17:00:00Z",
            "--out",
            str(d / "s.jsonl"),
            "--truth",
            str(d / "truth.json"),
        ],
        check=True,
        capture_output=True,
        env=service_env(),
    )
    rows = [json.loads(line) for line in (d / "s.jsonl").read_text().splitlines()]
    return json.loads((d / "truth.json").read_text()), [(r["topic"], r["payload"]) for r in rows]


def fix_track(rows: list[tuple[str, str]], serial: str) -> list[tuple[float, Point, dict]]:  # type: ignore[type-arg]
    out = []
    for topic, payload in rows:
        if topic == f"tags/{serial}/fixes":
            for f in fixes_of(payload):
                t = datetime.fromisoformat(str(f["ts"])).timestamp()
                out.append((t, Point.of(float(f["lat"]), float(f["lon"])), f))  # type: ignore[arg-type]
    return sorted(out, key=lambda x: x[0])


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_list_scenarios() -> None:
    out = subprocess.run(
        [TORCH, "sim", "--list-scenarios"], capture_output=True, text=True, check=True
    ).stdout
    assert [line.split()[0] for line in out.splitlines()] == list(scenarios.CATALOGUE)


def test_crime_scene_truth_matches_the_emitted_fixes(scenario) -> None:  # type: ignore[no-untyped-def]
    truth, rows = scenario
    sc = truth["scene"]
    scene = Point.of(sc["lat"], sc["lon"])
    w0, w1 = ts(sc["from"]), ts(sc["to"])
    for key, true_m in (("near_150", 150.0), ("near_400", 400.0)):
        s = truth["subjects"][key]
        assert s["closest_true_m"] == true_m
        in_window = [
            (p.dist(scene), t) for t, p, _ in fix_track(rows, s["serial"]) if w0 <= t <= w1
        ]
        closest, at = min(in_window)
        assert s["closest_fix_m"] == round(closest, 1)
        assert s["closest_fix_at"] == datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        assert abs(closest - true_m) < 30  # an outdoor fix is within its accuracy of the truth
    present = truth["subjects"]["present"]
    assert present["verdict"] == "present" and present["closest_true_m"] == 10.0
    near = [
        t for t, p, _ in fix_track(rows, present["serial"]) if w0 <= t <= w1 and p.dist(scene) < 100
    ]
    assert len(near) >= 30
    elsewhere = truth["subjects"]["elsewhere"]
    assert elsewhere["verdict"] == "excluded" and elsewhere["closest_fix_m"] > 15_000
    silent = truth["subjects"]["silent"]
    assert silent["verdict"] == "no_data" and silent["fixes_in_window"] == 0
    assert [t for t, _, _ in fix_track(rows, silent["serial"]) if w0 <= t <= w1] == []
    # 3 km away, but for one fix reported at the scene, a minute from its neighbours
    outlier = truth["subjects"]["outlier"]
    assert (outlier["closest_true_m"], outlier["verdict"]) == (3000.0, "present")
    track = fix_track(rows, outlier["serial"])
    i = next(k for k, (t, _, _) in enumerate(track) if t == ts(outlier["outlier_at"]))
    assert track[i][1].dist(scene) < 30 and outlier["closest_fix_m"] < 30
    assert [round(track[j][0] - track[i][0]) for j in (i - 1, i + 1)] == [-60, 60]
    assert all(abs(track[j][1].dist(scene) - 3000) < 30 for j in (i - 1, i + 1))


def test_zone_truths(scenario) -> None:  # type: ignore[no-untyped-def]
    truth, rows = scenario
    zones = {k: shape(v) for k, v in truth["exclusion_zones"].items()}
    # the car's fixes are all outside Z2, yet the straight line between two of them crosses it
    car = truth["subjects"]["transit_Z2"]
    track = fix_track(rows, car["serial"])
    lonlat = [ShapelyPoint(f["lon"], f["lat"]) for _, _, f in track]
    assert not any(zones["Z2"].contains(p) for p in lonlat)
    crossing = [
        (a[0], b[0])
        for a, b, pa, pb in zip(track, track[1:], lonlat, lonlat[1:], strict=False)
        if LineString([pa, pb]).intersects(zones["Z2"])
    ]
    assert len(crossing) == 1
    assert crossing[0][0] < ts(car["entered"]) < ts(car["left"]) < crossing[0][1]
    # drift at Z1's edge: never truly inside, yet some fixes are reported inside
    drift = truth["subjects"]["drift_Z1"]
    inside = sum(
        zones["Z1"].contains(ShapelyPoint(f["lon"], f["lat"]))
        for _, _, f in fix_track(rows, drift["serial"])
    )
    assert drift["truly_inside"] is False and drift["fixes_reported_inside"] == inside > 0
    # the walker is inside Z1 between its entry and exit, outside before and after
    walker = truth["subjects"]["enters_Z1"]
    for t, _, f in fix_track(rows, walker["serial"]):
        p = ShapelyPoint(f["lon"], f["lat"])
        if ts(walker["entered"]) + 120 < t < ts(walker["left"]) - 120:
            assert zones["Z1"].contains(p)
        elif t < ts(walker["entered"]) - 120 or t > ts(walker["left"]) + 120:
            assert not zones["Z1"].contains(p)


def test_hidden_breach_arrives_in_one_late_array(scenario) -> None:  # type: ignore[no-untyped-def]
    truth, rows = scenario
    k = truth["subjects"]["hidden_breach"]
    z3 = shape(truth["exclusion_zones"]["Z3"])
    arrays = [
        fixes_of(p)
        for topic, p in rows
        if topic == f"tags/{k['serial']}/fixes" and p.startswith("[")
    ]
    assert len(arrays) == 1
    times = [ts(str(f["ts"])) for f in arrays[0]]
    assert ts(k["gap_from"]) <= min(times) and max(times) < ts(k["gap_to"])
    assert len(times) >= 40
    assert any(z3.contains(ShapelyPoint(f["lon"], f["lat"])) for f in arrays[0])


def test_curfew_tamper_and_silence(scenario) -> None:  # type: ignore[no-untyped-def]
    truth, rows = scenario
    late = truth["subjects"]["late_home"]
    home = Point.of(late["home"]["lat"], late["home"]["lon"])
    for t, p, _ in fix_track(rows, late["serial"]):
        if ts(late["breach_from"]) <= t < ts(late["breach_to"]) - 60:
            assert p.dist(home) > 75
        if t > ts(late["breach_to"]) + 60:
            assert p.dist(home) < 75
    on_time = truth["subjects"]["home_on_time"]
    home_j = Point.of(on_time["home"]["lat"], on_time["home"]["lon"])
    after = [
        p.dist(home_j)
        for t, p, _ in fix_track(rows, on_time["serial"])
        if t > ts(on_time["arrived"]) + 60
    ]
    assert after and max(after) < 75
    tamper = truth["subjects"]["strap_tamper"]
    events = [json.loads(p) for topic, p in rows if topic == f"tags/{tamper['serial']}/events"]
    assert {"ts": tamper["strap_open"], "type": "strap_open"} in events
    assert {"ts": tamper["strap_closed"], "type": "strap_closed"} in events
    straps = {
        f["strap"]
        for t, _, f in fix_track(rows, tamper["serial"])
        if ts(tamper["strap_open"]) <= t < ts(tamper["strap_closed"])
    }
    assert straps == {"open"}
    silent = truth["subjects"]["goes_silent"]
    times = [t for t, _, _ in fix_track(rows, silent["serial"])]
    assert max(times) < ts(silent["silent_from"]) <= max(times) + 60


def test_tags_out_of_range_is_a_usage_error() -> None:
    result = subprocess.run([TORCH, "sim", "--tags", "20001"], capture_output=True, text=True)
    assert result.returncode == 2 and "--tags 20001 is not between 1 and 20,000" in result.stderr


def test_a_connection_the_broker_refuses_is_an_error_not_a_wait(broker) -> None:  # type: ignore[no-untyped-def]
    """paho retries a refused connection for ever: the simulator waited ten minutes for
    acknowledgements that could never come, and said nothing."""
    env = service_env(TORCH_MQTT_PASSWORD="not-the-password")
    args = ["sim", "--tags", "1", "--hours", "0.1", "--pace", "0", "--no-register"]
    result = subprocess.run([TORCH, *args], capture_output=True, text=True, env=env, timeout=60)
    assert (result.returncode, result.stderr.splitlines()[-1]) == (
        1,
        f"error: the broker at 127.0.0.1:{MQTT_PORT} refused {INGEST}: Not authorized"
        " (has it taken up the accounts? `torch broker sync` says where it wrote them)",
    )


def test_the_broker_files_go_to_the_checkouts_broker_wherever_a_command_runs() -> None:
    """A relative default wrote them under whatever directory a command ran in, where no
    broker reads them: the simulator's new tag accounts were then refused."""
    from torch.settings import Settings

    root = Path(__file__).resolve().parent.parent
    assert Settings.model_fields["broker_dir"].default == root / ".run" / "mosquitto"


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [
        ("--pace", "-1", "argument --pace: -1 is not 0 or more"),
        ("--hours", "0", "argument --hours: 0 is not more than 0"),
        ("--interval", "0", "argument --interval: 0 is less than 1 s"),  # it never ended
        ("--malformed-rate", "2", "argument --malformed-rate: 2 is not a share between 0 and 1"),
        ("--gap-rate", "nan", "argument --gap-rate: nan is not 0 or more"),
    ],
)
def test_options_out_of_range_are_usage_errors(option: str, value: str, said: str) -> None:
    result = subprocess.run(
        [TORCH, "sim", option, value, "--out", "/dev/null"], capture_output=True, text=True
    )
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, f"torch sim: error: {said}")


def test_published_fleet_is_stored_exactly(db: Database, workers, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    start = (datetime.now(UTC) - timedelta(hours=3)).replace(second=0, microsecond=0).isoformat()
    args = [
        "sim",
        "--tags",
        "6",
        "--seed",
        "11",
        "--start",
        start,
        "--hours",
        "2",
        "--pace",
        "0",
        "--malformed-rate",
        "0.05",
        "--owntracks-share",
        "0.3",
    ]
    subprocess.run(
        [TORCH, *args, "--out", str(tmp_path / "s.jsonl")],
        check=True,
        capture_output=True,
        env=service_env(),
    )
    # What the worker must make of it: the first fix of each tag and time stored; a later
    # one that says otherwise is a conflict. (A garbled clock an hour fast is not in the
    # future here, three hours back, and meets the true fix of that time an hour later.)
    first: dict[tuple[str, datetime], Any] = {}
    garbled = conflicts = 0
    for line in (tmp_path / "s.jsonl").read_text().splitlines():
        row = json.loads(line)
        dec = decode(row["topic"], row["payload"].encode(), datetime.now(UTC), Limits())
        garbled += len(dec.rejections)
        for f in dec.fixes:
            conflicts += first.setdefault((f.serial, f.ts), f) != f
    workers()
    subprocess.run([TORCH, *args], check=True, capture_output=True, env=service_env())
    wait_for(lambda: db.count("fixes") == len(first), timeout=60)
    wait_for(lambda: db.count("dead_letters") == garbled + conflicts, timeout=30)
    time.sleep(0.5)
    assert db.count("fixes") == len(first) > 500
    assert db.count("dead_letters") == garbled + conflicts and garbled > 0
    kept = "SELECT count(*) FROM dead_letters WHERE reason_code = 'conflicting_fix'"
    assert db.fetchval(kept) == conflicts
    assert db.count("device_assignments") == 6

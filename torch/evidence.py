"""The evidence pack of a crime-scene query: what was asked, answered, and how, hashed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any

from torch import proximity

METHOD_HEADER = "# The proximity method\n\n"


def files(
    request: dict[str, Any],
    response: dict[str, Any],
    sent: bytes,
    version: str,
    asked_at: datetime,
    asked_by: str,
) -> dict[str, bytes]:
    """Every file of the pack but the manifest, by name: from the answer `response`, and
    the bytes it was `sent` as, which `answer.json` holds unchanged."""
    query = {
        "query_id": response["query_id"],
        "asked_at": asked_at.isoformat(),
        "asked_by": asked_by,
        "software": f"torch-tags {version}",
    }
    return {
        "answer.json": sent,
        "query.json": _json(query),
        "request.json": _json(request),
        "parameters.json": _json(response["parameters"]),
        "verdicts.json": _json(response["results"]),
        "fixes.csv": _fixes_csv(response["results"]),
        "method.md": (METHOD_HEADER + (proximity.__doc__ or "").strip() + "\n").encode(),
        "version.txt": f"torch-tags {version}\n".encode(),
    }


def pack(contents: dict[str, bytes], made: datetime) -> bytes:
    """A zip of the files and MANIFEST.sha256, one `<sha256>  <name>` line per file. Each
    file is dated `made` (UTC; zip dates have no zone), not when the zip is written: the
    pack of a query is the same bytes every time it is fetched, so that its own hash can be
    quoted too."""
    manifest = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(contents.items())
    )
    when = made.astimezone(UTC).timetuple()[:6]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, data in [*sorted(contents.items()), ("MANIFEST.sha256", manifest.encode())]:
            entry = zipfile.ZipInfo(name, date_time=when)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            z.writestr(entry, data)
    return out.getvalue()


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def _fixes_csv(results: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["subject_id", "subject_ref", "verdict", "time", "lat", "lon", "acc", "serial"])
    for r in results:
        for f in r["fixes"]:
            w.writerow(
                [
                    r["subject_id"],
                    r["subject_ref"],
                    r["verdict"],
                    f["time"],
                    f["lat"],
                    f["lon"],
                    f["acc"],
                    serial_at(r.get("devices", []), f["time"]),
                ]
            )
    return out.getvalue().encode()


def serial_at(devices: list[dict[str, Any]], time: str) -> str:
    """The serial of the tag worn at `time` (RFC 3339) by the answer's `devices`; empty for
    an answer recorded before they were given."""
    t = datetime.fromisoformat(time)
    for d in devices:
        if datetime.fromisoformat(d["from"]) <= t and (
            d["to"] is None or t < datetime.fromisoformat(d["to"])
        ):
            return str(d["serial"])
    return ""

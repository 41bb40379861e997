"""The evidence pack of a crime-scene query: what was asked, answered, and how, hashed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from typing import Any

from torch import proximity

METHOD_HEADER = "# The proximity method\n\n"


def files(
    request: dict[str, Any], response: dict[str, Any], version: str, asked_at: str, asked_by: str
) -> dict[str, bytes]:
    """Every file of the pack but the manifest, by name."""
    query = {
        "query_id": response["query_id"],
        "asked_at": asked_at,
        "asked_by": asked_by,
        "software": f"torch-tags {version}",
    }
    return {
        "query.json": _json(query),
        "request.json": _json(request),
        "parameters.json": _json(response["parameters"]),
        "verdicts.json": _json(response["results"]),
        "fixes.csv": _fixes_csv(response["results"]),
        "method.md": (METHOD_HEADER + (proximity.__doc__ or "").strip() + "\n").encode(),
        "version.txt": f"torch-tags {version}\n".encode(),
    }


def pack(contents: dict[str, bytes]) -> bytes:
    """A zip of the files and MANIFEST.sha256, one `<sha256>  <name>` line per file."""
    manifest = "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(contents.items())
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in sorted(contents.items()):
            z.writestr(name, data)
        z.writestr("MANIFEST.sha256", manifest)
    return out.getvalue()


def _json(obj: Any) -> bytes:
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def _fixes_csv(results: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["subject_id", "subject_ref", "verdict", "time", "lat", "lon", "acc"])
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
                ]
            )
    return out.getvalue().encode()

"""Bulk correlation of many crimes, as a job with progress."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict
from datetime import timedelta
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Body, Depends, Query, Request

from api.auth import require
from api.params import Text
from torch import correlate, logs
from torch.errors import InvalidInput, NotFound
from torch.settings import Settings
from torch.store import correlations as store
from torch.store import subjects as subject_store
from torch.store import users
from torch.store.users import User
from torch.words import plural

log = logging.getLogger("torch.api")
router = APIRouter(prefix="/v1/crime-correlations", tags=["proximity"])
PROGRESS_EVERY = 50  # crimes between progress updates
# How far below the API a job's worker processes run: officers' queries come first.
BACKGROUND = 10


@router.post("", status_code=202, summary="Correlate up to 10,000 crimes (CSV) as a job")
async def start(
    request: Request,
    body: Annotated[Text, Body(media_type="text/csv", description=f"CSV with {correlate.COLUMNS}")],
    reason: Annotated[
        Text, Query(min_length=3, max_length=500, description="why the correlation is run")
    ],
    user: User = Depends(require("officer", "supervisor")),
) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    window = timedelta(days=settings.proximity_max_window_days)
    crimes, errors = correlate.parse(body, settings.service_area, window)
    if not crimes:
        first = errors[0].message if errors else "no crimes in the file"
        raise InvalidInput(f"nothing to correlate: {first}", "body")
    job_id = uuid4()
    rows = [asdict(e) for e in errors]
    async with request.app.state.pool.acquire() as conn:
        await store.create(conn, job_id, user.id, reason, len(crimes), rows)
    task = asyncio.create_task(_run(request.app.state.pool, job_id, crimes, settings))
    request.app.state.jobs.add(task)
    task.add_done_callback(request.app.state.jobs.discard)
    return {"job_id": str(job_id), "status": "running", "total": len(crimes), "errors": rows}


async def _run(pool: Any, job_id: UUID, crimes: list[correlate.Crime], settings: Settings) -> None:
    started = time.monotonic()
    try:
        async with pool.acquire() as conn:
            told = 0

            async def progress(done: int) -> None:
                nonlocal told
                if done - told >= PROGRESS_EVERY:
                    told = done
                    async with pool.acquire() as other:
                        await store.advance(other, job_id, done)

            found = await correlate.run_as_set(conn, settings, crimes, progress, nice=BACKGROUND)
            await store.advance(conn, job_id, len(crimes))
            await store.finish(conn, job_id, found)
        shared = correlate.processes_for(len(crimes), settings.correlate_workers)
        log.info(
            "correlation job %s: %s, %s, %s in %.1f s",
            job_id,
            plural(len(crimes), "crime"),
            f"shared among {shared} worker processes" if shared > 1 else "in the API's process",
            plural(len(found), "finding"),
            time.monotonic() - started,
        )
    except Exception:
        log.exception("correlation job %s failed", job_id)
        failure = (
            "an internal error stopped the job; its details are in the API's log under request "
            f"id {logs.request_id.get()}, which the operators can look up"
        )
        async with pool.acquire() as conn:
            await store.fail(conn, job_id, failure)


@router.get("/{job_id}", summary="A job's progress, and its findings once done")
async def job(
    job_id: UUID,
    request: Request,
    user: User = Depends(require("officer", "supervisor")),
) -> dict[str, Any]:
    async with request.app.state.pool.acquire() as conn, conn.transaction():
        j = await store.get(conn, job_id)
        if j is None or (j["user_id"] != user.id and not user.has("supervisor")):
            raise NotFound(f"no correlation job {job_id}")
        # findings only for the subjects the reader may see
        allowed = await subject_store.visible(conn, user)
        results = [r for r in j["results"] or () if r["subject_id"] in allowed]
        if results:
            subjects = sorted({r["subject_id"] for r in results})
            await users.audit(
                conn,
                user,
                "GET",
                "/v1/crime-correlations/{id}",
                subjects,
                reason=j["reason"],
                query_id=job_id,
            )
    return {
        "job_id": str(job_id),
        "status": j["status"],
        "total": j["total"],
        "done": j["done"],
        "errors": j["errors"],
        "results": results if j["results"] is not None else None,
        "failure": j["failure"],
    }

"""FastAPI application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import (
    alerts,
    associations,
    audit,
    auth,
    correlations,
    errors,
    limits,
    observe,
    patterns,
    proximity,
    subjects,
    victims,
    web,
    zones,
)
from torch import __version__, bounds, memory, nearby
from torch.settings import Settings
from torch.store import breaches, db
from torch.store import correlations as correlations_store


def create_app(settings: Settings) -> FastAPI:
    memory.keep_freed_memory()  # crime-scene answers reuse large arrays (torch.memory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = await db.pool(
            settings.database_url.get_secret_value(),
            size=10,
            application_name="torch-api",
            # a crime-scene answer reads over three at once (torch.store.db.spare)
            open_at_least=3,
            # Parallel plans added 10-12 ms to every small spatial query here.
            settings=nearby.SESSION,
        )
        async with app.state.pool.acquire() as conn:
            await correlations_store.interrupt_running(conn)
        app.state.alerts_raised = db.Wakeup(
            settings.database_url.get_secret_value(), breaches.ALERTS_CHANNEL, "torch-api-listen"
        )
        listener = asyncio.create_task(app.state.alerts_raised.run())
        bounds.warm()  # compiled loops of the crime-scene query, before the first asks
        memory.collect_less()  # an answer makes tens of thousands of short-lived objects
        yield
        listener.cancel()
        for task in list(app.state.jobs):
            task.cancel()
        await app.state.pool.close()

    app = FastAPI(
        title="TORCH",
        version=__version__,
        description="GPS tag tracking for Integrated Offender Management. Every route but "
        "the health checks needs `Authorization: Bearer <token>` (`torch user add`).",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.throttle = auth.Throttle(settings.auth_failures_per_minute)
    app.state.jobs = set()
    app.state.metrics = observe.ApiMetrics()
    errors.install(app)
    app.add_middleware(limits.BodyLimit, limit=settings.max_request_bytes)
    app.add_middleware(observe.Observe, metrics=app.state.metrics)  # outermost: sees all
    app.include_router(observe.router)
    app.include_router(proximity.router, responses=errors.RESPONSES)
    app.include_router(associations.router, responses=errors.RESPONSES)
    app.include_router(patterns.router, responses=errors.RESPONSES)
    app.include_router(subjects.router, responses=errors.RESPONSES)
    app.include_router(correlations.router, responses=errors.RESPONSES)
    app.include_router(zones.router, responses=errors.RESPONSES)
    app.include_router(alerts.router, responses=errors.RESPONSES)
    app.include_router(audit.router, responses=errors.RESPONSES)
    app.include_router(victims.router, responses=errors.RESPONSES)
    app.include_router(web.router, responses=errors.RESPONSES)

    web.mount(app, settings)  # last: the app at / must not shadow the routes above
    return app

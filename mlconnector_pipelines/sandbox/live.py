"""Live mode: a background task that changes a simulator's records while it serves."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from contextlib import asynccontextmanager


def live_lifespan(enabled: bool, tick_loop: Callable[[], Awaitable[None]]):
    """A Starlette lifespan that runs `tick_loop` for as long as the app serves, when enabled."""

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(tick_loop()) if enabled else None
        yield
        if task is not None:
            task.cancel()

    return lifespan

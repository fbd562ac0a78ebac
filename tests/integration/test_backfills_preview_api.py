"""``GET /api/backfills/preview`` in the running server: the dry run of a backfill, one at a
time (a second asked meanwhile answers 429 with Retry-After), planned in small batches."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from eventflow.views import backfills
from tests.integration.test_server import TOKEN, hook, serving

RANGE = {"rule": "report", "from": "d1", "to": "d9"}


async def test_a_preview_plans_one_at_a_time_in_small_batches(
    tmp_path: Path, monkeypatch: Any
) -> None:
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    planning = asyncio.Event()
    release = asyncio.Event()
    batches: list[int | None] = []
    real = backfills.preview

    async def held_preview(*args: Any, **kwargs: Any) -> backfills.Preview:
        batches.append(kwargs.get("batch_size"))
        planning.set()
        await release.wait()
        return await real(*args, **kwargs)

    async with serving(tmp_path) as client:
        await hook(client, "orders/d1", "a")
        monkeypatch.setattr(backfills, "preview", held_preview)
        first = asyncio.create_task(client.get("/api/backfills/preview", params=RANGE))
        await asyncio.wait_for(planning.wait(), 10)
        second = await client.get("/api/backfills/preview", params=RANGE)
        assert second.status_code == 429
        assert second.headers["retry-after"] == "2"
        assert "another backfill preview" in second.json()["error"]
        release.set()
        answer = await first
        assert answer.status_code == 200
        assert answer.json()["counts"]["incomplete"] == 1  # d1 has orders, not stock
        third = await client.get("/api/backfills/preview", params=RANGE)
        assert third.status_code == 200  # the first is done: the next one plans
    assert batches[0] is not None
    assert batches[0] <= 50

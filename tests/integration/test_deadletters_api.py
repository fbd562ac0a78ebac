"""The dead-letter and event-log routes of the JSON API on a running pipeline: show, the
bulk redrive (dry run, selectors, refusals), discard, and the paged event log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.test_deadletters_page import FIXED, dead_letter
from tests.integration.test_server import TOKEN, serving, wait_for


async def test_a_dead_letter_is_shown_redriven_in_bulk_and_its_event_paged(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The dry run previews, the bulk redrive by `all` admits the event once (listed by
    `/api/events` with its dataset and partition), and a redriven letter refuses a discard."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    event_id = await dead_letter(tmp_path)
    async with serving(tmp_path, FIXED) as client:
        shown = (await client.get(f"/api/deadletters/{event_id}")).json()
        assert shown["message"]["payload"] == {"date": "d1"}
        assert shown["history"] == []
        assert (await client.get("/api/deadletters/nope")).status_code == 404
        wrong = await client.get("/api/deadletters/redrive")
        assert (wrong.status_code, wrong.headers["allow"]) == (405, "POST")

        dry = await client.post("/api/deadletters/redrive", json={"all": True, "dry_run": True})
        assert dry.json()["items"] == [
            {
                "event_id": event_id,
                "action": "redrive",
                "done": False,
                "detail": "would announce orders dt=d1",
            }
        ]
        assert (await client.post("/api/deadletters/redrive", json={})).status_code == 400
        both = {"event_ids": [event_id], "all": True}
        assert (await client.post("/api/deadletters/redrive", json=both)).status_code == 400

        done = await client.post("/api/deadletters/redrive", json={"all": True})
        assert [r["done"] for r in done.json()["items"]] == [True]

        async def redriven() -> Any:
            found = (await client.get("/api/deadletters?status=redriven")).json()
            return found["total"] == 1 and found

        assert await wait_for(redriven)
        assert (await client.get("/api/deadletters")).json()["total"] == 0
        refused = await client.post(f"/api/deadletters/{event_id}/discard", json={})
        assert refused.status_code == 409
        assert "is redriven" in refused.json()["error"]

        page = (await client.get("/api/events?dataset=orders&partition=dt=d1")).json()
        assert page["total"] == 1
        [event] = page["items"]
        assert event["id"] == event_id
        assert event["datasets"] == [{"dataset": "orders", "partition": {"dt": "d1"}}]
        assert (await client.get("/api/events?partition=dt=d2")).json()["total"] == 0
        assert (await client.get("/api/events?cursor=bad")).status_code == 400
        wrong = await client.put("/api/events")
        assert wrong.status_code == 405
        assert set(wrong.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}

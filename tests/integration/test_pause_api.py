"""The pause API over a running pipeline: idempotent, audited with the principal, 404 for an
unknown name, a sensor's pause in ``/api/sensors`` and the runtime told at once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.browser.test_pause_page import audit
from tests.browser.test_sign_in import BEARER, OPERATE_TOKEN
from tests.integration.test_server import TOKEN, hook, serving, wait_for


async def test_the_api_pauses_idempotently_and_404s_an_unknown_name(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Pausing twice changes nothing the second time, a reason is kept, an unknown rule or
    sensor is 404 (nothing recorded); a paused webhook sensor refuses deliveries (503: the
    sender retries) and is shown paused in /api/sensors until its resume."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE_TOKEN)
    async with serving(tmp_path) as client:
        post = client.post
        one = await post("/api/rules/report/pause", json={"reason": "db"}, headers=BEARER)
        two = await post("/api/rules/report/pause", json={}, headers=BEARER)
        assert (one.status_code, two.status_code) == (200, 200)
        assert (one.json()["action"]["changed"], two.json()["action"]["changed"]) == (True, False)
        assert two.json()["paused"]["reason"] == "db"
        assert OPERATE_TOKEN not in one.text
        assert (await post("/api/rules/nope/pause", json={}, headers=BEARER)).status_code == 404
        assert (await post("/api/sensors/nope/resume", json={}, headers=BEARER)).status_code == 404
        bad = await post("/api/sensors/hooks/pause", json={"reason": 3}, headers=BEARER)
        assert bad.status_code == 400
        assert (await post("/api/sensors/hooks/pause", json={}, headers=BEARER)).status_code == 200
        sensors = (await client.get("/api/sensors", headers=BEARER)).json()["sensors"]
        assert sensors[0]["paused"]["held"] is None
        assert len(audit(tmp_path)) == 3 + 2

        async def refused() -> Any:
            return (await hook(client, "orders/d1", "o1")).status_code == 503

        assert await wait_for(refused), "a paused webhook sensor still takes deliveries"
        sensors = (await client.get("/api/sensors", headers=BEARER)).json()["sensors"]
        assert sensors[0]["detail"].startswith("paused by api:")
        done = await post("/api/sensors/hooks/resume", json={}, headers=BEARER)
        assert done.json()["paused"] is None

        async def taken() -> Any:
            return (await hook(client, "orders/d1", "o1")).status_code == 200

        assert await wait_for(taken), "the resumed webhook sensor takes no delivery"
        assert [a[2] for a in audit(tmp_path)[:4]] == ["pause", "pause", "pause", "resume"]
        assert [a[:2] for a in audit(tmp_path)[4:]] == [("rule", "report")]

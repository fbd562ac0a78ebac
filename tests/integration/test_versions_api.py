"""Versions and the plan over HTTP and on the page, against a live server: `/api/versions`
pages the starts, `/api/plan` gives the running version's plan, `/api/matches` and the runs
say which version opened or fired them, and the page shows the version."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from tests.integration.test_server import PIPELINE, TOKEN, hook, serving, wait_for

SHORTER = PIPELINE.replace("within: 1h", "within: 30m")


async def succeeded(client: httpx.AsyncClient) -> Any:
    return (await client.get("/api/runs", params={"status": "succeeded"})).json()["items"]


async def test_versions_plan_and_matches_carry_the_version(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Two versions ran: /api/versions pages them newest first with what changed, /api/plan
    lists the shorter window and its moved timer, the open match keeps the version it
    opened under (its expiry moved to opened + 30m), runs carry their rule's version."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    async with serving(tmp_path) as client:
        await hook(client, "orders/d1", "a")
        await hook(client, "stock/d1", "b")
        await hook(client, "orders/d2", "c")
        assert await wait_for(lambda: succeeded(client))
        first = (await client.get("/api/versions")).json()
        [v1] = first["items"]
        assert v1["changes"] == ["first start"]
        assert v1["current"] is True
        plan = (await client.get("/api/plan")).json()
        assert plan["previous"] is None
        assert [line["kind"] for line in plan["lines"]] == ["rule_added"]
    v1_rule = v1["rules"]["report"]

    async with serving(tmp_path, SHORTER) as client:
        body = (await client.get("/api/versions")).json()
        assert body["total"] == 2
        assert body["next"] is None
        v2, old = body["items"]
        assert old["version"] == v1["version"]
        assert old["current"] is False
        assert v2["current"] is True
        assert v2["changes"] == ["rules.report.when.within"]
        current = body["current"]
        assert current["version"] == v2["version"]
        assert current["environment"] == "default"
        assert current["store"]["store_id"]
        assert current["git_commit"] is None  # tmp_path is no git work tree
        assert current["worker"] == v2["worker"]

        page1 = (await client.get("/api/versions", params={"limit": 1})).json()
        assert [i["seq"] for i in page1["items"]] == [v2["seq"]]
        assert page1["items"][0]["changes"] == ["rules.report.when.within"]  # diff across pages
        page2 = (
            await client.get("/api/versions", params={"limit": 1, "cursor": page1["next"]})
        ).json()
        assert [i["seq"] for i in page2["items"]] == [old["seq"]]
        assert page2["next"] is None
        bad = await client.get("/api/versions", params={"cursor": "nope"})
        assert bad.status_code == 400
        assert "cursor" in bad.json()["error"]

        plan = (await client.get("/api/plan")).json()
        assert plan["previous"]["version"] == v1["version"]
        assert plan["version"] == v2["version"]
        assert plan["changed"] is True
        assert plan["refused"] == []
        [within] = [line for line in plan["lines"] if line["id"] == "rules.report.when.within"]
        assert within["detail"] == "within: 1h -> 30m"
        assert "move to their opening time" in within["effect"]
        assert within["state"]["open_matches"] == 1
        assert plan["store"]["store_id"] == current["store"]["store_id"]

        [match] = (await client.get("/api/matches")).json()["matches"]
        assert match["opened_version"] == v1_rule
        opened = datetime.fromisoformat(match["opened_at"])
        assert datetime.fromisoformat(match["expires_at"]) == opened + timedelta(minutes=30)

        await hook(client, "orders/d3", "d")
        matches = (await client.get("/api/matches")).json()["matches"]
        by_dt = {m["partition"]["dt"]: m for m in matches}
        assert by_dt["d3"]["opened_version"] == v2["rules"]["report"]
        assert by_dt["d3"]["opened_version"] != v1_rule

        [run] = await succeeded(client)
        assert run["pipeline_version"] == v1_rule

        html = (await client.get("/")).text
        assert "<h2>Versions</h2>" in html
        assert f'<code title="{v2["version"]}">{v2["version"][:7]}</code>' in html
        assert "not in git" in html
        assert "rules.report.when.within" in html
        runs_table = re.search(r'<table class="runs">.*?</table>', html, re.S)
        assert runs_table is not None
        assert "<th>version</th>" in runs_table.group(0)
        assert f'<code title="{v1_rule}">{v1_rule[:7]}</code>' in runs_table.group(0)

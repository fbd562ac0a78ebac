"""The checks API on the live server: `GET /api/checks` lists the held partitions, `POST
/api/checks/{run_id}/rerun` and `/override` act on one; without the operate credential every
read or action is refused and nothing changes; an action is audited with its principal; and
`/api/runs` shows each run's checks' outcome."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from structlog.testing import capture_logs

from tests.integration.test_server import TOKEN, hook, serving, wait_for

OPERATE = "checks-operate-" + "7" * 32
READ = "checks-read-" + "8" * 32
AS_OPERATOR = {"Authorization": f"Bearer {OPERATE}"}
AS_READER = {"Authorization": f"Bearer {READ}"}

PIPELINE = """
name: checked
sensors:
  hooks: {type: http, auth: bearer, secret_env: TEST_HOOK_TOKEN}
datasets:
  orders: {sensor: hooks, key: "orders/{dt}"}
rules:
  load:
    when: {any: [orders], by: [dt]}
    run:
      command: [sh, -c, "mkdir -p data; : > data/$EVENTFLOW_VAR_DT.csv"]
    produces: loaded
    checks:
      - {name: not_empty, exists: ["data/{dt}.csv"]}
  report:
    when: {any: [loaded], by: [dt]}
    run:
      command: [sh, -c, "echo $EVENTFLOW_VAR_DT >> report.log"]
engine: {poll_interval: 50ms}
"""


def reports(root: Path) -> list[str]:
    path = root / "report.log"
    return path.read_text().split() if path.exists() else []


async def gate(client: httpx.AsyncClient, dt: str, status: str) -> Any:
    """The gate of partition ``dt`` once it has ``status`` (None if it does not in time)."""

    async def found() -> Any:
        items = (await client.get("/api/checks", headers=AS_READER)).json()["items"]
        mine = [g for g in items if g["partition"] == {"dt": dt} and g["status"] == status]
        return mine[0] if mine else None

    return await wait_for(found)


async def checks_of_runs(client: httpx.AsyncClient) -> dict[str, Any]:
    runs = (await client.get("/api/runs", headers=AS_READER)).json()["items"]
    return {f"{r['rule']} {r['partition']['dt']}": r["checks"] for r in runs}


@pytest.fixture
def tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    monkeypatch.setenv("EVENTFLOW_API_TOKEN", OPERATE)
    monkeypatch.setenv("EVENTFLOW_READ_TOKEN", READ)


@pytest.mark.usefixtures("tokens")
async def test_rerun_and_override_through_the_api_are_refused_without_the_operate_token(
    tmp_path: Path,
) -> None:
    """A blocked partition: no credential gets 401 on the list and both actions, a read
    token lists but gets 403 on both; the gate is unchanged and nothing fired downstream."""
    async with serving(tmp_path, PIPELINE) as client:
        await hook(client, "orders/d1", "o1")
        blocked = await gate(client, "d1", "blocked")
        assert blocked["reason"] == "blocked by check not_empty"
        assert blocked["blocked_by"] == ["not_empty"]
        assert blocked["downstream"] == ["report"]
        run_id = blocked["run_id"]
        assert (await client.get("/api/checks")).status_code == 401
        for action in ("rerun", "override"):
            path = f"/api/checks/{run_id}/{action}"
            assert (await client.post(path, json={})).status_code == 401
            refused = await client.post(path, json={}, headers=AS_READER)
            assert refused.status_code == 403
            assert "operate" in refused.json()["error"]
        again = await gate(client, "d1", "blocked")
        assert (again["attempt"], again["actions"]) == (1, [])
        bad = await client.get("/api/checks", params={"status": "nope"}, headers=AS_READER)
        assert bad.status_code == 400
        missing = await client.post("/api/checks/no-such-run/rerun", json={}, headers=AS_OPERATOR)
        assert missing.status_code == 404
        runs = await checks_of_runs(client)
        assert runs["load d1"]["outcome"] == "blocked"
        assert runs["load d1"]["text"] == "failed: not_empty"
    assert reports(tmp_path) == []


@pytest.mark.usefixtures("tokens")
async def test_an_operator_reruns_a_fixed_partition_and_overrides_another_audited(
    tmp_path: Path,
) -> None:
    """With the operate token: after the data is fixed, `rerun` checks the partition again
    and it passes; `override` announces another one as it is; each gate's audit trail and
    the log name the principal and the reason; the rule downstream fires once for each;
    an action that does not apply to the gate's status answers 409."""
    with capture_logs() as logs:
        async with serving(tmp_path, PIPELINE) as client:
            await hook(client, "orders/d1", "o1")
            await hook(client, "orders/d2", "o2")
            d1 = await gate(client, "d1", "blocked")
            d2 = await gate(client, "d2", "blocked")

            (tmp_path / "data" / "d1.csv").write_text("id\n1\n")
            answer = await client.post(
                f"/api/checks/{d1['run_id']}/rerun",
                json={"reason": "reloaded"},
                headers=AS_OPERATOR,
            )
            assert answer.status_code == 202
            assert answer.json()["status"] == "pending"
            passed = await gate(client, "d1", "passed")
            assert passed["attempt"] == 2
            [audit] = passed["actions"]
            assert audit["action"] == "rerun"
            assert audit["reason"] == "reloaded"
            assert str(audit["by"]).startswith("api:operate-token:")

            answer = await client.post(
                f"/api/checks/{d2['run_id']}/override", json={}, headers=AS_OPERATOR
            )
            assert answer.status_code == 202
            overridden = await gate(client, "d2", "overridden")
            assert [a["action"] for a in overridden["actions"]] == ["override"]
            assert str(overridden["actions"][0]["by"]).startswith("api:operate-token:")

            assert await wait_for(lambda: _async(sorted(reports(tmp_path)) == ["d1", "d2"]))
            refused = await client.post(
                f"/api/checks/{d2['run_id']}/override", json={}, headers=AS_OPERATOR
            )
            assert refused.status_code == 409
            assert "overridden" in refused.json()["error"]
            runs = await checks_of_runs(client)
            assert runs["load d1"]["text"] == "passed"
            assert runs["load d2"]["text"] == "overridden (failed: not_empty)"
            assert runs["report d1"] is None  # its rule has no checks
    assert sorted(reports(tmp_path)) == ["d1", "d2"]  # once each
    logged = {e["event"]: e for e in logs if e["event"].startswith("checks_")}
    assert logged["checks_rerun_requested"]["by"].startswith("api:operate-token:")
    assert logged["checks_rerun_requested"]["reason"] == "reloaded"
    assert logged["checks_overridden"]["run_id"] == d2["run_id"]
    actions = [e for e in logs if e["event"] == "http_action"]
    by_path = {(e["path"], e["status"]): e["principal"] for e in actions}
    assert by_path[(f"/api/checks/{d1['run_id']}/rerun", 202)].startswith("operate-token:")
    assert by_path[(f"/api/checks/{d2['run_id']}/override", 409)].startswith("operate-token:")


async def _async(value: object) -> object:
    return value

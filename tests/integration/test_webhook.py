"""The webhook sensor on the real server: authentication, limits, dedupe, answered after commit."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path
from typing import Any

import httpx

from eventflow.config.loader import load_pipeline
from eventflow.store import open_store
from tests.integration.test_server import serving, wait_for

SECRET = "hmac-secret-for-tests"
PIPELINE = """
name: hooked
sensors:
  gh: {type: http, auth: hmac, secret_env: TEST_HOOK_SECRET, max_body: 2000}
  dbt: {type: http, auth: none, id: payload.run.id, missing_id: reject}
datasets:
  pushes: {sensor: gh, partition: {repo: payload.repository}}
  models: {sensor: dbt, partition: {model: payload.run.model}}
rules:
  build:
    when: {any: [pushes]}
    run: {command: [sh, -c, "true"]}
"""


def signed(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def recorded(root: Path) -> dict[str, int]:
    """What the store holds (read after the server stopped)."""
    pipeline = load_pipeline(root / "pipeline.yaml")
    async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
        return await store.counts()


async def post(client: httpx.AsyncClient, path: str, body: bytes, **headers: str) -> Any:
    return await client.post(path, content=body, headers=headers)


async def test_refused_requests_record_nothing(tmp_path: Path, monkeypatch: Any) -> None:
    """A bad or missing signature (401), malformed JSON (400) and an oversized body (413) are
    refused, and nothing reaches the store: no event, no dead letter."""
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    body = json.dumps({"repository": "r1"}).encode()
    async with serving(tmp_path, PIPELINE) as client:
        wrong = await post(client, "/hooks/gh", body, **{"X-Hub-Signature-256": signed(body, "x")})
        assert wrong.status_code == 401
        assert "signature" in wrong.json()["error"]
        assert (await post(client, "/hooks/gh", body)).status_code == 401
        tampered = body.replace(b"r1", b"r2")
        sig = {"X-Hub-Signature-256": signed(body)}
        assert (await post(client, "/hooks/gh", tampered, **sig)).status_code == 401
        bad = b"{not json"
        malformed = await post(client, "/hooks/gh", bad, **{"X-Hub-Signature-256": signed(bad)})
        assert malformed.status_code == 400
        big = json.dumps({"repository": "r" * 3000}).encode()
        huge = await post(client, "/hooks/gh", big, **{"X-Hub-Signature-256": signed(big)})
        assert huge.status_code == 413
        no_id = await post(client, "/hooks/dbt", b'{"run": {"model": "m"}}')
        assert no_id.status_code == 400
        assert (await post(client, "/hooks/nope", body)).status_code == 404
    counts = await recorded(tmp_path)
    assert counts["events"] == 0
    assert counts["deadletters"] == 0
    assert counts["runs_pending"] == 0


async def test_accepted_after_commit_and_deduplicated(tmp_path: Path, monkeypatch: Any) -> None:
    """A signed delivery is answered 200 once committed; a redelivery with the same id (header
    or payload field) is answered 200 again and not processed twice."""
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)
    body = json.dumps({"repository": "r1"}).encode()
    headers = {"X-Hub-Signature-256": signed(body), "X-GitHub-Delivery": "delivery-1"}
    async with serving(tmp_path, PIPELINE) as client:
        first = await post(client, "/hooks/gh", body, **headers)
        assert first.status_code == 200
        assert first.json()["status"] == "committed"
        again = await post(client, "/hooks/gh", body, **headers)
        assert again.json()["id"] == first.json()["id"]
        # GitHub's bare hex form of the signature is accepted too.
        other = json.dumps({"repository": "r2"}).encode()
        bare = {"X-Hub-Signature-256": signed(other).removeprefix("sha256=")}
        assert (await post(client, "/hooks/gh", other, **bare)).status_code == 200

        run = json.dumps({"run": {"id": 7, "model": "orders"}}).encode()
        a = await post(client, "/hooks/dbt", run)
        b = await post(client, "/hooks/dbt", run)
        assert a.status_code == b.status_code == 200
        assert a.json()["id"] == b.json()["id"]

        async def two_runs() -> Any:
            runs = (await client.get("/api/runs")).json()["runs"]
            return len(runs) == 2 and runs

        assert await wait_for(two_runs)
    counts = await recorded(tmp_path)
    assert counts["events"] == 3  # r1 once, r2 (the digest of its body), the dbt run once


async def test_missing_secret_keeps_the_sensor_down(tmp_path: Path, monkeypatch: Any) -> None:
    """Without its secret in the environment the sensor does not start: its deliveries are
    answered 503 (the sender retries) and /readyz says why."""
    monkeypatch.delenv("TEST_HOOK_SECRET", raising=False)
    async with serving(tmp_path, PIPELINE) as client:

        async def failing() -> Any:
            ready = (await client.get("/readyz")).json()
            return not ready["checks"]["sensor:gh"]["healthy"] and ready

        ready = await wait_for(failing)
        assert "TEST_HOOK_SECRET" in ready["checks"]["sensor:gh"]["detail"]
        answer = await post(client, "/hooks/gh", b"{}")
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "5"

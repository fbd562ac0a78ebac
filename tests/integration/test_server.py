"""The HTTP server in the runtime's event loop: health, readiness, the JSON API, /metrics."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from eventflow.config.loader import load_pipeline
from eventflow.runtime import Runtime
from eventflow.server.app import HttpServer, parse_address

PIPELINE = """
name: served
sensors:
  hooks: {type: http, auth: bearer, secret_env: TEST_HOOK_TOKEN}
datasets:
  orders: {sensor: hooks, key: "orders/{dt}"}
  stock: {sensor: hooks, key: "stock/{dt}"}
rules:
  report:
    when: {all: [orders, stock], by: [dt], within: 1h}
    run:
      command:
        - sh
        - -c
        - "echo report $EVENTFLOW_VAR_DT; echo oops >&2; test $EVENTFLOW_VAR_DT != bad"
engine: {poll_interval: 50ms}
"""
TOKEN = "t0ken-for-tests"


@contextlib.asynccontextmanager
async def serving(root: Path, text: str = PIPELINE) -> AsyncIterator[httpx.AsyncClient]:
    """The pipeline running with its HTTP server on a free port; a client for it."""
    file = root / "pipeline.yaml"
    file.write_text(text)
    runtime = Runtime(load_pipeline(file))
    stop = asyncio.Event()
    async with HttpServer(runtime, "127.0.0.1", 0) as server:
        task = asyncio.create_task(runtime.run(stop))
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            for _ in range(200):
                if (await client.get("/readyz")).status_code == 200:
                    break
                await asyncio.sleep(0.02)
            try:
                yield client
            finally:
                stop.set()
                await task


async def wait_for(check: Any, timeout: float = 10) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value or asyncio.get_running_loop().time() > deadline:
            return value
        await asyncio.sleep(0.05)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def hook(client: httpx.AsyncClient, key: str, delivery: str) -> Any:
    return client.post(
        f"/hooks/hooks/{key}",
        json={"key": key},
        headers={"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": delivery},
    )


def test_parse_address() -> None:
    """A bare port listens on 127.0.0.1; HOST:PORT and [IPv6]:PORT are taken as given."""
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:9") == ("0.0.0.0", 9)
    assert parse_address("[::1]:80") == ("::1", 80)
    for bad in ("x", "host:", "1:99999"):
        with contextlib.suppress(ValueError):
            parse_address(bad)
            raise AssertionError(f"{bad!r} was accepted")


async def test_health_readiness_and_api(tmp_path: Path, monkeypatch: Any) -> None:
    """/healthz and /readyz answer; rules, partial matches with what is missing, runs, a
    run's logs, retry and emit work through the JSON API."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    async with serving(tmp_path) as client:
        assert (await client.get("/healthz")).json() == {"status": "ok"}
        ready = (await client.get("/readyz")).json()
        assert ready["ready"] is True
        assert ready["checks"]["sensor:hooks"]["healthy"] is True

        assert (await hook(client, "orders/d1", "a")).status_code == 200
        matches = (await client.get("/api/matches", params={"rule": "report"})).json()
        [match] = matches["matches"]
        assert match["missing"] == ["stock"]
        assert match["arrived"] == ["orders"]
        assert match["expires_at"] is not None

        rules = (await client.get("/api/rules")).json()["rules"]
        assert rules[0]["rule"] == "report"
        assert rules[0]["open"] == 1

        # A fire that fails: its logs, then a manual retry.
        await hook(client, "orders/bad", "b")
        await hook(client, "stock/bad", "c")

        async def failed() -> Any:
            runs = (await client.get("/api/runs", params={"status": "failed"})).json()["runs"]
            return runs

        [run] = await wait_for(failed)
        logs = (await client.get(f"/api/runs/{run['run_id']}/logs")).json()
        assert logs["stdout"] == "report bad\n"
        assert logs["stderr"] == "oops\n"
        one = (await client.get(f"/api/runs/{run['run_id']}")).json()
        assert {i["dataset"] for i in one["inputs"]} == {"orders", "stock"}
        by_partition = await client.get("/api/runs", params={"partition.dt": "bad"})
        assert [r["run_id"] for r in by_partition.json()["runs"]] == [run["run_id"]]

        retried = await client.post(f"/api/runs/{run['run_id']}/retry", json={})
        assert retried.status_code == 200
        assert retried.json()["status"] == "pending"
        assert (await client.post("/api/runs/nope/retry", json={})).status_code == 404
        assert (await client.get("/api/runs/nope/logs")).status_code == 404

        # Emit completes the open partition, as `eventflow emit` would.
        emitted = await client.post(
            "/api/events", json={"dataset": "stock", "partition": {"dt": "d1"}, "id": "e1"}
        )
        assert emitted.status_code == 202
        wrong = await client.post("/api/events", json={"dataset": "stock", "partition": {}})
        assert wrong.status_code == 400
        assert "partitioned by" in wrong.json()["error"]

        async def fired() -> Any:
            runs = (await client.get("/api/runs", params={"rule": "report"})).json()["runs"]
            return [r for r in runs if r["partition"] == {"dt": "d1"}]

        [d1] = await wait_for(fired)
        assert (await client.post(f"/api/runs/{d1['run_id']}/retry", json={})).status_code == 409
        assert (await client.get("/api/runs", params={"limit": "0"})).status_code == 400
        assert (await client.get("/api/matches", params={"status": "x"})).status_code == 400


async def test_before_the_store_opens_and_after_it_closes_the_api_answers_503(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The socket is bound before the runtime opens its store and still answers after the
    runtime closed it: in both windows every store-backed route answers 503 with
    Retry-After (a client's "try again"), never a 409 that reads like its own mistake, and
    never the store's path."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    file = tmp_path / "pipeline.yaml"
    file.write_text(PIPELINE)
    runtime = Runtime(load_pipeline(file))
    stop = asyncio.Event()
    routes = ("/api/sensors", "/api/status", "/api/runs", "/api/matches", "/")

    async def not_now(client: httpx.AsyncClient) -> None:
        for route in routes:
            answer = await client.get(route)
            assert answer.status_code == 503, (route, answer.status_code, answer.text)
            assert answer.headers["retry-after"] == "1"
            assert "state.db" not in answer.text
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503

    async with (
        HttpServer(runtime, "127.0.0.1", 0) as server,
        httpx.AsyncClient(base_url=server.url, timeout=10) as client,
    ):
        await not_now(client)
        task = asyncio.create_task(runtime.run(stop))
        for _ in range(200):
            if (await client.get("/readyz")).status_code == 200:
                break
            await asyncio.sleep(0.02)
        assert (await client.get("/api/sensors")).status_code == 200
        stop.set()
        await task
        await not_now(client)


async def test_metrics_move_when_events_arrive_and_runs_finish(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """/metrics parses with the Prometheus parser; event, fire, run and webhook counters move."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    async with serving(tmp_path) as client:
        before = samples((await client.get("/metrics")).text)
        await hook(client, "orders/m1", "m1")
        await hook(client, "stock/m1", "m2")

        async def succeeded() -> Any:
            runs = (await client.get("/api/runs", params={"status": "succeeded"})).json()
            return runs["runs"]

        assert await wait_for(succeeded)
        await asyncio.sleep(1.1)  # the store gauges refresh at most once a second
        response = await client.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain")
        after = samples(response.text)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("eventflow_events_received_total", sensor="hooks", dataset="orders") == 1
    assert delta("eventflow_events_received_total", sensor="hooks", dataset="stock") == 1
    assert delta("eventflow_rule_fires_total", rule="report") == 1
    assert delta("eventflow_runs_started_total", rule="report") == 1
    assert delta("eventflow_run_attempts_finished_total", rule="report", outcome="succeeded") == 1
    assert delta("eventflow_trigger_latency_seconds_count", rule="report") == 1
    assert delta("eventflow_webhook_requests_total", sensor="hooks", code="200") == 2
    assert delta("eventflow_store_commit_seconds_count") >= 1
    assert after[("eventflow_sensor_up", (("sensor", "hooks"),))] == 1
    assert after[("eventflow_runs", (("status", "succeeded"),))] >= 1
    assert ("eventflow_outbox_backlog", ()) in after


async def test_status_page_and_openapi(tmp_path: Path, monkeypatch: Any) -> None:
    """/ renders the lineage, the open partition with its missing input; /openapi.json is a
    document listing every route."""
    monkeypatch.setenv("TEST_HOOK_TOKEN", TOKEN)
    async with serving(tmp_path) as client:
        await hook(client, "orders/p1", "p1")
        page = (await client.get("/")).text
        assert '<svg id="lineage"' in page
        assert 'data-name="report"' in page
        assert '<span class="missing">stock</span>' in page
        doc = (await client.get("/openapi.json")).json()
        assert json.dumps(doc)  # serialisable
        assert {"/api/runs", "/api/events", "/hooks/{sensor}", "/metrics"} <= set(doc["paths"])

"""The CLI, the JSON API and the status page show the same state: one view layer."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx

from eventflow.config.loader import load_pipeline
from eventflow.events import InputRef, format_partition, partition_key
from eventflow.records import Changes, DeadLetter, NewRun, RunUpdate
from eventflow.rules.core import MatchState, Status
from eventflow.runtime import Runtime
from eventflow.server.app import HttpServer
from eventflow.store import open_store
from eventflow.types import Store
from tests.acceptance.harness import Project

PIPELINE = """
name: agree
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  orders: {sensor: landing, key: "orders/{dt}.csv"}
  stock: {sensor: landing, key: "stock/{dt}.csv"}
rules:
  report:
    when: {all: [orders, stock], by: [dt], within: 1h}
    expect_by: "{dt}T06:00:00Z"
    run: {command: [sh, -c, "echo report $EVENTFLOW_VAR_DT"], retries: 1}
"""
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def ref(dataset: str, dt: str) -> InputRef:
    return InputRef(
        event_id=f"{dataset}-{dt}",
        dataset=dataset,
        partition={"dt": dt},
        sensor="landing",
        position={"path": f"{dataset}/{dt}.csv", "size": 2, "mtime": 1},
        time=at(0).isoformat(),
    )


def match(dt: str, status: Status, *datasets: str, missed: bool = False) -> MatchState:
    return MatchState(
        rule="report",
        key=partition_key({"dt": dt}),
        partition={"dt": dt},
        status=status,
        inputs={d: (ref(d, dt),) for d in datasets},
        opened_at=at(0),
        expires_at=at(60) if status in ("open", "missed") else None,
        fired_at=at(1) if status == "fired" else None,
        updated_at=at(1),
        deadline_at=at(360),
        deadline="missed" if missed else "pending" if status != "fired" else "met",
    )


def new_run(dt: str, created: float) -> NewRun:
    return NewRun(
        run_id=f"run-{dt}",
        rule="report",
        key=partition_key({"dt": dt}),
        partition={"dt": dt},
        generation=1,
        inputs=(ref("orders", dt), ref("stock", dt)),
        max_attempts=2,
        created_at=at(created),
    )


async def fill(store: Store) -> None:
    """Open, missed, expired and fired matches; a succeeded, a failed, a running and a
    pending run; two dead letters."""
    fired = ("d4", "d5", "d6", "d7")
    matches = [
        match("d1", "open", "orders"),
        match("d2", "missed", "orders", missed=True),
        match("d3", "expired", "stock"),
        *(match(dt, "fired", "orders", "stock") for dt in fired),
    ]
    letters = [
        DeadLetter("bad-1", "landing", {"path": "orders/x.csv"}, "no dataset matches", "x", at(2)),
        DeadLetter("bad-2", "landing", {"path": "junk.bin"}, "not UTF-8", "\\xff", at(3)),
    ]
    async with store.transaction() as tx:
        await tx.apply(
            Changes(
                matches={(m.rule, m.key): m for m in matches},
                runs=[new_run(dt, n) for n, dt in enumerate(fired, 1)],
                deadletters=letters,
            )
        )
    async with store.transaction() as tx:  # the three oldest start; d7 stays pending
        assert len(await tx.claim_runs(at(10), 3, {})) == 3
    async with store.transaction() as tx:
        await tx.apply(
            Changes(
                run_updates=[
                    RunUpdate("run-d4", "succeeded", 1, at(11), finished_at=at(11)),
                    RunUpdate("run-d5", "failed", 1, at(11), finished_at=at(11), error="exit 1"),
                ]
            )
        )


class Tables(HTMLParser):
    """The rows of the page's tables: ``{table class: [(data-key, [cell text, ...])]}``."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[tuple[str, list[str]]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "table":
            self._table = a.get("class") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None and "data-key" in a:
            self.tables[self._table].append((a["data-key"] or "", []))
        elif tag == "td" and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag == "td" and self._table is not None and self._cell is not None:
            self.tables[self._table][-1][1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


async def served(file: Path) -> dict[str, Any]:
    """What the real server answers on a socket (its runtime not started: nothing moves)."""
    pipeline = load_pipeline(file)
    async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
        runtime = Runtime(pipeline, store)
        async with (
            HttpServer(runtime, "127.0.0.1", 0) as server,
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        ):

            async def get(path: str, **params: str) -> Any:
                answer = await client.get(path, params=params)
                assert answer.status_code == 200, (path, answer.text)
                return answer.json() if path != "/" else answer.text

            return {
                "status": await get("/api/status"),
                "rules": await get("/api/rules"),
                "matches": await get("/api/matches"),
                "missed": await get("/api/matches", status="missed"),
                "runs": await get("/api/runs", limit="100"),
                "deadletters": await get("/api/deadletters"),
                "page": await get("/"),
            }


def test_cli_api_and_page_show_the_same_state(tmp_path: Path) -> None:
    """`eventflow status/runs/deadletters --json`, the JSON API and the status page show
    the same rules, open, missed and expired matches, runs and dead letters."""
    p = Project(tmp_path, PIPELINE)
    pipeline = load_pipeline(p.file)

    async def write() -> None:
        async with open_store(pipeline.state_dsn, pipeline.base_dir) as store:
            await fill(store)

    asyncio.run(write())
    cli_status = p.status()
    cli_runs = p.runs()
    cli_letters = p.cli_json("deadletters")
    api = asyncio.run(served(p.file))

    # The CLI and the API give the same JSON.
    assert api["status"] == cli_status
    assert api["runs"]["runs"] == cli_runs
    assert api["deadletters"]["deadletters"] == cli_letters
    assert api["rules"]["rules"] == cli_status["rules"]
    assert api["matches"]["matches"] == cli_status["partial_matches"]

    # ... and it is the state written, missed matches included.
    partial = {format_partition(m["partition"]): m["status"] for m in cli_status["partial_matches"]}
    assert partial == {"dt=d1": "open", "dt=d2": "missed", "dt=d3": "expired"}
    assert [m["partition"] for m in api["missed"]["matches"]] == [{"dt": "d2"}]
    [rule] = cli_status["rules"]
    assert {s: rule[s] for s in ("open", "missed", "expired", "fired")} == {
        "open": 1,
        "missed": 1,
        "expired": 1,
        "fired": 4,
    }
    assert cli_status["counts"]["matches_missed"] == 1
    runs = {r["run_id"]: r["status"] for r in cli_runs}
    assert runs == {
        "run-d4": "succeeded",
        "run-d5": "failed",
        "run-d6": "running",
        "run-d7": "pending",
    }
    assert [r["run_id"] for r in cli_status["recent_runs"]] == [r["run_id"] for r in cli_runs]
    assert [d["event_id"] for d in cli_letters] == ["bad-2", "bad-1"]

    # The page shows the same rows.
    page = Tables()
    page.feed(api["page"])
    tables = page.tables
    assert {k: cells[2] for k, cells in tables["matches"]} == {
        f"report {k}": v for k, v in partial.items()
    }
    assert {k: cells[3] for k, cells in tables["runs"]} == runs
    assert [k for k, _ in tables["deadletters"]] == ["bad-2", "bad-1"]
    [(name, cells)] = tables["rules"]
    assert name == "report"
    assert cells[3:] == ["1", "4", "1", "1"]  # open, fired, expired, missed

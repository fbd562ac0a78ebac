"""The engine carries out the new rule effects: filters, deadlines, expected partitions,
late-data events, and a quiet period restarted in the batch its timer fell due in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from eventflow.config.loader import load_pipeline
from eventflow.engine import Engine
from eventflow.events import Observation
from eventflow.store.memory import MemoryStore

PIPELINE = """
sensors:
  feed: {type: directory, path: ./feed}
datasets:
  orders: {sensor: feed, key: "orders/{dt}/{n}", partition: {status: payload.status}}
  marker: {sensor: feed, key: "marker/{dt}"}
rules:
  finals:
    when: {any: [{dataset: orders, where: "payload.status == 'final'"}], by: [dt]}
    late: event
    run: {command: ["true"]}
  daily:
    when: {all: [marker], by: [dt]}
    expect: {every: 1d, partition: {dt: "%Y-%m-%d"}, start: "2024-01-01"}
    expect_by: "{dt}T06:00Z + 1d"
    run: {command: ["true"]}
  alerted:
    when: {all: [marker, {dataset: orders, count: 2}], by: [dt]}
    expect_by: "{dt}T12:00Z"
    on_deadline: {run: {command: [echo, "late {dt}", "{run_id}"], retries: 2}}
    run: {command: ["true"]}
  debounce:
    when: {any: [marker], by: [dt]}
    quiet: 10s
    run: {command: ["true"]}
publish:
  - {type: file, path: out.jsonl}
"""


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def obs(key: str, payload: Any = None, version: int = 0) -> Observation:
    return Observation(
        sensor="feed",
        position={"path": key, "v": version},
        key=key,
        payload=payload,
        time=datetime(2024, 1, 1, tzinfo=UTC),
    )


async def step(engine: Engine, observations: list[Observation] | None = None) -> None:
    engine.wake()
    await engine.process(observations or [])


async def published(store: MemoryStore) -> list[dict[str, Any]]:
    return [
        {"type": i.event.type, **i.event.data} for i in await store.fetch_outbox("file", 10_000)
    ]


async def test_rule_filters_deadlines_schedules_and_late_events(tmp_path: Path) -> None:
    """A filtered event does not fire; an expected day with no input misses its deadline at
    06:00 the next day, once; a late input of a fired partition is published, not run."""
    (tmp_path / "p.yaml").write_text(PIPELINE)
    pipeline = load_pipeline(tmp_path / "p.yaml")
    clock = Clock()
    async with MemoryStore() as store:
        engine = Engine(pipeline, store, clock=clock)
        await engine.schedules.start(clock())
        await step(engine)  # opens 2024-01-01
        await step(engine, [obs("orders/2024-01-01/1", {"status": "draft"})])
        assert await store.list_runs(limit=10) == []
        await step(engine, [obs("orders/2024-01-01/2", {"status": "final"})])
        await step(engine, [obs("orders/2024-01-01/3", {"status": "final"})])
        assert [r.rule for r in await store.list_runs(limit=10)] == ["finals"]

        clock.now = datetime(2024, 1, 2, 6, 0, 1, tzinfo=UTC)
        for _ in range(3):
            await step(engine)
        events = await published(store)
        missed = [
            e for e in events if e["type"] == "eventflow.deadline.missed" and e["rule"] == "daily"
        ]
        assert [m["partition"] for m in missed] == [{"dt": "2024-01-01"}]
        assert missed[0]["missing"] == ["marker"]
        late = [e for e in events if e["type"] == "eventflow.data.late"]
        assert [e["event"]["position"]["path"] for e in late] == ["orders/2024-01-01/3"]
        daily = await store.get_match("daily", '{"dt":"2024-01-02"}')
        assert daily is not None
        assert daily.deadline == "pending"


async def test_quiet_timer_restarted_in_its_due_batch_is_kept(tmp_path: Path) -> None:
    """An update that arrives in the batch where the quiet timer fell due restarts the
    quiet period instead of losing the timer: the partition still fires, once."""
    (tmp_path / "p.yaml").write_text(PIPELINE)
    pipeline = load_pipeline(tmp_path / "p.yaml")
    clock = Clock()
    async with MemoryStore() as store:
        engine = Engine(pipeline, store, clock=clock)
        await step(engine, [obs("marker/2024-06-01", version=0)])
        clock.now += timedelta(seconds=10)
        await step(engine, [obs("marker/2024-06-01", version=1)])
        assert [r for r in await store.list_runs(limit=10) if r.rule == "debounce"] == []
        clock.now += timedelta(seconds=10)
        await step(engine)
        fired = [r for r in await store.list_runs(limit=10) if r.rule == "debounce"]
        assert [r.inputs[0].position["v"] for r in fired] == [1]


async def test_deadline_alert_task_runs_once_per_missed_partition(tmp_path: Path) -> None:
    """`on_deadline: {run: TASK}` creates one alert run per missed partition, with what
    arrived as its inputs and the alert's own retries."""
    (tmp_path / "p.yaml").write_text(PIPELINE)
    pipeline = load_pipeline(tmp_path / "p.yaml")
    clock = Clock()
    async with MemoryStore() as store:
        engine = Engine(pipeline, store, clock=clock)
        await step(engine, [obs("orders/2024-01-01/1", {"status": "final"})])
        clock.now = datetime(2024, 1, 1, 12, 0, 1, tzinfo=UTC)
        await step(engine)
        await step(engine)
        alerts = [r for r in await store.list_runs(limit=10) if r.rule == "alerted:on_deadline"]
        assert [(r.partition, r.max_attempts) for r in alerts] == [({"dt": "2024-01-01"}, 3)]
        assert [i.position["path"] for i in alerts[0].inputs] == ["orders/2024-01-01/1"]
        assert pipeline.rules["alerted:on_deadline"].task_type == "command"

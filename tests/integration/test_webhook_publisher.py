"""The webhook publisher against a real HTTP receiver on a loopback port: CloudEvents in
both HTTP modes, Standard Webhooks signatures, delivery through the outbox across an outage
and 500 answers, refusals dead-lettered."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from eventflow import metrics, registry
from eventflow.errors import ClosedError, PublishError, PublishRejected
from eventflow.events import Event
from eventflow.outbox import OutboxDrainer
from eventflow.records import Changes, OutboxItem
from eventflow.store.sqlite import SQLiteStore
from eventflow.types import PluginEnv, Publisher
from eventflow_sensors.http import signatures
from eventflow_sensors.http.publish import WebhookPublisher
from tests.services.receiver import Receiver, Request

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_" + "b2xkIHNlY3JldCBvZiB0aGUgcm90YXRpb24="


def event(n: int, type_: str = "eventflow.run.failed") -> Event:
    return Event(
        id=f"ev-{n:04d}",
        source="/eventflow/p/rules/report",
        type=type_,
        subject=f"report/dt=2024-01-{n % 28 + 1:02d}",
        time=datetime(2024, 1, 1, tzinfo=UTC) + timedelta(seconds=n),
        data={"rule": "report", "run_id": f"run-{n}", "attempt": 1, "error": "exit 1"},
    )


def publisher(tmp_path: Path, url: str, **options: object) -> WebhookPublisher:
    config = {"type": "webhook", "url": url, "backoff": "50ms", **options}
    return WebhookPublisher("hooks", config, PluginEnv("p", tmp_path))


def verified(request: Request, secret: str = SECRET) -> str | None:
    """The delivery id of a request whose Standard Webhooks signature holds."""
    key = signatures.key("standard", secret)
    now = datetime.now(UTC)
    found = signatures.verify(
        "standard", key, request.headers, request.body, now=now, tolerance=timedelta(minutes=5)
    )
    return found.delivery_id


@pytest.fixture
def receiver() -> object:
    r = Receiver()
    yield r
    r.stop()


def test_registered_as_the_webhook_publisher() -> None:
    """The `webhook` entry point resolves to the publisher, which needs no optional extra."""
    assert registry.publishers.get("webhook") is WebhookPublisher


async def test_structured_mode_posts_the_signed_envelope(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Structured mode POSTs the CloudEvents JSON envelope as `application/cloudevents+json`,
    signed with every secret while they rotate; each signature verifies on its own."""
    monkeypatch.setenv("HOOK_SECRET", f"{SECRET} {OLD_SECRET}")
    monkeypatch.setenv("HOOK_AUTH", "Bearer s3cr3t-token")
    receiver.start()
    pub = publisher(
        tmp_path,
        receiver.url + "/in?token=abc",
        secret_env="HOOK_SECRET",
        headers_env={"Authorization": "HOOK_AUTH"},
        headers={"X-Team": "data"},
    )
    assert isinstance(pub, Publisher)
    async with pub:
        await pub.publish([event(1)])
    [got] = receiver.requests
    assert got.path == "/in?token=abc"
    assert got.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert json.loads(got.body) == json.loads(event(1).to_json())
    assert got.headers["authorization"] == "Bearer s3cr3t-token"
    assert got.headers["x-team"] == "data"
    assert verified(got) == "ev-0001" == got.headers["webhook-id"]
    assert verified(got, OLD_SECRET) == "ev-0001"
    assert len(got.headers["webhook-signature"].split()) == 2
    with pytest.raises(ClosedError):
        await pub.publish([event(2)])


async def test_binary_mode_puts_the_attributes_in_ce_headers(
    tmp_path: Path, receiver: Receiver
) -> None:
    """Binary mode POSTs `data` as the JSON body and every other attribute as a `ce-` header;
    the signature covers that body (a file of secrets works like the variable)."""
    (tmp_path / "secrets").write_text(SECRET + "\n")
    receiver.start()
    async with publisher(tmp_path, receiver.url, mode="binary", secret_file="secrets") as pub:
        await pub.publish([event(7)])
    [got] = receiver.requests
    assert got.headers["content-type"] == "application/json"
    assert json.loads(got.body) == event(7).data
    assert got.headers["ce-id"] == "ev-0007"
    assert got.headers["ce-specversion"] == "1.0"
    assert got.headers["ce-type"] == "eventflow.run.failed"
    assert got.headers["ce-source"] == "/eventflow/p/rules/report"
    assert got.headers["ce-subject"] == "report/dt=2024-01-08"
    assert datetime.fromisoformat(got.headers["ce-time"]) == event(7).time
    assert verified(got) == "ev-0007"


async def test_binary_mode_percent_encodes_a_partition_value_a_header_cannot_hold(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A subject from partition values outside printable ASCII (`Zürich`, a newline, a
    space) is sent percent-encoded in `ce-subject`, as the CloudEvents HTTP binding says,
    instead of stopping the publisher."""
    receiver.start()
    odd = event(3).model_copy(update={"subject": 'report/plant=Zürich a\n"b"%'})
    async with publisher(tmp_path, receiver.url, mode="binary") as pub:
        await pub.publish([odd, event(4)])
    first, second = receiver.requests
    assert first.headers["ce-subject"] == "report/plant=Z%C3%BCrich%20a%0A%22b%22%25"
    assert urllib.parse.unquote(first.headers["ce-subject"]) == odd.subject
    assert second.headers["ce-id"] == "ev-0004"


async def test_outbox_delivers_every_event_through_an_outage_and_500s(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the receiver down at first and then answering 500 to every fourth request, the
    outbox delivers all 300 events: deduped by CloudEvents id nothing is lost, every
    accepted request is signed, and the outbox ends empty."""
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    events = [event(n) for n in range(300)]
    async with SQLiteStore(tmp_path / "s.db") as store:
        async with store.transaction() as tx:
            await tx.apply(Changes(outbox=[OutboxItem("hooks", e) for e in events]))
        pub = publisher(tmp_path, receiver.url, secret_env="HOOK_SECRET", retries=2)
        async with pub:
            drainer = OutboxDrainer("hooks", pub, store, poll_interval=0.05)
            task = asyncio.create_task(drainer.run())
            await asyncio.sleep(1.5)  # the receiver is down: connections are refused
            assert receiver.requests == []
            assert drainer.published == 0
            receiver.fail_every = 4
            receiver.start()
            started = time.monotonic()
            while await store.fetch_outbox("hooks", 1) and time.monotonic() - started < 60:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        assert await store.fetch_outbox("hooks", 10) == []
    accepted = receiver.accepted()
    ids = Counter(verified(r) for r in accepted)
    assert set(ids) == {e.id for e in events}, "an event was lost"
    assert sum(1 for r in receiver.requests if r.status == 500) >= 70
    assert max(ids.values()) == 1, "delivered twice without a crash"
    assert drainer.published == 300


async def test_a_refused_event_is_dead_lettered_and_the_others_go_on(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A 400 answer is a refusal for good: that event becomes a dead letter of the publisher
    (logged, counted), the others are delivered, nothing stays in the outbox; 408 and 429
    are tried again instead."""
    statuses = {"ev-0002": [400], "ev-0003": [429, 408, 200]}

    def answer(request: Request) -> int:
        left = statuses.get(json.loads(request.body)["id"], [200])
        return left.pop(0) if len(left) > 1 else left[0]

    receiver.answer = answer
    receiver.start()
    events = [event(n) for n in range(1, 5)]
    before = metrics.PUBLISH_REJECTED.labels("hooks")._value.get()
    async with SQLiteStore(tmp_path / "s.db") as store:
        async with store.transaction() as tx:
            await tx.apply(Changes(outbox=[OutboxItem("hooks", e) for e in events]))
        async with publisher(tmp_path, receiver.url) as pub:
            drainer = OutboxDrainer("hooks", pub, store, poll_interval=0.05)
            with capture_logs() as logs:
                assert await drainer.drain_once() == 4
        assert await store.fetch_outbox("hooks", 10) == []
        [letter] = await store.list_deadletters()
    assert letter.sensor == "publisher:hooks"
    assert letter.position == {
        "publisher": "hooks",
        "event_id": "ev-0002",
        "type": "eventflow.run.failed",
    }
    assert letter.error.startswith("HTTP 400 from http://127.0.0.1:")
    assert json.loads(letter.excerpt)["id"] == "ev-0002"
    delivered = [json.loads(r.body)["id"] for r in receiver.accepted()]
    assert delivered == ["ev-0001", "ev-0003", "ev-0004"]
    assert [e["event_id"] for e in logs if e["event"] == "event_undeliverable"] == ["ev-0002"]
    assert metrics.PUBLISH_REJECTED.labels("hooks")._value.get() == before + 1
    assert drainer.published == 3


async def test_failures_name_the_receiver_but_never_its_secrets(
    tmp_path: Path, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver that stays down fails the batch with an error naming the URL without its
    query, never a header value or the token in the query."""
    monkeypatch.setenv("HOOK_AUTH", "Bearer very-secret")
    pub = publisher(
        tmp_path, receiver.url + "/x?token=query-secret", headers_env={"Authorization": "HOOK_AUTH"}
    )
    async with pub:
        with pytest.raises(PublishError) as failed:
            await pub.publish([event(1)])
    assert not isinstance(failed.value, PublishRejected)
    assert f"POST {receiver.url}/x failed" in str(failed.value) or "ConnectError" in str(
        failed.value
    )
    assert "very-secret" not in str(failed.value)
    assert "query-secret" not in str(failed.value)


async def test_a_missing_secret_variable_is_named_at_open(tmp_path: Path) -> None:
    """A `secret_env` or `headers_env` variable that is not set fails `open` with its name."""
    pub = publisher(tmp_path, "http://127.0.0.1:9/", secret_env="NO_SUCH_SECRET_VAR")
    with pytest.raises(PublishError, match="NO_SUCH_SECRET_VAR"):
        await pub.open()
    pub = publisher(tmp_path, "http://127.0.0.1:9/", headers_env={"X-Key": "NO_SUCH_VAR_2"})
    with pytest.raises(PublishError, match="NO_SUCH_VAR_2"):
        await pub.open()

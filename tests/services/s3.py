"""An S3 (and SQS) server for the tests: moto's standalone server on a free loopback port.

``s3_server`` starts ``python -m moto.server`` once per session as a subprocess, so a test
can stop it and start it again on the same port (an endpoint going away and coming back).
``EVENTFLOW_TEST_S3_ENDPOINT=http://host:port`` points the tests at another S3 endpoint
instead (MinIO from ``docker-compose.yml``); credentials then come from the usual
``AWS_*`` variables. Each test gets its own bucket (``s3_bucket``), so tests never see each
other's objects.
"""

from __future__ import annotations

import http.client
import itertools
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import pytest

from tests.services._process import free_port, stop, wait_listening

ENV = "EVENTFLOW_TEST_S3_ENDPOINT"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
"""moto accepts any credentials; these keep boto3 from looking for real ones."""
UNSIGNED = {
    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/s3/aws4_request,"
    " SignedHeaders=host, Signature=0"
}
"""moto reads the account from the access key and checks no signature; without the header
it refuses to overwrite an object (HTTP 403)."""


@dataclass
class S3Server:
    """An S3 endpoint; ``restartable`` when the tests started it themselves."""

    endpoint: str
    port: int
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)
    """Extra environment of the moto server (``INITIAL_NO_AUTH_ACTION_COUNT`` for IAM)."""
    _counter: Iterator[int] = field(default_factory=itertools.count)

    @property
    def restartable(self) -> bool:
        return self.proc is not None

    def start(self) -> None:
        """Start the moto server (again) on the same port; its state starts empty."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **CREDENTIALS, **self.env},
        )
        wait_listening(self.proc, [self.port], timeout=60, what="moto server")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def client(self, service: str = "s3", **credentials: str) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
            aws_access_key_id=credentials.get("key", os.environ.get("AWS_ACCESS_KEY_ID")),
            aws_secret_access_key=credentials.get(
                "secret", os.environ.get("AWS_SECRET_ACCESS_KEY")
            ),
            config=Config(
                s3={"addressing_style": "path"},
                max_pool_connections=32,
                retries={"max_attempts": 2, "mode": "standard"},
            ),
        )

    def sensor_yaml(self, bucket: str, **settings: str) -> str:
        """A pipeline file's s3 sensor section (flow style) on this endpoint."""
        fields = {"type": "s3", "bucket": bucket, "endpoint_url": self.endpoint,
                  "path_style": "true", **settings}  # fmt: skip
        return "{" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}"

    def new_bucket(self) -> str:
        name = f"ef-{next(self._counter)}-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name

    def new_queue(self, visibility_timeout: int = 30) -> tuple[str, str]:
        """An SQS queue: ``(url, arn)``."""
        sqs = self.client("sqs")
        url = sqs.create_queue(
            QueueName=f"ef-{uuid.uuid4().hex[:12]}",
            Attributes={"VisibilityTimeout": str(visibility_timeout)},
        )["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return url, arn["Attributes"]["QueueArn"]

    def put_many(self, bucket: str, objects: dict[str, bytes], threads: int = 4) -> None:
        """Put many objects. moto is slow per request and does not check signatures, so
        plain HTTP PUTs on kept-alive connections spare the CPU that boto3's signing would
        take; an external endpoint gets signed boto3 requests."""
        client = self.client() if self.proc is None else None
        local = threading.local()

        def put(item: tuple[str, bytes]) -> None:
            key, body = item
            if client is not None:
                client.put_object(Bucket=bucket, Key=key, Body=body)
                return
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", self.port)
            conn.request("PUT", f"/{bucket}/{quote(key)}", body=body, headers=UNSIGNED)
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"PUT {key}: HTTP {response.status}")

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(put, objects.items()))


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """The session's S3 endpoint (moto started here, or ``EVENTFLOW_TEST_S3_ENDPOINT``)."""
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    external = os.environ.get(ENV)
    if external:
        yield S3Server(endpoint=external.rstrip("/"), port=0)
        return
    port = free_port()
    server = S3Server(endpoint=f"http://127.0.0.1:{port}", port=port)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_s3() -> Iterator[S3Server]:
    """A moto server of this test's own, always started here (even when
    ``EVENTFLOW_TEST_S3_ENDPOINT`` is set), for tests that stop it or change its settings."""
    for name, value in CREDENTIALS.items():
        os.environ.setdefault(name, value)
    port = free_port()
    server = S3Server(endpoint=f"http://127.0.0.1:{port}", port=port)
    yield server
    server.stop()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket for one test."""
    return s3_server.new_bucket()

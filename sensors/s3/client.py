"""boto3, kept at arm's length: clients, the calls the sensor makes, and their errors.

Everything here blocks and runs on the sensor's threads, never on the event loop. Library
errors are translated into :class:`S3Problem` (what went wrong, what to do), so the sensor
reports them in eventflow's words; credentials are never part of a message.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventflow.plugin import SensorError

from .config import Connection

LIST_PAGE = 1000
"""Keys per ListObjectsV2 request (S3's maximum)."""


@dataclass(frozen=True, slots=True)
class ObjectState:
    """What identifies one version of an object: a change in any of these is a new object."""

    etag: str
    size: int
    modified: int
    """LastModified in whole Unix seconds (what both listings and HEAD report)."""
    version: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"etag": self.etag, "size": self.size, "modified": self.modified}
        if self.version:
            out["version"] = self.version
        return out

    @classmethod
    def from_json(cls, value: Any) -> ObjectState | None:
        if not isinstance(value, dict):
            return None
        etag, size, modified = value.get("etag"), value.get("size"), value.get("modified")
        if not isinstance(etag, str) or not isinstance(size, int) or not isinstance(modified, int):
            return None
        version = value.get("version")
        return cls(etag, size, modified, version if isinstance(version, str) else None)


def _etag(raw: str) -> str:
    return raw.strip('"')


def _seconds(when: datetime) -> int:
    return int(when.timestamp())


class S3Problem(SensorError):
    """A failed S3 (or SQS) call; ``retriable`` when the same call may work later."""

    def __init__(self, message: str, *, hint: str, code: str, retriable: bool = True) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.retriable = retriable


def make_client(conn: Connection, service: str = "s3", long_poll: float = 0) -> Any:
    """A boto3 client (thread-safe) for ``service`` with the connection's settings; a
    request may wait ``long_poll`` seconds longer for its answer (SQS's long polls)."""
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
    except ImportError as exc:  # pragma: no cover - the s3 extra is missing
        raise SensorError("the s3 sensor needs boto3", hint="pip install 'eventflow[s3]'") from exc
    session = boto3.session.Session(profile_name=conn.profile, region_name=conn.region)
    config = Config(
        s3={"addressing_style": "path" if conn.path_style else "auto"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=conn.request_timeout.total_seconds() + long_poll,
        max_pool_connections=16,
    )
    endpoint = conn.endpoint_url if service == "s3" else (conn.endpoint_url or None)
    return session.client(service, endpoint_url=endpoint, config=config)


def translate(exc: BaseException, what: str, bucket: str) -> S3Problem:
    """An S3Problem saying what failed and what to do; never includes credentials."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return S3Problem(
            f"{what}: no AWS credentials found",
            hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or an instance role",
            code="NoCredentials",
        )
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", "Unknown"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("NoSuchBucket",):
            return S3Problem(
                f"{what}: bucket {bucket!r} does not exist",
                hint="create it, or fix the sensor's `bucket` (and `region`/`endpoint_url`)",
                code=code,
            )
        if (
            code
            in (
                "AccessDenied",
                "InvalidAccessKeyId",
                "SignatureDoesNotMatch",
                "AllAccessDisabled",
                "ExpiredToken",
            )
            or status == 403
        ):
            return S3Problem(
                f"{what}: access denied ({code})",
                hint="check the credentials and that their policy allows s3:ListBucket and"
                " s3:GetObject on the bucket (sqs:ReceiveMessage/DeleteMessage on the queue)",
                code=code,
            )
        if code in ("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
            return S3Problem(
                f"{what}: the SQS queue does not exist",
                hint="create it, or fix `notifications.sqs`",
                code=code,
            )
        return S3Problem(
            f"{what}: {code} ({error.get('Message', '')})".rstrip(" ()"),
            hint="see the S3 error code",
            code=code,
        )
    if isinstance(exc, EndpointConnectionError):
        return S3Problem(
            f"{what}: cannot reach the endpoint ({exc.kwargs.get('endpoint_url', '')})",
            hint="check `endpoint_url`/`region` and the network; retrying",
            code="EndpointConnectionError",
        )
    if isinstance(exc, BotoCoreError | OSError):
        return S3Problem(
            f"{what}: {type(exc).__name__}: {exc}",
            hint="a network problem; retrying",
            code=type(exc).__name__,
        )
    raise exc


class Bucket:
    """The blocking calls of the sensor on one bucket; counts the requests it makes."""

    def __init__(self, conn: Connection) -> None:
        self.name = conn.bucket
        self.client = make_client(conn)
        self.requests = 0

    def pages(self, prefix: str) -> Iterator[list[tuple[str, ObjectState]]]:
        """Every object under ``prefix``, a page (up to 1,000 keys) at a time, in key order."""
        token: str | None = None
        while True:
            params: dict[str, Any] = {"Bucket": self.name, "Prefix": prefix, "MaxKeys": LIST_PAGE}
            if token:
                params["ContinuationToken"] = token
            self.requests += 1
            try:
                page = self.client.list_objects_v2(**params)
            except Exception as exc:
                raise translate(exc, f"listing s3://{self.name}/{prefix}", self.name) from exc
            yield [
                (
                    item["Key"],
                    ObjectState(_etag(item["ETag"]), item["Size"], _seconds(item["LastModified"])),
                )
                for item in page.get("Contents", ())
            ]
            if not page.get("IsTruncated"):
                return
            token = page["NextContinuationToken"]

    def list_all(self, prefix: str) -> list[tuple[str, ObjectState]]:
        return [item for page in self.pages(prefix) for item in page]

    def head(self, key: str) -> ObjectState | None:
        """The object's current state, or None if there is none (any more)."""
        from botocore.exceptions import ClientError

        self.requests += 1
        try:
            head = self.client.head_object(Bucket=self.name, Key=key)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 404 or exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return None
            raise translate(exc, f"reading s3://{self.name}/{key}", self.name) from exc
        except Exception as exc:
            raise translate(exc, f"reading s3://{self.name}/{key}", self.name) from exc
        return ObjectState(
            _etag(head["ETag"]),
            head["ContentLength"],
            _seconds(head["LastModified"]),
            head.get("VersionId") if head.get("VersionId") not in (None, "null") else None,
        )

    def get(self, key: str, limit: int = 16 << 20) -> bytes | None:
        """The object's body (at most ``limit`` bytes), or None if it is gone."""
        from botocore.exceptions import ClientError

        self.requests += 1
        try:
            response = self.client.get_object(Bucket=self.name, Key=key)
            return bytes(response["Body"].read(limit))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise translate(exc, f"reading s3://{self.name}/{key}", self.name) from exc
        except Exception as exc:
            raise translate(exc, f"reading s3://{self.name}/{key}", self.name) from exc


class Queue:
    """The blocking SQS calls of notification mode."""

    def __init__(self, conn: Connection, url: str, wait: float) -> None:
        """``wait``: the long poll of each receive (seconds)."""
        self.url = url
        self.client = make_client(conn, "sqs", long_poll=wait)
        self.bucket = conn.bucket

    def receive(self, wait: float, limit: int) -> list[dict[str, Any]]:
        try:
            response = self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=limit,
                WaitTimeSeconds=round(wait),
                AttributeNames=["SentTimestamp"],
            )
        except Exception as exc:
            raise translate(exc, f"receiving from {self.url}", self.bucket) from exc
        return list(response.get("Messages", ()))

    def backlog(self) -> int:
        """Messages waiting in the queue (SQS's ApproximateNumberOfMessages)."""
        try:
            response = self.client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
            )
        except Exception as exc:
            raise translate(exc, f"reading the attributes of {self.url}", self.bucket) from exc
        return int(response.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))

    def delete(self, receipts: list[str]) -> None:
        """Delete messages (10 per request); raises S3Problem if any could not be deleted."""
        for start in range(0, len(receipts), 10):
            chunk = receipts[start : start + 10]
            entries = [{"Id": str(i), "ReceiptHandle": r} for i, r in enumerate(chunk)]
            try:
                response = self.client.delete_message_batch(QueueUrl=self.url, Entries=entries)
            except Exception as exc:
                raise translate(exc, f"deleting from {self.url}", self.bucket) from exc
            failed = response.get("Failed") or []
            if failed:
                raise S3Problem(
                    f"deleting from {self.url}: {len(failed)} message(s) not deleted"
                    f" ({failed[0].get('Code')})",
                    hint="they will be received again and deduplicated",
                    code=str(failed[0].get("Code")),
                )

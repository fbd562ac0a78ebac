"""The objects a data-quality ``exists`` check looks for: ``s3://BUCKET/KEY`` with glob
characters (``*``, ``?``, ``[...]``; ``*`` matches ``/`` too), listed with the sensor's
client settings (endpoint, region, profile, path style). Blocking: run on a thread."""

from __future__ import annotations

import fnmatch
import re

from eventflow.plugin import require_extra

from .client import Bucket, S3Problem
from .config import Connection

_GLOB = re.compile(r"[*?\[]")


def split_url(url: str) -> tuple[str, str]:
    """``s3://bucket/key`` as ``(bucket, key)``; S3Problem when it is not one."""
    rest = url.removeprefix("s3://")
    bucket, _, key = rest.partition("/")
    if not url.startswith("s3://") or not bucket or not key:
        raise S3Problem(
            f"{url!r} is not an S3 location",
            hint="write s3://BUCKET/KEY (glob characters allowed in the key)",
            code="BadLocation",
            retriable=False,
        )
    return bucket, key


def object_sizes(conn: Connection, url: str) -> list[tuple[str, int]]:
    """Every object matching ``url`` (``s3://bucket/key-glob``) with its size, in key order,
    read with ``conn``'s settings on the bucket the URL names."""
    require_extra("s3", "an `exists` check of S3 objects")
    bucket, pattern = split_url(url)
    glob = _GLOB.search(pattern)
    prefix = pattern[: glob.start()] if glob else pattern
    client = Bucket(conn.model_copy(update={"bucket": bucket}))
    found = []
    for key, state in client.list_all(prefix):
        if key == pattern if glob is None else fnmatch.fnmatchcase(key, pattern):
            found.append((f"s3://{bucket}/{key}", state.size))
    return found

"""What an S3 sensor lists for ``eventflow backfill`` (the ``ListableSensor`` capability).

One listing of the bucket under the backfill's prefix (within the sensor's own ``prefix``),
judged by a fresh :class:`~.state.Tracker` of the sensor's readiness mode, as the sensor's
first listing would be: ``marker`` and ``manifest`` modes take only complete prefixes;
``stable`` mode takes what is there (a backfill reads data that landed before, not data
still being written); ``none`` takes every object.
"""

from __future__ import annotations

from .client import Bucket, ObjectState
from .config import S3SensorConfig
from .state import Manifest, Tracker, dir_of, parse_manifest

Item = tuple[str, ObjectState]


def overlap(sensor_prefix: str, prefix: str) -> str | None:
    """The prefix to list: the longer of the two when one contains the other, else None
    (the dataset's keys lie outside what the sensor watches)."""
    if prefix.startswith(sensor_prefix):
        return prefix
    if sensor_prefix.startswith(prefix):
        return sensor_prefix
    return None


def complete_objects(config: S3SensorConfig, mode: str, prefix: str) -> list[Item]:
    """The objects under ``prefix`` that are ready by the sensor's rules (blocking: boto3)."""
    where = overlap(config.prefix, prefix)
    if where is None:
        return []
    bucket = Bucket(config)
    objects = bucket.list_all(where)
    tracker = Tracker("none" if mode == "stable" else mode, config.ready.completes)  # type: ignore[arg-type]
    listing = tracker.begin_listing()
    for key, state in tracker.needs_manifest(objects):
        body = bucket.get(key)
        parts: frozenset[str] | None = None
        if body is not None:
            try:
                parts = parse_manifest(body, dir_of(key), config.bucket)
            except ValueError:
                parts = None  # the running sensor dead-letters it; a backfill leaves it out
        tracker.manifests[dir_of(key)] = Manifest(state, parts)
    decision, _ = tracker.listed(where, objects, listing)
    return decision.emit

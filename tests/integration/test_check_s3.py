"""The `exists` check of S3 objects, against the test S3 server (moto): the produced
dataset's own bucket and any `s3://` location, listed with the sensor's client settings."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import pytest

from eventflow import extras
from eventflow.config.loader import compile_mapping
from eventflow.errors import EventflowError
from eventflow.events import JSON, utcnow
from eventflow.quality.checker import object_sensors
from eventflow.quality.sources import run_check
from eventflow.types import PluginEnv
from tests.integration.test_check_sources import target
from tests.services.s3 import S3Server


def pipeline(tmp_path: Path, s3: S3Server, bucket: str, exists: list[str]) -> Any:
    raw = {
        "name": "q",
        "sensors": {
            "landing": {"type": "directory", "path": "./landing"},
            "lake": {
                "type": "s3",
                "bucket": bucket,
                "endpoint_url": s3.endpoint,
                "path_style": True,
            },
        },
        "datasets": {
            "raw": {"sensor": "landing", "key": "raw/{dt}.csv"},
            "exported": {"sensor": "lake", "key": "out/dt={dt}/_SUCCESS"},
        },
        "rules": {
            "load": {
                "when": {"any": ["raw"], "by": ["dt"]},
                "run": {"command": ["true"]},
                "produces": "exported",
                "checks": [{"name": "objects", "exists": exists}],
            }
        },
    }
    (tmp_path / "landing").mkdir(exist_ok=True)
    return compile_mapping(raw, tmp_path / "pipeline.yaml")


async def check(tmp_path: Path, compiled: Any) -> dict[str, JSON]:
    suite = compiled.rules["load"].checks
    objects = object_sensors(compiled, PluginEnv("q", tmp_path))
    t = dataclasses.replace(target(tmp_path), objects=objects)
    return await run_check(suite.checks[0], suite, t, None, None, utcnow, random.Random(1))


async def test_exists_looks_for_the_objects_of_an_s3_dataset_in_its_bucket(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    """For a produced S3 dataset a relative `exists` entry is a key glob in the dataset's
    bucket: missing objects and an empty one fail, data passes with the bytes found."""
    compiled = pipeline(tmp_path, s3_server, s3_bucket, ["out/dt={dt}/part-*.csv"])
    result = await check(tmp_path, compiled)
    assert result["passed"] is False
    assert result["detail"] == "nothing matches out/dt=2026-01-01/part-*.csv"
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="out/dt=2026-01-01/part-0.csv", Body=b"a,b\n")
    client.put_object(Bucket=s3_bucket, Key="out/dt=2026-01-01/part-1.csv", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="out/dt=2026-01-02/part-0.csv", Body=b"other")
    result = await check(tmp_path, compiled)
    assert result["passed"] is False
    assert result["detail"] == f"s3://{s3_bucket}/out/dt=2026-01-01/part-1.csv is empty"
    client.put_object(Bucket=s3_bucket, Key="out/dt=2026-01-01/part-1.csv", Body=b"1,2\n")
    result = await check(tmp_path, compiled)
    assert result["passed"] is True
    assert result["value"] == 8  # the two objects of this partition, not the other's


async def test_exists_reads_an_s3_url_in_another_bucket_with_the_sensors_client(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str
) -> None:
    """An `s3://` entry names its own bucket; it is listed through the S3 sensor's endpoint
    (the test server), an exact key needing that very object."""
    other = s3_server.new_bucket()
    url = f"s3://{other}/exports/{{dt}}/report.json"
    compiled = pipeline(tmp_path, s3_server, s3_bucket, [url])
    client = s3_server.client()
    client.put_object(Bucket=other, Key="exports/2026-01-01/report.json.tmp", Body=b"{}")
    result = await check(tmp_path, compiled)
    assert result["passed"] is False
    assert "nothing matches" in str(result["detail"])
    client.put_object(Bucket=other, Key="exports/2026-01-01/report.json", Body=b'{"ok": 1}')
    result = await check(tmp_path, compiled)
    assert (result["passed"], result["value"]) == (True, 9)


async def test_an_s3_url_without_an_s3_sensor_is_refused_by_validate(tmp_path: Path) -> None:
    """`exists: [s3://...]` in a pipeline with no S3 sensor is a config error that says to
    declare one (its client settings are what the check uses)."""
    raw = {
        "sensors": {"landing": {"type": "directory", "path": "./landing"}},
        "datasets": {"raw": {"sensor": "landing", "key": "raw/{dt}.csv"}},
        "rules": {
            "load": {
                "when": {"any": ["raw"], "by": ["dt"]},
                "run": {"command": ["true"]},
                "produces": "loaded",
                "checks": [{"name": "o", "exists": ["s3://lake/out/{dt}/*"]}],
            }
        },
    }
    (tmp_path / "landing").mkdir()
    with pytest.raises(EventflowError) as caught:
        compile_mapping(raw, tmp_path / "pipeline.yaml")
    text = str(caught.value)
    assert "no `s3` sensor" in text
    assert "declare a sensor of type `s3`" in text


async def test_a_missing_boto3_fails_the_check_naming_the_extra(
    tmp_path: Path, s3_server: S3Server, s3_bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without boto3 the check fails (it does not pass unchecked) and says which extra
    to install."""
    compiled = pipeline(tmp_path, s3_server, s3_bucket, ["out/*"])
    monkeypatch.setattr(extras, "missing", lambda extra: ["boto3"] if extra == "s3" else [])
    result = await check(tmp_path, compiled)
    assert result["passed"] is False
    assert "boto3" in str(result["detail"])
    assert "pip install 'eventflow-orchestrator[s3]'" in str(result["detail"])

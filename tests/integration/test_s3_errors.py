"""S3 errors give a clear message (the sensor's health) and the sensor recovers by itself:
access denied, a missing bucket, the endpoint going away and coming back."""

from __future__ import annotations

import asyncio

import pytest
import structlog

from eventflow.testing import RecordingContext, running
from tests.integration.test_s3_sensor import make
from tests.services.s3 import S3Server

ALLOW_ALL = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}'
ALLOW_READ = (
    '{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
    '"Action":["s3:ListBucket","s3:GetObject"],"Resource":"*"}]}'
)


async def wait_unhealthy(ctx: RecordingContext, timeout: float = 10.0) -> str:
    """The detail of the first unhealthy report."""
    for _ in range(round(timeout / 0.05)):
        for ok, detail in ctx.health:
            if not ok:
                return detail
        await asyncio.sleep(0.05)
    raise AssertionError(f"the sensor did not report a problem in {timeout}s: {ctx.health}")


async def test_access_denied_is_reported_and_recovers_when_granted(
    private_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials without s3:ListBucket: the health says access is denied and what to
    check; once a policy grants it, the sensor lists and emits what was waiting."""
    private_s3.env["INITIAL_NO_AUTH_ACTION_COUNT"] = "5"  # set-up calls before IAM applies
    private_s3.start()
    private_s3.client().create_bucket(Bucket="locked")
    iam = private_s3.client("iam")
    iam.create_user(UserName="admin")
    iam.put_user_policy(UserName="admin", PolicyName="all", PolicyDocument=ALLOW_ALL)
    key = iam.create_access_key(UserName="admin")["AccessKey"]
    iam.create_user(UserName="reader")
    admin = {"key": key["AccessKeyId"], "secret": key["SecretAccessKey"]}
    reader = private_s3.client("iam", **admin).create_access_key(UserName="reader")["AccessKey"]
    private_s3.client(**admin).put_object(Bucket="locked", Key="k/1", Body=b"1")
    # The sensor takes its credentials from the environment (boto3's default chain).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", reader["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", reader["SecretAccessKey"])
    ctx = RecordingContext("lake")
    with structlog.testing.capture_logs() as logs:
        async with running(make(private_s3, "locked"), ctx):
            detail = await wait_unhealthy(ctx)
            assert "access denied" in detail
            assert "s3:ListBucket" in detail
            private_s3.client("iam", **admin).put_user_policy(
                UserName="reader", PolicyName="read", PolicyDocument=ALLOW_READ
            )
            obs = await ctx.get(timeout=15, commit=True)
            assert obs.key == "k/1"
            await ctx.wait_healthy()
    assert reader["SecretAccessKey"] not in repr(logs)
    assert any(e["event"] == "s3_unavailable" and e["code"] == "AccessDenied" for e in logs)


async def test_missing_bucket_is_reported_and_recovers_when_created(
    s3_server: S3Server,
) -> None:
    """A bucket that does not exist: the health says so; once it is created and filled,
    the objects are emitted."""
    ctx = RecordingContext("lake")
    async with running(make(s3_server, "ef-not-yet"), ctx):
        detail = await wait_unhealthy(ctx)
        assert "bucket 'ef-not-yet' does not exist" in detail
        client = s3_server.client()
        client.create_bucket(Bucket="ef-not-yet")
        client.put_object(Bucket="ef-not-yet", Key="a", Body=b"1")
        assert (await ctx.get(timeout=15, commit=True)).key == "a"
        await ctx.wait_healthy()


async def test_endpoint_down_and_back(private_s3: S3Server) -> None:
    """The endpoint goes away: the sensor reports it cannot reach it and keeps retrying;
    when it is back, objects are emitted again and those gone meanwhile are forgotten."""
    private_s3.start()
    private_s3.client().create_bucket(Bucket="flaky")
    private_s3.client().put_object(Bucket="flaky", Key="before", Body=b"1")
    ctx = RecordingContext("lake")
    async with running(make(private_s3, "flaky"), ctx):
        assert (await ctx.get(timeout=10, commit=True)).key == "before"
        await ctx.wait_healthy()
        private_s3.stop()
        detail = await wait_unhealthy(ctx, timeout=20)
        assert "cannot reach the endpoint" in detail
        private_s3.start()  # moto starts empty
        private_s3.client().create_bucket(Bucket="flaky")
        private_s3.client().put_object(Bucket="flaky", Key="after", Body=b"2")
        assert (await ctx.get(timeout=20, commit=True)).key == "after"
        await ctx.wait_healthy()  # after the poll that found "after" and forgot "before"
    assert ctx.forgotten == ["before"]

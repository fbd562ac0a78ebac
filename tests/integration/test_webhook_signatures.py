"""Each webhook signature preset on the real server: a good signature is accepted, a wrong
or stale one refused; a replay under a new unsigned id does not fire again."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest

from eventflow.config.loader import load_pipeline
from eventflow.errors import ConfigError
from tests.integration.test_server import serving
from tests.integration.test_webhook import post, recorded

KEY = b"standard-key-for-tests"
STANDARD_SECRET = "whsec_" + base64.b64encode(KEY).decode()
STRIPE_SECRET = "whsec_stripe-secret-for-tests"
GITHUB_SECRET = "github-secret-for-tests"
PIPELINE = """
name: signed
sensors:
  std: {type: http, auth: hmac, signature: standard, secret_env: STD_SECRET}
  stripe: {type: http, auth: hmac, signature: stripe, secret_env: STRIPE_SECRET, id: payload.id}
  gh: {type: http, auth: hmac, signature: github, secret_env: GH_SECRET}
datasets:
  std: {sensor: std, partition: {n: payload.n}}
  stripe: {sensor: stripe, partition: {n: payload.n}}
  gh: {sensor: gh, partition: {n: payload.n}}
rules:
  fire:
    when: {any: [std, stripe, gh]}
    run: {command: [sh, -c, "true"]}
"""


def standard(delivery: str, body: bytes, *, key: bytes = KEY, age: int = 0) -> dict[str, str]:
    ts = str(int(time.time()) - age)
    sig = base64.b64encode(hmac.new(key, f"{delivery}.{ts}.".encode() + body, "sha256").digest())
    return {
        "webhook-id": delivery,
        "webhook-timestamp": ts,
        "webhook-signature": "v1," + sig.decode(),
    }


def stripe(body: bytes, *, secret: str = STRIPE_SECRET, age: int = 0) -> str:
    ts = str(int(time.time()) - age)
    return (
        f"t={ts},v1=" + hmac.new(secret.encode(), ts.encode() + b"." + body, "sha256").hexdigest()
    )


def github(body: bytes, secret: str = GITHUB_SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.fixture
def secrets(monkeypatch: Any) -> None:
    monkeypatch.setenv("STD_SECRET", STANDARD_SECRET)
    monkeypatch.setenv("STRIPE_SECRET", STRIPE_SECRET)
    monkeypatch.setenv("GH_SECRET", GITHUB_SECRET)


async def test_each_preset_accepts_its_signature(tmp_path: Path, secrets: None) -> None:
    """Standard Webhooks (with a second, rotated signature in the header), Stripe (two v1
    entries) and GitHub signatures are accepted, and each delivery is one event."""
    body = json.dumps({"n": "1", "id": "evt_1"}).encode()
    async with serving(tmp_path, PIPELINE) as client:
        std = standard("msg_1", body)
        old = base64.b64encode(hmac.new(b"old", b"x", "sha256").digest()).decode()
        std["webhook-signature"] = f"v1,{old} {std['webhook-signature']}"
        assert (await post(client, "/hooks/std", body, **std)).status_code == 200
        rotated = stripe(body, secret="whsec_old").replace("v1=", "v1=00", 1)
        both = f"{stripe(body)},v1={rotated.partition('v1=')[2]}"
        assert (
            await post(client, "/hooks/stripe", body, **{"Stripe-Signature": both})
        ).status_code == 200
        gh = {"X-Hub-Signature-256": github(body), "X-GitHub-Delivery": "d1"}
        assert (await post(client, "/hooks/gh", body, **gh)).status_code == 200
        # A Stripe replay under a new Idempotency-Key has the same (signed) payload id.
        again = {"Stripe-Signature": stripe(body), "Idempotency-Key": "new"}
        assert (await post(client, "/hooks/stripe", body, **again)).status_code == 200
    counts = await recorded(tmp_path)
    assert counts["events"] == 3


async def test_wrong_or_stale_signatures_are_refused(tmp_path: Path, secrets: None) -> None:
    """A wrong key, a tampered id or body, a timestamp outside the tolerance (past or future)
    and a missing header are 401 with the reason, and record nothing."""
    body = json.dumps({"n": "1", "id": "evt_1"}).encode()
    async with serving(tmp_path, PIPELINE) as client:
        cases: list[tuple[str, dict[str, str], str]] = [
            ("/hooks/std", standard("m", body, key=b"wrong"), "signature"),
            ("/hooks/std", {**standard("m", body), "webhook-id": "other"}, "signature"),
            ("/hooks/std", standard("m", body, age=301), "tolerance"),
            ("/hooks/std", standard("m", body, age=-400), "future"),
            ("/hooks/std", {}, "missing"),
            ("/hooks/stripe", {"Stripe-Signature": stripe(body, secret="x")}, "signature"),
            ("/hooks/stripe", {"Stripe-Signature": stripe(body, age=600)}, "tolerance"),
            ("/hooks/stripe", {"Stripe-Signature": "v1=abc"}, "t=TIMESTAMP"),
            ("/hooks/gh", {"X-Hub-Signature-256": github(body, "x")}, "signature"),
        ]
        for path, headers, reason in cases:
            answer = await post(client, path, body, **headers)
            assert answer.status_code == 401, (path, headers)
            assert reason in answer.json()["error"], answer.json()
        tampered = body.replace(b'"1"', b'"2"')
        std = standard("m", body)
        assert (await post(client, "/hooks/std", tampered, **std)).status_code == 401
    counts = await recorded(tmp_path)
    assert counts["events"] == 0
    assert counts["deadletters"] == 0


def test_retention_shorter_than_the_tolerance_is_refused(tmp_path: Path) -> None:
    """A pipeline whose event log forgets ids before a signed webhook request expires does
    not load: the error names `retention.events` and the fix."""
    file = tmp_path / "pipeline.yaml"
    file.write_text(PIPELINE + "retention: {events: 2m}\n")
    with pytest.raises(ConfigError) as caught:
        load_pipeline(file)
    assert "retention.events" in str(caught.value)
    assert "tolerance" in str(caught.value)
    file.write_text(PIPELINE + "retention: {events: 1h}\n")
    assert load_pipeline(file).raw.retention.events is not None


def test_a_standard_secret_must_be_base64(tmp_path: Path) -> None:
    """A Standard Webhooks secret that is not `whsec_` + base64 is refused with the form."""
    from eventflow_sensors.http.signatures import key

    assert key("standard", STANDARD_SECRET) == KEY
    assert key("stripe", STRIPE_SECRET) == STRIPE_SECRET.encode()
    with pytest.raises(ValueError, match="whsec_"):
        key("standard", "whsec_not base64!")

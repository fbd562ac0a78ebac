"""Webhook signature schemes: what is signed, where the signature travels, how old it may be.

- ``standard`` (`Standard Webhooks <https://www.standardwebhooks.com/>`_): HMAC-SHA256 over
  ``{webhook-id}.{webhook-timestamp}.{body}``, sent base64 as ``v1,SIG`` in
  ``webhook-signature`` (several, space-separated, while the sender rotates its secret); the
  secret is ``whsec_`` followed by the base64 key. The id and the time are signed, so a
  captured request cannot be sent again under another id, nor after the tolerance.
- ``stripe``: HMAC-SHA256 over ``{t}.{body}``, hex, in ``Stripe-Signature: t=T,v1=SIG``
  (several ``v1`` while rotating); the secret string is the key as it is.
- ``github``: HMAC-SHA256 over the body alone, hex, in ``X-Hub-Signature-256: sha256=SIG``.
  Nothing but the body is signed: a captured request can be replayed (see the security
  reference).

Every comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Scheme = Literal["github", "standard", "stripe"]

HEADERS: Mapping[Scheme, str] = {
    "github": "X-Hub-Signature-256",
    "standard": "webhook-signature",
    "stripe": "Stripe-Signature",
}
"""The header each scheme carries its signature in."""
SIGNED_HEADERS: Mapping[Scheme, tuple[str, ...]] = {
    "github": (),
    "standard": ("webhook-id", "webhook-timestamp"),
    "stripe": (),
}
"""Headers a scheme signs besides its signature header."""


_STAMP_DIGITS = 12
"""Digits a signed Unix time may have (year 33658): more is no time, and would overflow a
float (or Python's digit limit) before it could be compared."""


@dataclass(frozen=True, slots=True)
class Verified:
    """A request whose signature holds: the delivery id it signs, if the scheme signs one."""

    delivery_id: str | None = None


class Refused(Exception):
    """Why a request is not authentic (the 401 answer)."""


def key(scheme: Scheme, secret: str) -> bytes:
    """The HMAC key of a secret as the scheme writes it; raises ValueError."""
    if scheme != "standard":
        return secret.encode()
    try:
        return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "a Standard Webhooks secret is `whsec_` followed by base64 (as the sender shows"
            " it), e.g. whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        ) from None


def verify(
    scheme: Scheme,
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime,
    tolerance: timedelta,
    header: str | None = None,
) -> Verified:
    """Check the request's signature (and its timestamp); raises :class:`Refused`.

    ``headers`` have lower-case names; ``header`` overrides where the signature travels."""
    name = (header or HEADERS[scheme]).lower()
    sent = headers.get(name, "").strip()
    if not sent:
        raise Refused(f"no signature: the {header or HEADERS[scheme]} header is missing")
    if scheme == "github":
        digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
        if not _same(sent.removeprefix("sha256=").lower(), digest):
            raise Refused(f"wrong HMAC-SHA256 signature in {header or HEADERS[scheme]}")
        return Verified()
    if scheme == "standard":
        delivery = headers.get("webhook-id", "").strip()
        stamp = headers.get("webhook-timestamp", "").strip()
        if not delivery or not stamp:
            raise Refused("a Standard Webhooks request needs webhook-id and webhook-timestamp")
        signed = b"%s.%s.%s" % (delivery.encode(), stamp.encode(), body)
        expected = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
        candidates = [s.partition(",")[2] for s in sent.split() if s.startswith("v1,")]
        if not any(_same(c, expected) for c in candidates):
            raise Refused(f"wrong signature in {name}: none of its v1 signatures matches")
        _in_window("webhook-timestamp", stamp, now, tolerance)
        return Verified(delivery)
    fields = [part.strip().partition("=") for part in sent.split(",")]
    stamps = [v for k, _, v in fields if k == "t"]
    if len(stamps) != 1:
        raise Refused(f"{name} needs one t=TIMESTAMP")
    signed = stamps[0].encode() + b"." + body
    expected = hmac.new(secret, signed, hashlib.sha256).hexdigest()
    if not any(_same(v.lower(), expected) for k, _, v in fields if k == "v1"):
        raise Refused(f"wrong signature in {name}: none of its v1 signatures matches")
    _in_window(f"{name} t", stamps[0], now, tolerance)
    return Verified()


def _same(sent: str, expected: str) -> bool:
    return hmac.compare_digest(sent.encode(), expected.encode())


def _in_window(what: str, stamp: str, now: datetime, tolerance: timedelta) -> None:
    """Refuse a signed time that is not within ``tolerance`` of ``now`` either way."""
    if not (stamp.isascii() and stamp.isdigit()) or len(stamp) > _STAMP_DIGITS:
        raise Refused(f"{what} is not a Unix time in seconds: {stamp[: _STAMP_DIGITS + 1]!r}")
    offset = int(stamp) - now.timestamp()
    if abs(offset) > tolerance.total_seconds():
        when = "old" if offset < 0 else "in the future"
        raise Refused(
            f"{what} is {abs(offset):.0f} s {when}, beyond the tolerance of"
            f" {tolerance.total_seconds():g} s: a replayed request, or a clock that is off"
        )


def sign_standard(keys: list[bytes], delivery: str, stamp: str, body: bytes) -> str:
    """The ``webhook-signature`` value of a Standard Webhooks request: ``v1,SIG`` per key,
    space-separated (several while the secret is rotated), as :func:`verify` checks it."""
    signed = b"%s.%s.%s" % (delivery.encode(), stamp.encode(), body)
    return " ".join(
        "v1," + base64.b64encode(hmac.new(k, signed, hashlib.sha256).digest()).decode()
        for k in keys
    )

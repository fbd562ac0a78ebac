"""Patterns, durations, deadlines, payloads and what sensors decode, under arbitrary input:
each gives a value or its module's documented error, never anything else."""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hypothesis import example, given
from hypothesis import strategies as st

from eventflow.durations import parse_duration
from eventflow.events import observation_problem
from eventflow.patterns import KeyPattern, glob_match, placeholders, render
from eventflow.payloads import capped
from eventflow.rules.timing import DeadlineExpr
from eventflow_sensors.http import signatures
from eventflow_sensors.http.sensor import decode_body
from eventflow_sensors.kafka import records
from eventflow_sensors.s3 import notify
from eventflow_sensors.s3.state import parse_manifest
from tests.fuzz.budget import FUZZ

TEXT = st.text(st.characters(codec=None))  # every code point, lone surrogates included
"""Text as a file name or a key can reach Python (``os.fsdecode`` keeps bad bytes as
surrogates)."""
PATTERN_TEXT = st.text(alphabet=st.sampled_from("ab/{}_*?[]x.=-\\"), max_size=30) | TEXT
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TEXT, children, max_size=4),
    max_leaves=20,
)

JSON_BODIES = JSON_VALUES.map(lambda v: json.dumps(v).encode())
"""JSON text of those values; lone surrogates and huge numbers as JSON writes them."""


@FUZZ
@given(PATTERN_TEXT, TEXT)
@example("{a}/{a}", "x/x")
@example("{dt}\ud800", "1\ud800")
def test_key_patterns_match_or_not(pattern: str, key: str) -> None:
    """A key pattern compiles from any text and matches any key to variables or None."""
    found = KeyPattern(pattern).match(key)
    assert found is None or all(isinstance(v, str) for v in found.values())


@FUZZ
@given(st.lists(PATTERN_TEXT, max_size=3), TEXT)
def test_globs_match_or_not(patterns: list[str], name: str) -> None:
    """Globs compile from any text and say whether any name matches."""
    assert glob_match(name, patterns) in (True, False)


@FUZZ
@given(PATTERN_TEXT, st.dictionaries(st.from_regex(r"[a-z_]{1,3}", fullmatch=True), TEXT))
def test_templates_render(template: str, values: dict[str, str]) -> None:
    """A template renders with any values, and its placeholders are names."""
    assert isinstance(render(template, values), str)
    assert all(name.isidentifier() for name in placeholders(template))


@FUZZ
@given(st.one_of(TEXT, st.text(alphabet="0123456789.smhdw "), st.integers(), st.floats()))
@example("999999999999d")
@example("9" * 5000 + "s")
@example(float("nan"))
@example(10**400)
def test_durations_parse_or_raise_value_error(value: object) -> None:
    """A duration parses to a timedelta of at most 100 years, or raises ValueError."""
    try:
        parsed = parse_duration(value)
    except ValueError:
        return
    assert timedelta(0) <= parsed <= timedelta(days=36_500)


@FUZZ
@given(
    st.text(alphabet="{dt}T06:0Z+- 1d.9", max_size=40) | TEXT,
    st.dictionaries(st.just("dt"), st.text(alphabet="0123456789-T:Z", max_size=12)),
)
@example("9999-12-31T23:59Z + 1d", {})
@example("{dt} + 1d", {"dt": "9999-12-31"})
@example("{dt}" + " + 36500d" * 3, {})
def test_deadlines_parse_and_resolve_or_raise_value_error(
    text: str, partition: dict[str, str]
) -> None:
    """A deadline expression parses and gives a partition's time, or raises ValueError."""
    with contextlib.suppress(ValueError):
        assert DeadlineExpr.parse(text).at(partition).tzinfo is UTC


@FUZZ
@given(JSON_VALUES, st.integers(min_value=0, max_value=200))
@example("\ud800" * 3, 2)
@example(2**70, 3)
def test_payloads_are_capped(payload: object, limit: int) -> None:
    """Any payload is kept or cut to text of at most ``limit`` bytes."""
    kept, size = capped(payload, limit)  # type: ignore[arg-type]
    if size is not None:
        assert isinstance(kept, str)
        assert len(kept.encode("utf-8", "surrogatepass")) <= limit


@dataclass
class Record:
    """A Kafka record as aiokafka hands it over."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@FUZZ
@given(
    st.sampled_from(sorted(records.DECODERS)),
    st.builds(
        Record,
        topic=st.text(max_size=10),
        partition=st.integers(0, 100),
        offset=st.integers(0, 2**62),
        timestamp=st.integers(0, 2**41),
        key=st.none() | st.binary(),
        value=st.none() | st.binary() | JSON_BODIES,
        headers=st.lists(st.tuples(TEXT, st.binary()), max_size=3),
    ),
)
@example("json", Record("t", 0, 0, 0, b"\xff", b"[" * 2000, [("h", b"\xff")]))
@example("utf-8", Record("t", 0, 0, 0, None, b"\xed\xa0\x80", []))
def test_kafka_records_become_observations(fmt: str, record: Record) -> None:
    """Any record becomes an observation (a dead letter when its value does not decode)
    that the engine can check without failing."""
    obs = records.observe("k", record, records.DECODERS[fmt], fmt, None, None)
    assert observation_problem(obs) is None or isinstance(observation_problem(obs), str)


@FUZZ
@given(st.binary() | JSON_BODIES)
@example(b"[" * 100_000)
@example(b'"\\ud800"')
@example(b"1" * 5000)
@example(b"NaN")
def test_webhook_bodies_decode_or_raise_value_error(body: bytes) -> None:
    """A webhook body decodes to JSON, or raises ValueError (a 400 answer)."""
    with contextlib.suppress(ValueError):
        decode_body(body)


HEADER_TEXT = st.text(st.characters(max_codepoint=255), max_size=40)
"""What a header value can be: the server decodes header bytes as Latin-1."""


@FUZZ
@given(
    st.sampled_from(["github", "standard", "stripe"]),
    st.binary(max_size=32),
    st.dictionaries(
        st.sampled_from(
            [
                "x-hub-signature-256",
                "webhook-signature",
                "stripe-signature",
                "webhook-id",
                "webhook-timestamp",
            ]
        ),
        HEADER_TEXT | st.sampled_from(["t=²,v1=a", "9" * 5000, "v1,abc", "t=1,v1=x"]),
    ),
    st.binary(max_size=64),
)
@example(
    "standard",
    b"k",
    {"webhook-signature": "v1,x", "webhook-id": "1"} | {"webhook-timestamp": "²"},
    b"",
)
@example("stripe", b"k", {"stripe-signature": "t=" + "9" * 5000 + ",v1=a"}, b"")
def test_signatures_verify_or_refuse(
    scheme: signatures.Scheme, secret: bytes, headers: dict[str, str], body: bytes
) -> None:
    """Any request is verified or refused (401), whatever its headers hold."""
    now = datetime(2026, 1, 1, tzinfo=UTC)
    with contextlib.suppress(signatures.Refused):
        signatures.verify(scheme, secret, headers, body, now=now, tolerance=timedelta(minutes=5))


@FUZZ
@given(st.sampled_from(["github", "standard", "stripe"]), TEXT)
def test_signature_secrets_are_keys_or_value_errors(scheme: signatures.Scheme, secret: str) -> None:
    """Any secret text is an HMAC key or a ValueError naming the expected form."""
    with contextlib.suppress(ValueError):
        assert isinstance(signatures.key(scheme, secret), bytes)


@FUZZ
@given(st.binary() | JSON_BODIES)
@example(b'{"Records": [{"eventName": 1, "s3": {"bucket": {"name": 1}, "object": {"key": 1}}}]}')
@example(b'{"Type": "Notification", "Message": 5}')
@example(b'{"Records": [{"eventName": "x", "s3": {"bucket": [], "object": {}}}]}')
def test_s3_notifications_decode_or_raise_their_error(body: bytes) -> None:
    """A bucket notification decodes to notices, or raises NotificationError."""
    try:
        notices = notify.decode(body)
    except notify.NotificationError:
        return
    assert all(isinstance(n.key, str) for n in notices)


@FUZZ
@given(st.binary() | JSON_BODIES, TEXT)
@example(b'["s3://lake/a", "b"]', "dir")
def test_s3_manifests_parse_or_raise_value_error(body: bytes, dir_: str) -> None:
    """A manifest lists keys, or raises ValueError."""
    with contextlib.suppress(ValueError):
        assert all(isinstance(key, str) for key in parse_manifest(body, dir_, "lake"))

"""The S3 sensor's pure parts: notification decoding, the lookback window, the tracker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import pytest

from eventflow_sensors.s3.client import ObjectState
from eventflow_sensors.s3.config import S3SensorConfig
from eventflow_sensors.s3.notify import NotificationError, decode
from eventflow_sensors.s3.state import Tracker, parse_manifest
from eventflow_sensors.s3.window import step_of, window_prefixes

S = ObjectState("e1", 1, 100)
S2 = ObjectState("e2", 2, 200)


def record(key: str, name: str = "ObjectCreated:Put", bucket: str = "lake") -> dict[str, object]:
    return {
        "eventName": name,
        "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 3, "eTag": "abc"}},
    }


def test_decode_s3_minio_and_sns_forms_url_decoding_keys() -> None:
    """Keys are URL-decoded (real S3's `+` for space, moto's and MinIO's `%2F`), MinIO's
    `s3:` event prefix is understood and SNS envelopes are unwrapped."""
    s3 = orjson.dumps({"Records": [record("dt%3D2024-01-01%2Fa+b.csv")]})
    minio = orjson.dumps(
        {"EventName": "s3:ObjectRemoved:Delete", "Key": "lake/x",
         "Records": [record("x/y+z", "s3:ObjectRemoved:Delete")]}
    )  # fmt: skip
    sns = orjson.dumps({"Type": "Notification", "Message": s3.decode()})
    [a] = decode(s3)
    assert (a.bucket, a.key, a.kind, a.etag, a.size) == ("lake", "dt=2024-01-01/a b.csv",
                                                         "created", "abc", 3)  # fmt: skip
    [b] = decode(minio)
    assert (b.key, b.kind) == ("x/y z", "removed")
    assert decode(sns) == [a]


def test_decode_ignores_test_event_and_rejects_other_messages() -> None:
    """`s3:TestEvent` decodes to nothing; anything else that is not a notification is an
    error that says why."""
    assert decode(b'{"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}') == []
    with pytest.raises(NotificationError, match="not JSON"):
        decode(b"{nope")
    with pytest.raises(NotificationError, match="no `Records`"):
        decode(b'{"hello": 1}')
    with pytest.raises(NotificationError, match="record 0 lacks"):
        decode(b'{"Records": [{"eventName": "x"}]}')


def test_window_lists_each_step_of_the_lookback() -> None:
    """The window names one prefix per step (the finest strftime field) from `now -
    lookback` to one step ahead."""
    now = datetime(2024, 3, 10, 12, 30, tzinfo=UTC)
    assert window_prefixes("o/dt=%Y-%m-%d/", timedelta(days=2), now) == [
        "o/dt=2024-03-08/", "o/dt=2024-03-09/", "o/dt=2024-03-10/", "o/dt=2024-03-11/",
    ]  # fmt: skip
    hourly = window_prefixes("o/dt=%Y-%m-%d/hr=%H/", timedelta(hours=3), now)
    assert hourly[0] == "o/dt=2024-03-10/hr=09/"
    assert hourly[-1] == "o/dt=2024-03-10/hr=13/"
    assert step_of("y=%Y/m=%m/") == timedelta(days=1)
    assert len(window_prefixes("y=%Y/m=%m/", timedelta(days=40), now)) == 3


def test_config_asks_for_partition_prefix_and_lookback_together() -> None:
    """`partition_prefix` without `lookback` (or one outside `prefix`) is refused."""
    with pytest.raises(ValueError, match="together"):
        S3SensorConfig(type="s3", bucket="b", partition_prefix="dt=%Y/")
    with pytest.raises(ValueError, match="under `prefix`"):
        S3SensorConfig(type="s3", bucket="b", prefix="a/", partition_prefix="b/%Y/", lookback="1d")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at most one"):
        S3SensorConfig(type="s3", bucket="b", ready={"marker": "_S", "stable": True})  # type: ignore[arg-type]


def test_marker_mode_holds_until_marker_then_emits_marker_last() -> None:
    """Objects of a prefix wait for its marker; then they come first and the marker last;
    a late object of a marked prefix is emitted at once when notified."""
    t = Tracker("marker", "_SUCCESS")
    n = t.begin_listing()
    decision, gone = t.listed("", [("d=1/a", S), ("d=2/a", S)], n)
    assert decision.emit == []
    assert gone == []
    n = t.begin_listing()
    decision, _ = t.listed("", [("d=1/a", S), ("d=1/_SUCCESS", S), ("d=2/a", S)], n)
    assert [k for k, _ in decision.emit] == ["d=1/a", "d=1/_SUCCESS"]
    for key, state in decision.emit:
        t.emitted(key, state)
    assert t.notified("d=1/late", S).emit == [("d=1/late", S)]
    assert t.notified("d=2/b", S).emit == []  # held
    assert t.notified("d=2/_SUCCESS", S).relist == "d=2/"


def test_stable_mode_needs_two_equal_listings() -> None:
    """In `stable` mode an object is ready when two listings in a row saw the same state."""
    t = Tracker("stable")
    assert t.listed("", [("a", S)], t.begin_listing())[0].emit == []
    assert t.listed("", [("a", S2)], t.begin_listing())[0].emit == []
    assert t.listed("", [("a", S2)], t.begin_listing())[0].emit == [("a", S2)]


def test_an_object_emitted_during_a_listing_is_not_taken_for_deleted() -> None:
    """A listing that started before an object was emitted (by a notification) does not
    forget it; a later listing without it does."""
    t = Tracker("none")
    n = t.begin_listing()
    t.emitted("a", S)
    assert t.listed("", [], n)[1] == []
    assert t.listed("", [], t.begin_listing())[1] == ["a"]


def test_prune_forgets_objects_outside_the_window() -> None:
    """Objects under the prefix and outside the window prefixes are forgotten."""
    t = Tracker("none")
    t.load_cursor({"t/dt=1/a": S.to_json(), "t/dt=9/a": S.to_json(), "other/x": S.to_json()})
    assert t.prune("t/", ["t/dt=9/"]) == ["t/dt=1/a"]
    assert set(t.seen) == {"t/dt=9/a", "other/x"}


def test_manifest_parsing() -> None:
    """A manifest lists parts as keys relative to its prefix or as s3:// URLs."""
    body = orjson.dumps({"entries": [{"url": "s3://lake/p/a"}, {"url": "b"}]})
    assert parse_manifest(body, "p", "lake") == {"p/a", "p/b"}
    assert parse_manifest(b'["x", "y/z"]', "p", "lake") == {"p/x", "p/y/z"}
    with pytest.raises(ValueError, match="another bucket"):
        parse_manifest(b'["s3://other/k"]', "p", "lake")
    with pytest.raises(ValueError, match="lists no parts"):
        parse_manifest(b"{}", "p", "lake")

"""What a run's inputs delivered: their payloads, capped, and the rule's ``params``.

When a run starts, the dispatcher reads the events of its inputs from the event log in one
store read and turns each input into an :class:`InputEvent`: the input reference (dataset,
partition, sensor, source position, time) plus the event's ``key``, ``payload`` and
``attributes`` as the sensor recorded them. The payload is what was stored with the event,
so every attempt (a retry, a run after a restart) and a replay see the same.

A payload larger than the cap (``engine.payload_max_bytes``, bytes of its compact JSON, or
of its UTF-8 text for a text payload) is cut: ``payload`` becomes the first bytes of that
text, ``payload_truncated`` is true and ``payload_bytes`` gives the original size. An event
no longer in the log (deleted by ``retention``) has ``payload_missing: "pruned"`` and a null
payload.

A rule's ``params`` map names to JMESPath expressions over :func:`params_context`; each
value becomes a template variable ``{name}`` (:func:`evaluate_params`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import jmespath.exceptions
import orjson
from jmespath.parser import ParsedResult

from eventflow.datasets import OPTIONS
from eventflow.errors import EventflowError, TaskError
from eventflow.events import JSON, InputRef
from eventflow.records import StoredEvent

PAYLOAD_MAX_BYTES = 65_536
"""Default cap of each input's payload in ``EVENTFLOW_EVENTS`` and the Python context."""
PRUNED = "pruned"
"""``payload_missing`` of an input whose event ``retention`` deleted from the event log."""


@dataclass(frozen=True, slots=True)
class InputEvent:
    """One input of a run with what its source delivered (an item of ``EVENTFLOW_EVENTS``)."""

    ref: InputRef
    """Dataset, partition, sensor, source position and time (what every input has)."""
    key: str | None = None
    """What dataset key patterns matched: a Kafka message's key, an object key, a path."""
    payload: JSON = None
    """The decoded message or body (see ``docs/howto/tasks.md`` for each source); the cut
    text when ``payload_truncated``."""
    attributes: Mapping[str, JSON] = field(default_factory=dict)
    """What the sensor recorded about it: headers, topic, size, etag, mtime, ..."""
    payload_truncated: bool = False
    payload_bytes: int | None = None
    """Size of the original payload, set when it was cut."""
    payload_missing: str | None = None
    """Why there is no payload: ``"pruned"`` (the event left the event log)."""

    @property
    def dataset(self) -> str:
        return self.ref.dataset

    @property
    def event_id(self) -> str:
        return self.ref.event_id

    def to_dict(self) -> dict[str, JSON]:
        out = self.ref.to_dict()
        out["key"] = self.key
        out["payload"] = self.payload
        out["attributes"] = dict(self.attributes)
        if self.payload_truncated:
            out["payload_truncated"] = True
            out["payload_bytes"] = self.payload_bytes
        if self.payload_missing is not None:
            out["payload_missing"] = self.payload_missing
        return out


def capped(payload: JSON, limit: int) -> tuple[JSON, int | None]:
    """``(payload, None)`` when it fits in ``limit`` bytes, else ``(cut text, original bytes)``.

    A text payload is measured and cut as UTF-8 text, anything else as compact JSON; the cut
    never splits a character, so the result is always valid text (and valid JSON in the
    events file)."""
    if payload is None:
        return None, None
    if isinstance(payload, str):
        raw = payload.encode("utf-8", "surrogatepass")
    else:
        try:
            raw = orjson.dumps(payload, option=orjson.OPT_NON_STR_KEYS)
        except TypeError:  # an int beyond 64 bits: measured by the slower encoder
            raw = _fallback_json(payload)
    if len(raw) <= limit:
        return payload, None
    return raw[:limit].decode("utf-8", "ignore"), len(raw)


def _fallback_json(payload: JSON) -> bytes:
    """Compact JSON of what orjson refuses (big ints, lone surrogates), as ``capped``
    measures text: lone surrogates kept as their UTF-8-like bytes, not an error."""
    text = json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)
    return text.encode("utf-8", "surrogatepass")


def input_events(
    refs: Iterable[InputRef], stored: Mapping[str, StoredEvent], limit: int
) -> tuple[InputEvent, ...]:
    """Each input with its event's payload from ``stored`` (event id to event), cut at
    ``limit``; an input whose event is not there is marked ``payload_missing: "pruned"``."""
    out: list[InputEvent] = []
    for ref in refs:
        event = stored.get(ref.event_id)
        if event is None:
            out.append(InputEvent(ref, payload_missing=PRUNED))
            continue
        payload, size = capped(event.payload, limit)
        out.append(
            InputEvent(
                ref,
                key=event.key,
                payload=payload,
                attributes=event.attributes,
                payload_truncated=size is not None,
                payload_bytes=size,
            )
        )
    return tuple(out)


def params_context(items: list[dict[str, JSON]], partition: Mapping[str, str]) -> dict[str, JSON]:
    """What ``params`` expressions see: ``inputs`` (the ``EVENTFLOW_EVENTS`` items, in
    order), ``partition``, and each input dataset by name (its last input), so that
    ``orders.payload.batch_id`` is ``inputs[?dataset=='orders'] | [-1].payload.batch_id``.
    ``inputs`` and ``partition`` win over datasets of those names."""
    context: dict[str, JSON] = {item["dataset"]: item for item in items}
    context["inputs"] = items
    context["partition"] = dict(partition)
    return context


def evaluate_params(
    params: Mapping[str, ParsedResult], context: Mapping[str, JSON]
) -> dict[str, str]:
    """Each param's value as text: a string as it is, anything else as compact JSON.

    Raises TaskError naming the param when its expression fails or gives null (a field
    that is not there): the attempt fails. Write ``expr || ''`` for an empty default."""
    out: dict[str, str] = {}
    for name, expr in params.items():
        try:
            found = expr.search(context, OPTIONS)
        except (jmespath.exceptions.JMESPathError, EventflowError, ValueError) as exc:
            raise TaskError(f"params.{name} (`{expr.expression}`) failed: {exc}") from exc
        if found is None:
            raise TaskError(
                f"params.{name} (`{expr.expression}`) gave null: the inputs have no such"
                f" field{_why_absent(context)}; write `{expr.expression} || ''` in the rule's"
                " params for an empty default"
            )
        out[name] = found if isinstance(found, str) else _compact(found)
    return out


def _compact(value: JSON) -> str:
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return _fallback_json(value).decode("utf-8", "surrogatepass")


def _why_absent(context: Mapping[str, JSON]) -> str:
    """A note on inputs whose payload was cut or pruned: the likely cause of a null."""
    notes = []
    for item in context.get("inputs") or ():
        if item.get("payload_truncated"):
            notes.append(f"{item['dataset']}: payload truncated at the cap")
        elif item.get("payload_missing"):
            notes.append(f"{item['dataset']}: payload {item['payload_missing']}")
    return f" ({'; '.join(notes)})" if notes else ""

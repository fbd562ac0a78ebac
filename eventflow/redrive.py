"""Redriving a dead letter: its kept observation evaluated again by the current pipeline.

An operator asks for a redrive (``eventflow deadletters FILE redrive``, ``POST
/api/deadletters/{event_id}/redrive``); the store records the request on the dead letter.
The engine polls the requests with its inbox (:meth:`~eventflow.types.Store.fetch_redrives`)
and, for each, builds the observation the sensor handed over
(:func:`~eventflow.effects.redriven_observation`) and matches it against the pipeline's
datasets as it is now: a pipeline whose partition expression or key pattern was fixed
accepts it. The event it announces keeps the dead letter's event id and goes into the same
batch as any event (rules, runs, outbox), together with the dead letter's outcome
(``Changes.deadletter_outcomes``): ONE transaction admits the event and marks the dead letter
``redriven``. The outcome applies only while the redrive is still requested, so a crash
before the commit leaves the request for the next poll, and a commit never carries out a
redrive twice. A message that still fails stays ``open`` with the new error.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

from eventflow.datasets import DatasetMatchError
from eventflow.effects import redriven_observation
from eventflow.events import InputRef, Observation, format_partition, observation_problem
from eventflow.pipeline import CompiledPipeline
from eventflow.records import DeadLetter, DeadLetterOutcome, StoredEvent
from eventflow.records import history_entry as entry

NOTHING_ANNOUNCED = "the current pipeline announces no dataset for this message"


@dataclass(frozen=True, slots=True)
class Evaluated:
    """What the current pipeline makes of a kept observation: an event and its dataset
    arrivals, or the errors that keep it a dead letter."""

    event: StoredEvent | None
    refs: Sequence[InputRef]
    errors: Sequence[str]


@dataclass(frozen=True, slots=True)
class Redrive:
    """What one redrive adds to a batch."""

    outcome: DeadLetterOutcome
    event: StoredEvent | None = None
    """The event to log (None when it failed, or the event log has it already)."""
    refs: Sequence[InputRef] = ()
    """The dataset arrivals to evaluate."""


def redrive(
    letter: DeadLetter,
    evaluate: Callable[[Observation], Evaluated],
    logged: StoredEvent | None,
    now: datetime,
) -> Redrive:
    """The redrive of ``letter`` at ``now``. ``logged`` is the event the log holds with its
    id already (an observation that announced one dataset and failed another): only the
    datasets it did not announce arrive then."""
    by = letter.requested_by or "unknown"
    if letter.message is None:  # a request is refused for these; kept defensive
        return _failed(letter, by, now, "only an excerpt of the message was kept")
    found = evaluate(redriven_observation(letter))
    if found.errors:
        return _failed(letter, by, now, "; ".join(found.errors))
    if found.event is None:
        return _failed(letter, by, now, NOTHING_ANNOUNCED)
    refs = found.refs
    event: StoredEvent | None = found.event
    if logged is not None:
        before = {name for name, _ in logged.datasets}
        refs = [r for r in refs if r.dataset not in before]
        event = None
    outcome = DeadLetterOutcome(
        letter.event_id, "redriven", letter.error, entry("redriven", by, now)
    )
    return Redrive(outcome, event, refs)


def _failed(letter: DeadLetter, by: str, now: datetime, error: str) -> Redrive:
    done = entry("redrive_failed", by, now, error)
    return Redrive(DeadLetterOutcome(letter.event_id, "open", error, done))


def preview(pipeline: CompiledPipeline, letter: DeadLetter) -> str:
    """What a redrive of ``letter`` would do with ``pipeline`` as it is (a dry run): the
    datasets and partitions it would announce, or the error that keeps it a dead letter."""
    if letter.message is None:
        return "cannot be redriven: only an excerpt of the message was kept"
    obs = redriven_observation(letter)
    problem = observation_problem(obs, stored=True)
    if problem is not None:
        return f"would fail: {problem}"
    announced, errors = [], []
    for ds in pipeline.datasets_by_sensor.get(obs.sensor, ()):
        try:
            partition = ds.match(obs)
        except DatasetMatchError as exc:
            errors.append(str(exc))
            continue
        if partition is not None:
            announced.append(f"{ds.name} {format_partition(partition)}")
    if errors:
        return "would fail: " + "; ".join(errors)
    if not announced:
        return f"would fail: {NOTHING_ANNOUNCED}"
    return "would announce " + ", ".join(announced)

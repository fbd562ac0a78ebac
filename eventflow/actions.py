"""What the CLI and the JSON API write to the store by hand: an emitted partition.

``eventflow emit`` and ``POST /api/events`` build the same inbox row here; the engine turns
it into an event as if the dataset's sensor had seen it.
"""

from __future__ import annotations

from collections.abc import Mapping

from eventflow.errors import EventflowError
from eventflow.events import JSON, emit_problem, utcnow
from eventflow.pipeline import EMIT_SENSOR, CompiledPipeline
from eventflow.records import InboxItem


class EmitError(EventflowError):
    """An emit names no dataset of the pipeline or the wrong partition variables."""


def emit_item(
    pipeline: CompiledPipeline,
    dataset: str,
    partition: Mapping[str, str],
    emit_id: str,
    payload: JSON,
) -> InboxItem:
    """The inbox row that announces ``dataset``'s ``partition`` (``emit_id``: idempotency)."""
    ds = pipeline.datasets.get(dataset)
    if ds is None:
        raise EmitError(f"no dataset {dataset!r}; datasets: {', '.join(pipeline.datasets)}")
    if set(partition) != set(ds.variables):
        raise EmitError(
            f"dataset {dataset} is partitioned by ({', '.join(ds.variables)}):"
            f" give exactly those, not ({', '.join(partition)})"
        )
    problem = emit_problem(partition, emit_id, payload)
    if problem is not None:
        raise EmitError(f"dataset {dataset}: {problem}")
    return InboxItem(
        observation_sensor=EMIT_SENSOR,
        dataset=dataset,
        partition={n: str(partition[n]) for n in ds.variables},
        position={"emit_id": emit_id},
        payload=payload,
        created_at=utcnow(),
    )

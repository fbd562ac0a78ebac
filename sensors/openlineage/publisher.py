"""The OpenLineage publisher: eventflow's runs as OpenLineage RunEvents.

Marquez, DataHub and other lineage tools then show eventflow's runs beside Airflow's and
Flink's. Each run attempt becomes an OpenLineage run: ``eventflow.run.started`` is START,
``eventflow.run.succeeded`` COMPLETE, and ``eventflow.run.retrying`` / ``eventflow.run.failed``
FAIL (with the error as an ``errorMessage`` facet). The job is the rule (``namespace`` is the
pipeline name unless set); the inputs are the datasets whose events fired the run and the
output is the dataset the rule ``produces``, each with the partition as its
``datasetVersion`` (``dt=2024-01-01/hr=00``); the job's ``sourceCodeLocation`` facet carries
the version of the rule that fired the run (``version``, see ``eventflow versions``).
``datasets`` maps eventflow's dataset names to the namespace and name other tools use for
the same data (``s3://lake`` + ``orders``), so the graphs join up.

.. code-block:: yaml

    publish:
      - type: openlineage
        transport: {type: http, url: "http://marquez:5000",
                    auth: {type: api_key, apiKey: "${MARQUEZ_API_KEY}"}}
        datasets:
          orders: {namespace: "s3://lake", name: orders}

``transport`` is the OpenLineage client's own transport configuration (``http``, ``file``,
``kafka``, ``console``, ...; see the OpenLineage Python client's documentation; a relative
``log_file_path`` is relative to the pipeline file), so what works there works here;
secrets belong in ``${VAR}`` references and are never logged. Events go through eventflow's
outbox, so a lineage server that is down delays them and loses none; the OpenLineage run id
is derived from eventflow's run id and attempt, so a repeated delivery carries the same id.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from eventflow.plugin import (
    CHECK_FAILED,
    CHECK_PASSED,
    RUN_FAILED,
    RUN_RETRYING,
    RUN_STARTED,
    RUN_SUCCEEDED,
    ClosedError,
    Event,
    PluginEnv,
    PublisherConfig,
    PublishError,
    Resource,
    digest,
    format_partition,
)

try:
    from openlineage.client import OpenLineageClient
    from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent
    from openlineage.client.event_v2 import RunState as OLState
    from openlineage.client.facet_v2 import (
        DatasetFacet,
        data_quality_assertions_dataset,
        dataset_version_dataset,
        error_message_run,
        source_code_location_job,
    )
except ImportError as exc:  # pragma: no cover - the registry turns this into a hint
    raise ImportError(
        f"the openlineage publisher needs openlineage-python ({exc});"
        " pip install 'eventflow[openlineage]'"
    ) from exc

PRODUCER = "https://github.com/eventflow/eventflow"
_STATES = {
    RUN_STARTED: OLState.START,
    RUN_SUCCEEDED: OLState.COMPLETE,
    RUN_RETRYING: OLState.FAIL,
    RUN_FAILED: OLState.FAIL,
}


class DatasetName(BaseModel):
    """Where other lineage tools know a dataset: OpenLineage's namespace and name."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    namespace: str = Field(description="e.g. `s3://lake`, `kafka://broker:9092`.")
    name: str = Field(description="e.g. `orders`, a table or a topic.")


class OpenLineageConfig(PublisherConfig):
    """`publish: [{type: openlineage, transport: {...}}]`: runs as OpenLineage RunEvents."""

    types: tuple[str, ...] = Field(
        default=("eventflow.run.*",),
        description="Glob patterns of the event types this publisher receives; only run"
        " events become OpenLineage events.",
    )
    transport: dict[str, Any] = Field(
        description="The OpenLineage client's transport configuration, e.g. `{type: http,"
        " url: URL}` or `{type: file, log_file_path: PATH, append: true}`."
    )
    namespace: str | None = Field(
        default=None, description="Namespace of the jobs (one per rule); default: the pipeline."
    )
    dataset_namespace: str | None = Field(
        default=None,
        description="Namespace of datasets not listed in `datasets`; default:"
        " `eventflow://<pipeline>`.",
    )
    datasets: dict[str, DatasetName] = Field(
        default_factory=dict,
        description="eventflow dataset name -> the namespace and name lineage tools use.",
    )

    @field_validator("transport")
    @classmethod
    def _transport(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(value.get("type"), str) or not value["type"]:
            raise ValueError("needs a `type` (http, file, kafka, console, ...)")
        return value


class OpenLineagePublisher(Resource):
    """Turns run events into OpenLineage RunEvents and emits them with the OpenLineage client.

    The client's transports are blocking, so emitting runs in a worker thread; a transport
    error fails the whole ``publish`` (the outbox keeps the events and tries again).
    """

    config_model: ClassVar[type[BaseModel]] = OpenLineageConfig

    def __init__(self, name: str, config: Any, env: PluginEnv) -> None:
        if not isinstance(config, OpenLineageConfig):
            config = OpenLineageConfig.model_validate(config)
        self.name = name
        self.config = config
        self.env = env
        self.namespace = config.namespace or env.pipeline
        self.dataset_namespace = config.dataset_namespace or f"eventflow://{env.pipeline}"
        self._client: OpenLineageClient | None = None
        self._closed = False

    async def open(self) -> None:
        if self._closed:
            raise ClosedError(f"openlineage publisher {self.name!r} is closed")
        if self._client is None:
            self._client = await asyncio.to_thread(self._connect)

    def _connect(self) -> OpenLineageClient:
        transport = dict(self.config.transport)
        if transport["type"] == "file" and "log_file_path" in transport:
            path = self.env.base_dir / Path(transport["log_file_path"]).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            transport["log_file_path"] = str(path)
        try:
            return OpenLineageClient(config={"transport": transport})
        except Exception as exc:
            raise PublishError(
                f"openlineage publisher {self.name!r}: transport"
                f" {transport['type']!r} could not be set up: {exc}",
                hint="check `transport` against the OpenLineage client's documentation",
            ) from exc

    async def publish(self, events: Sequence[Event]) -> None:
        client = self._client
        if self._closed or client is None:
            raise ClosedError(f"openlineage publisher {self.name!r} is not open")
        lineage = [e for e in (self.to_openlineage(event) for event in events) if e is not None]
        if lineage:
            await asyncio.to_thread(self._emit, client, lineage)

    def _emit(self, client: OpenLineageClient, events: list[RunEvent]) -> None:
        for event in events:
            try:
                client.emit(event)
            except Exception as exc:
                raise PublishError(
                    f"openlineage publisher {self.name!r} could not emit: {exc}"
                ) from exc

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    def to_openlineage(self, event: Event) -> RunEvent | None:
        """The OpenLineage RunEvent of a run event; None for the event types it has none for."""
        if event.type in (CHECK_PASSED, CHECK_FAILED):
            return self._checks(event)
        state = _STATES.get(event.type)
        if state is None:
            return None
        data = event.data
        version = format_partition(data["partition"])
        run_facets: dict[str, Any] = {}
        if state is OLState.FAIL and data.get("error"):
            run_facets["errorMessage"] = error_message_run.ErrorMessageRunFacet(
                message=data["error"], programmingLanguage="eventflow"
            )
        inputs = []
        for dataset in dict.fromkeys(ref["dataset"] for ref in data.get("inputs", ())):
            namespace, name = self._dataset(dataset)
            inputs.append(InputDataset(namespace=namespace, name=name, facets=_version(version)))
        outputs = []
        if data.get("produces"):
            namespace, name = self._dataset(data["produces"])
            outputs.append(OutputDataset(namespace=namespace, name=name, facets=_version(version)))
        return RunEvent(
            eventType=state,
            eventTime=event.time.isoformat(),
            run=Run(runId=run_uuid(data["run_id"], data["attempt"]), facets=run_facets),
            job=Job(namespace=self.namespace, name=data["rule"], facets=_job_facets(event)),
            inputs=inputs,
            outputs=outputs,
            producer=PRODUCER,
        )

    def _checks(self, event: Event) -> RunEvent:
        """A data-quality result as the ``dataQualityAssertions`` facet of the produced
        dataset, in an event of the job ``RULE.checks`` (one run per evaluation)."""
        data = event.data
        results = data["results"] if event.type == CHECK_PASSED else [data["result"]]
        assertions = [
            data_quality_assertions_dataset.Assertion(
                assertion=str(r["check"]), success=bool(r["passed"])
            )
            for r in results
        ]
        namespace, name = self._dataset(data["dataset"])
        facets: dict[str, Any] = _version(format_partition(data["partition"]))
        facets["dataQualityAssertions"] = (
            data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions=assertions)
        )
        passed = event.type == CHECK_PASSED
        return RunEvent(
            eventType=OLState.COMPLETE if passed else OLState.FAIL,
            eventTime=event.time.isoformat(),
            run=Run(runId=run_uuid(data["run_id"] + ":checks", data["evaluation"]), facets={}),
            job=Job(namespace=self.namespace, name=f"{data['rule']}.checks"),
            inputs=[InputDataset(namespace=namespace, name=name, inputFacets=facets)],
            outputs=[],
            producer=PRODUCER,
        )

    def _dataset(self, dataset: str) -> tuple[str, str]:
        mapped = self.config.datasets.get(dataset)
        if mapped is not None:
            return mapped.namespace, mapped.name
        return self.dataset_namespace, dataset


def run_uuid(run_id: str, attempt: int) -> str:
    """The OpenLineage run id of one attempt: a UUID derived from the run id and attempt."""
    return str(uuid.UUID(hex=digest("openlineage", run_id, attempt)))


def _job_facets(event: Event) -> dict[str, Any]:
    """The version of the rule that fired the run (eventflow.versions), as the job's
    source code location facet: ``type`` eventflow, ``url`` the rule, ``version`` its hash."""
    if not event.pipelineversion:
        return {}
    facet = source_code_location_job.SourceCodeLocationJobFacet(
        type="eventflow", url=event.source, version=event.pipelineversion
    )
    return {"sourceCodeLocation": facet}


def _version(version: str) -> dict[str, DatasetFacet]:
    return {"version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=version)}

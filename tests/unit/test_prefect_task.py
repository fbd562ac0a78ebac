"""The pure parts of the ``prefect`` task: its config, links to Prefect's UI and the mapping
of flow run states. The requests themselves are tested against a real Prefect server in
``tests/handoff/test_prefect.py``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from eventflow.tasks.prefect import PrefectConfig, PrefectHandoff, PrefectRun, ui_base

CONFIG = {"url": "http://127.0.0.1:4200/api/", "deployment": "report-flow/report"}


@pytest.mark.parametrize(
    ("api", "ui"),
    [
        ("http://127.0.0.1:4200/api", "http://127.0.0.1:4200"),
        ("https://prefect.example.com/base/api", "https://prefect.example.com/base"),
        (
            "https://api.prefect.cloud/api/accounts/a-1/workspaces/w-2",
            "https://app.prefect.cloud/account/a-1/workspace/w-2",
        ),
    ],
)
def test_the_ui_base_follows_the_api_url(api: str, ui: str) -> None:
    """A server's UI is its API URL without ``/api``; Prefect Cloud's is its app's workspace."""
    assert ui_base(api) == ui


@pytest.mark.parametrize("deployment", ["report-flow", "/report", "a/b/c", "report-flow/ "])
def test_a_deployment_must_be_flow_slash_name(deployment: str) -> None:
    """``deployment`` is FLOW_NAME/DEPLOYMENT_NAME, and the error says so."""
    with pytest.raises(ValidationError, match="FLOW_NAME/DEPLOYMENT_NAME"):
        PrefectConfig.model_validate({"prefect": {**CONFIG, "deployment": deployment}})


@pytest.mark.parametrize(
    ("kind", "name", "outcome"),
    [
        ("SCHEDULED", "Late", "running"),
        ("PENDING", "Pending", "running"),
        ("RUNNING", "Running", "running"),
        ("PAUSED", "Suspended", "running"),
        ("CANCELLING", "Cancelling", "running"),
        ("COMPLETED", "Completed", "succeeded"),
        ("FAILED", "Failed", "failed"),
        ("CRASHED", "Crashed", "failed"),
        ("CANCELLED", "Cancelled", "cancelled"),
    ],
)
async def test_flow_run_states_map_to_outcomes(kind: str, name: str, outcome: str) -> None:
    """Every state type but the terminal ones is running; the run links to its UI page and
    keeps the first line of a failure's message."""
    handoff = PrefectHandoff(PrefectRun.model_validate(CONFIG))
    try:
        run = handoff.downstream(
            {"id": "f-1", "state": {"type": kind, "name": name, "message": "boom\ntrace"}}
        )
    finally:
        await handoff.close()
    assert run.outcome == outcome
    assert run.state == name
    assert run.url == "http://127.0.0.1:4200/runs/flow-run/f-1"
    assert run.detail == ("" if outcome == "succeeded" else "boom")

"""Every metric eventflow defines is documented in docs/reference/metrics.md."""

from __future__ import annotations

from pathlib import Path

from eventflow import metrics

PAGE = Path(__file__).resolve().parents[2] / "docs/reference/metrics.md"


def test_every_metric_is_documented() -> None:
    """Each eventflow_* family appears in the reference with its exposed name and labels."""
    page = PAGE.read_text()
    for family in metrics.REGISTRY.collect():
        if not family.name.startswith("eventflow_"):
            continue
        exposed = family.name + ("_total" if family.type == "counter" else "")
        row = next((line for line in page.splitlines() if f"| `{exposed}` |" in line), None)
        assert row is not None, f"{exposed} is not in {PAGE.name}"
        assert f"| {family.type} |" in row, f"{exposed}: type {family.type} not documented"

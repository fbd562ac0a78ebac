"""The documentation stays true: generated reference pages are current, examples validate."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from eventflow.config.loader import check_file
from eventflow.config.reference import generate, generate_cli

ROOT = Path(__file__).resolve().parents[2]


def test_config_reference_is_current() -> None:
    """docs/reference/config.md is what the pydantic models generate."""
    page = (ROOT / "docs/reference/config.md").read_text()
    fix = "run: python -m eventflow.config.reference > docs/reference/config.md"
    assert page == generate(), fix


def test_cli_reference_is_current() -> None:
    """docs/reference/cli.md is what the CLI's help texts generate."""
    page = (ROOT / "docs/reference/cli.md").read_text()
    assert page == generate_cli(), (
        "run: python -m eventflow.config.reference cli > docs/reference/cli.md"
    )


def _pipeline_examples() -> list[tuple[str, str]]:
    """Every ```yaml block in the README and docs/ that is a whole pipeline (has `sensors:`
    and `rules:`; fragments showing one section are not)."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for i, block in enumerate(re.findall(r"```yaml\n(.*?)```", path.read_text(), re.S)):
            if "is run by tests/" in block:  # needs what that test installs; it runs it
                continue
            if re.search(r"^rules:", block, re.M) and re.search(r"^sensors:", block, re.M):
                found.append((f"{path.relative_to(ROOT)}#{i}", block))
    return found


@pytest.mark.parametrize(("where", "text"), _pipeline_examples(), ids=lambda v: str(v)[:40])
def test_pipeline_examples_in_docs_validate(tmp_path: Path, where: str, text: str) -> None:
    """Each pipeline shown in the docs passes `eventflow validate`."""
    file = tmp_path / "pipeline.yaml"
    file.write_text(text)
    problems = check_file(file, environ={"HOME": "/tmp"})
    assert problems == [], f"{where}: {problems}"


@pytest.mark.parametrize("example", ["quickstart", "stack", "dbt"])
def test_examples_pipeline_validates(example: str) -> None:
    """The pipelines in examples/ validate: the quickstart, the compose stack's, dbt's."""
    assert check_file(ROOT / f"examples/{example}/pipeline.yaml", environ={}) == []

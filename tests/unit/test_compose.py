"""docker-compose.yml and the Dockerfile are for users (no Docker engine runs here): check
them with the Compose specification's JSON schema and with hadolint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads((ROOT / "tests/data/compose_spec.json").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    errors = sorted(
        jsonschema.Draft7Validator(schema).iter_errors(compose), key=lambda e: list(e.path)
    )
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--no-color", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_file_names_the_whole_stack() -> None:
    """The compose file parses and defines Kafka, MinIO, Mosquitto, PostgreSQL and eventflow,
    each with an image or a build context that exists."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"kafka", "minio", "mosquitto", "postgres", "eventflow"} <= set(services)
    for name, service in services.items():
        assert "image" in service or "build" in service, name
        if "build" in service:
            assert (ROOT / service["build"] / "Dockerfile").exists()
        for dep in service.get("depends_on", []):
            assert dep in services, f"{name} depends on unknown service {dep}"


def test_compose_keeps_secrets_out_of_the_file() -> None:
    """Passwords in the compose file come from the environment (with local defaults)."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key:
                assert str(value).startswith("${"), key

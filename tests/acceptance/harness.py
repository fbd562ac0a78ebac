"""Drive the real ``eventflow`` CLI in subprocesses: write a pipeline, start, land files, kill."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import jsonschema

from eventflow.event_schemas import schema

EVENTFLOW = [sys.executable, "-m", "eventflow"]


class Project:
    """A pipeline in a temporary directory and the eventflow processes run on it."""

    live: ClassVar[list[Project]] = []
    """Every project of the current test; the conftest kills their processes at teardown."""

    def __init__(self, root: Path, pipeline: str) -> None:
        Project.live.append(self)
        self.root = root
        self.file = root / "pipeline.yaml"
        self.file.write_text(pipeline)
        self.landing = root / "landing"
        self.landing.mkdir(exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.logs: list[Path] = []

    # -- files ------------------------------------------------------------------------------

    def land(self, rel: str, content: str = "x\n") -> Path:
        """Write a file under a temporary name and rename it into place (atomic)."""
        path = self.landing / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(content)
        tmp.replace(path)
        return path

    # -- processes --------------------------------------------------------------------------

    def start(self, crash_at: str | None = None, **env: str) -> subprocess.Popen[bytes]:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        log = self.root / f"eventflow-{len(self.logs)}.log"
        self.logs.append(log)
        environ = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
        environ.pop("EVENTFLOW_CRASH_AT", None)
        if crash_at:
            environ["EVENTFLOW_CRASH_AT"] = crash_at
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [*EVENTFLOW, "run", str(self.file), "--log-format", "json"],
                cwd=self.root,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=environ,
            )
        return self.proc

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM (graceful drain) and wait; returns the exit code.

        Waits first until the process has started its pipeline: a SIGTERM that arrives while
        Python is still importing meets no handler yet, and the process dies of it."""
        assert self.proc is not None
        proc = self.proc
        wait_until(lambda: proc.poll() is not None or self.started(), timeout)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)

    def started(self) -> bool:
        """Whether the current process has logged ``pipeline_started``."""
        log = self.logs[-1] if self.logs else None
        return log is not None and '"pipeline_started"' in log.read_text(errors="replace")

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON log line of every process started so far."""
        lines = []
        for log in self.logs:
            for line in log.read_text(errors="replace").splitlines():
                if line.startswith("{"):
                    lines.append(json.loads(line))
        return lines

    # -- the CLI ----------------------------------------------------------------------------

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*EVENTFLOW, *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"eventflow {' '.join(args)} failed:\n{result.stderr}")
        return result

    def cli_json(self, command: str, *args: str) -> Any:
        """``eventflow COMMAND FILE ARGS --json``, parsed."""
        return json.loads(self.cli(command, str(self.file), *args, "--json").stdout)

    def runs(self) -> list[dict[str, Any]]:
        return self.cli_json("runs", "--limit", "100000")

    def status(self) -> dict[str, Any]:
        return self.cli_json("status")

    def published(self, name: str = "out/events.jsonl") -> list[dict[str, Any]]:
        """The events the file publisher wrote; each is checked against its type's schema."""
        path = self.root / name
        if not path.exists():
            return []
        events = [json.loads(line) for line in path.read_text().splitlines() if line]
        for event in events:
            check_event(event)
        return events


@functools.cache
def _validator(type_: str) -> jsonschema.protocols.Validator:
    return jsonschema.Draft202012Validator(schema(type_), format_checker=jsonschema.FormatChecker())


def check_event(event: dict[str, Any]) -> None:
    """Raise if a published event does not follow the JSON Schema of its type."""
    errors = list(_validator(event["type"]).iter_errors(event))
    assert not errors, f"{event['type']} {event['id']}: " + "; ".join(
        f"{list(e.path)}: {e.message}" for e in errors
    )


def wait_until(check: Callable[[], Any], timeout: float = 30, interval: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s; last value: {last!r}")


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (an orphan nobody reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []

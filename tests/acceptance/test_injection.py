"""Values from events are data: a file name, an `emit`, a webhook or an API call cannot run a
command through a task's shell, and validate refuses the pipelines that would let them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
from pathlib import Path

import httpx

from tests.acceptance.harness import EVENTFLOW, Project, lines, wait_until
from tests.services._process import free_port, wait_listening

SECRET = "injection-secret"
EVIL = "$(touch x)"
"""The value every vector carries: a shell that parsed it would create the file ``x``."""

SAFE = """
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 0s}}
  hooks: {type: http, auth: hmac, secret_env: HOOK_SECRET}
datasets:
  files: {sensor: landing, key: "{n}.csv"}
  pings: {sensor: hooks, partition: {n: payload.n}}
rules:
  env_form:
    when: {any: [files, pings], by: [n]}
    run: {command: [sh, -c, 'printf "%s\\n" "$EVENTFLOW_VAR_N" >> env.log']}
  quoted_form:
    when: {any: [files, pings], by: [n]}
    run: {command: [sh, -c, "printf '%s\\n' {n!sh} >> quoted.log"]}
  argv_form:
    when: {any: [files, pings], by: [n]}
    run: {command: [sh, -c, 'printf "%s\\n" "$1" >> argv.log', sh, "{n}"]}
engine: {poll_interval: 100ms}
"""

UNSAFE = """\
sensors:
  landing: {type: directory, path: ./landing}
datasets:
  files: {sensor: landing, key: "{n}.csv"}
rules:
  echo:
    when: {any: [files], by: [n]}
    run: {command: [/usr/bin/env, bash, -c, "echo {n}"]}
  py:
    when: {any: [files], by: [n]}
    run: {command: [python3, -c, "print('{n!sh}')"]}
"""


def test_validate_refuses_a_value_inside_a_shell_script(tmp_path: Path) -> None:
    """`validate` refuses `{n}` inside `bash -c` and inside `python3 -c` (even quoted with
    `!sh`), naming file:line, the variable and both safe forms; `run` starts nothing."""
    p = Project(tmp_path, UNSAFE)
    for command in ("validate", "run"):
        result = p.cli(command, str(p.file), check=False)
        assert result.returncode == 2, result.stderr
        err = result.stderr
        assert f"{p.file}:8: rules.echo.run.command.3: `{{n}}` is put into the code that" in err
        assert '"$EVENTFLOW_VAR_N"' in err
        assert "`{n!sh}`" in err
        assert f"{p.file}:11: rules.py.run.command.2: `{{n!sh}}`" in err
        assert 'os.environ["EVENTFLOW_VAR_N"]' in err
    assert not (tmp_path / ".eventflow").exists()


def _start(p: Project, *args: str) -> subprocess.Popen[bytes]:
    """``eventflow run FILE ARGS`` like ``Project.start`` (which it leaves to clean up)."""
    log = p.root / f"eventflow-{len(p.logs)}.log"
    p.logs.append(log)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HOOK_SECRET": SECRET}
    env.pop("EVENTFLOW_API_TOKEN", None)  # the API unauthenticated, as by default
    with log.open("wb") as out:
        p.proc = subprocess.Popen(
            [*EVENTFLOW, "run", str(p.file), "--log-format", "json", *args],
            cwd=p.root,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return p.proc


def _current_log(p: Project) -> list[dict[str, object]]:
    """The JSON log lines of the process started last."""
    text = p.logs[-1].read_text(errors="replace")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_malicious_values_from_every_vector_reach_the_task_as_literal_text(
    tmp_path: Path,
) -> None:
    """A file named `$(touch x).csv`, an `eventflow emit`, a signed webhook and an
    unauthenticated `POST /api/events` each carrying a shell command substitution: the
    env-var, `{n!sh}` and positional forms all see the literal value and `x` is never made;
    a webhook with a lone surrogate is one dead letter and an API value with NUL a 400."""
    p = Project(tmp_path, SAFE)
    assert p.cli("validate", str(p.file)).returncode == 0
    port = free_port()
    proc = _start(p, "--http", str(port))
    wait_listening(proc, [port], timeout=30, what="eventflow run --http")
    try:
        values = [f"file {EVIL}", f"emit {EVIL}; touch x", f"hook `touch x` {EVIL}", "api '\n;x"]
        p.land(f"{values[0]}.csv")
        p.cli("emit", str(p.file), "files", f"n={values[1]}")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            body = json.dumps({"n": values[2]}).encode()
            sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            hook = client.post("/hooks/hooks", content=body, headers={"X-Hub-Signature-256": sig})
            assert hook.status_code == 200, hook.text
            api = client.post(
                "/api/events", json={"dataset": "pings", "partition": {"n": values[3]}}
            )
            assert api.status_code == 202, api.text
            # Text that cannot be stored is refused with a clear answer (the sender knows;
            # nothing is stored half), from the webhook and the API alike: no crash.
            bad = b'{"n": "\\ud800"}'
            sig = "sha256=" + hmac.new(SECRET.encode(), bad, hashlib.sha256).hexdigest()
            hook = client.post("/hooks/hooks", content=bad, headers={"X-Hub-Signature-256": sig})
            assert hook.status_code == 400, hook.text
            assert "not JSON" in hook.text
            nul = {"dataset": "pings", "partition": {"n": "a\0"}}
            api = client.post("/api/events", json=nul)
            assert api.status_code == 400, api.text
            assert "NUL" in api.text
        want = sorted(v for value in values for v in value.split("\n"))
        for log in ("env.log", "quoted.log", "argv.log"):
            wait_until(lambda log=log: len(lines(tmp_path / log)) == len(want))
            assert sorted(lines(tmp_path / log)) == want, log
        assert p.status()["counts"]["deadletters"] == 0
    finally:
        assert p.stop() == 0
    assert not (tmp_path / "x").exists(), "a value was run as a shell command"
    assert not (p.landing / "x").exists()


GOOD_AND_BAD = """
sensors:
  landing: {type: directory, path: ./landing, ready: {stable_for: 0s}}
datasets:
  data: {sensor: landing, key: "a/{name}.csv"}
rules:
  load:
    when: {any: [data], by: [name]}
    run: {command: [sh, -c, 'echo "$EVENTFLOW_VAR_NAME" >> loaded.log']}
engine: {poll_interval: 100ms}
"""


def test_a_file_name_that_is_not_utf8_is_one_dead_letter_across_restarts(tmp_path: Path) -> None:
    """A file named `bad-\\xff.csv` (not UTF-8) beside 5 good files: over 3 starts the good
    files fire once each and the bad one is one dead letter, its path shown escaped."""
    p = Project(tmp_path, GOOD_AND_BAD)
    (p.landing / "a").mkdir()
    for i in range(5):
        (p.landing / "a" / f"good{i}.csv").write_text("x\n")
    with open(os.fsencode(p.landing) + b"/a/bad-\xff.csv", "wb") as f:
        f.write(b"x\n")
    for start in range(3):
        _start(p, "--log-level", "debug")
        wait_until(lambda: len(lines(tmp_path / "loaded.log")) == 5)
        # Seen again at each restart (it has no cursor entry) and recognised by its id.
        seen = "deadletters" if start == 0 else "duplicates"
        wait_until(
            lambda seen=seen: any(
                e.get("event") == "checkpoint_committed" and e.get(seen) == 1
                for e in _current_log(p)
            )
        )
        assert p.stop() == 0
    assert sorted(lines(tmp_path / "loaded.log")) == [f"good{i}" for i in range(5)]
    assert len(p.runs()) == 5
    assert p.status()["counts"]["deadletters"] == 1
    letters = [e for e in p.log_events() if e.get("event") == "event_deadlettered"]
    assert len(letters) == 1, letters
    assert letters[0]["position"]["path"] == "a/bad-\\xff.csv"
    assert "not valid UTF-8" in letters[0]["error"]

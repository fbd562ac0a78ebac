"""Paged runs and partial matches through the real server and the real CLI: the API's
``items``, ``next`` and ``total``, the table's "showing 50 of N", ``--json`` staying an array
with the notice on stderr, and ``--all`` listing everything."""

from __future__ import annotations

import json
from pathlib import Path

from tests.acceptance.harness import Project, wait_until
from tests.acceptance.test_auth import serve

RUNS = 130
PIPELINE = """
name: paged
sensors:
  open: {type: http, auth: none}
datasets:
  manual: {sensor: open, key: "manual/{n}"}
  never: {sensor: open, key: "never/{n}"}
rules:
  each:
    when: {any: [manual]}
    run: {command: [sh, -c, "test $EVENTFLOW_VAR_N != 7"]}
  waiting:
    when: {all: [manual, never], by: [n]}
    run: {command: [sh, -c, "exit 0"]}
engine: {poll_interval: 50ms}
"""


def test_api_and_cli_pages(tmp_path: Path) -> None:
    """130 runs: the API's pages of 40 cover them once with the total; filters and a bad
    cursor or time answer as documented; the CLI's table, --json and --all agree."""
    p = Project(tmp_path, PIPELINE)
    with serve(p) as client:
        for n in range(RUNS):
            emitted = client.post(
                "/api/events", json={"dataset": "manual", "partition": {"n": str(n)}}
            )
            assert emitted.status_code == 202

        def finished() -> bool:
            body = client.get("/api/runs", params={"limit": 1, "status": "succeeded"}).json()
            return bool(body["total"] == RUNS - 1)

        wait_until(finished, timeout=60)
        seen: list[str] = []
        cursor = None
        while True:
            params = {"limit": 40, **({"cursor": cursor} if cursor else {})}
            body = client.get("/api/runs", params=params).json()
            assert body["total"] == RUNS
            assert body["runs"] == body["items"]  # the list before paging, kept
            seen += [r["run_id"] for r in body["items"]]
            cursor = body["next"]
            if cursor is None:
                break
        assert len(seen) == len(set(seen)) == RUNS
        failed = client.get("/api/runs", params={"status": "failed"}).json()
        assert [r["partition"] for r in failed["items"]] == [{"n": "7"}]
        one = client.get("/api/runs", params={"partition": "n=12"}).json()
        assert (one["total"], one["items"][0]["partition"]) == (1, {"n": "12"})
        assert client.get("/api/runs", params={"since": "1m"}).json()["total"] == RUNS
        assert client.get("/api/runs", params={"until": "1h"}).json()["total"] == 0
        assert client.get("/api/runs", params={"cursor": "nope"}).status_code == 400
        assert client.get("/api/runs", params={"since": "soon"}).status_code == 400
        assert client.get("/api/runs", params={"partition": "n"}).status_code == 400

        open_keys: list[str] = []
        cursor = None
        while True:
            params = {"limit": 40, **({"cursor": cursor} if cursor else {})}
            body = client.get("/api/matches", params=params).json()
            assert body["total"] == RUNS
            assert body["matches"] == body["items"]
            open_keys += [m["partition"]["n"] for m in body["items"]]
            cursor = body["next"]
            if cursor is None:
                break
        assert sorted(open_keys) == sorted(str(n) for n in range(RUNS))
        assert open_keys == sorted(open_keys)  # by rule, then partition key
        one = client.get("/api/matches", params={"partition": "n=12", "rule": "waiting"}).json()
        assert (one["total"], one["items"][0]["missing"]) == (1, ["never"])
        assert client.get("/api/matches", params={"status": "expired"}).json()["total"] == 0
        assert client.get("/api/matches", params={"until": "1h"}).json()["total"] == 0
        assert client.get("/api/matches", params={"cursor": "nope"}).status_code == 400
        assert client.get("/api/matches", params={"rule": "nope"}).status_code == 404

    table = p.cli("runs", str(p.file))
    assert f"showing 50 of {RUNS} (use --limit/--all)" in table.stdout
    listed = p.cli("runs", str(p.file), "--json")
    assert len(json.loads(listed.stdout)) == 50
    assert f"showing 50 of {RUNS} (use --limit/--all)" in listed.stderr
    everything = p.cli("runs", str(p.file), "--json", "--all")
    assert [r["run_id"] for r in json.loads(everything.stdout)] == seen
    assert everything.stderr == ""
    assert json.loads(p.cli("runs", str(p.file), "--json", "--status", "failed").stdout)[0][
        "partition"
    ] == {"n": "7"}
    assert p.cli_json("runs", "--partition", "n=12")[0]["partition"] == {"n": "12"}
    assert p.cli_json("runs", "--until", "1h") == []
    table = p.cli("matches", str(p.file))
    assert f"showing 50 of {RUNS} (use --limit/--all)" in table.stdout
    listed = p.cli("matches", str(p.file), "--json", "--all")
    assert len(json.loads(listed.stdout)) == RUNS
    assert listed.stderr == ""
    assert p.cli_json("matches", "--partition", "n=12")[0]["missing"] == ["never"]
    bad = p.cli("runs", str(p.file), "--since", "soon", check=False)
    assert bad.returncode == 2
    assert "ISO 8601" in bad.stderr

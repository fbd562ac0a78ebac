"""The pipeline's ``server`` settings on the real server: the allowed hosts and origins."""

from __future__ import annotations

from pathlib import Path

from tests.integration.test_server import serving

PIPELINE = """
name: guarded
datasets:
  manual: {sensor: manual, key: "{n}"}
sensors:
  manual: {type: http, auth: none}
rules:
  r: {when: {any: [manual]}, run: {command: [sh, -c, "true"]}}
server:
  allowed_hosts: [eventflow.example, "*.internal.example"]
  allowed_origins: [https://console.example]
"""


async def test_allowed_hosts_and_origins_come_from_the_pipeline(tmp_path: Path) -> None:
    """Names in `server.allowed_hosts` (exact or `*.` suffix) are answered, others are 400;
    a POST from an origin in `server.allowed_origins` is accepted, even cross-site."""
    async with serving(tmp_path, PIPELINE) as client:
        for host in ("eventflow.example", "a.internal.example:8080", "localhost"):
            assert (await client.get("/api/runs", headers={"Host": host})).status_code == 200
        for host in ("internal.example", "eventflow.example.evil", "evil"):
            assert (await client.get("/api/runs", headers={"Host": host})).status_code == 400
        event = {"dataset": "manual", "partition": {"n": "1"}}
        console = {"Origin": "https://console.example", "Sec-Fetch-Site": "cross-site"}
        assert (await client.post("/api/events", json=event, headers=console)).status_code == 202
        other = {"Origin": "https://other.example"}
        assert (await client.post("/api/events", json=event, headers=other)).status_code == 403

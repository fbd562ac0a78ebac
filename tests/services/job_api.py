"""A local asynchronous job API (like Flink's, Spark's or a warehouse's) on a free loopback
port, served from a thread of the test process, that records every request.

- ``POST /jobs`` submits a job and answers ``{"jobid": "j-N"}``. The body's ``outcome`` picks
  what its status polls answer in turn, the last one repeating: ``done`` QUEUED, RUNNING,
  FINISHED; ``failed`` QUEUED, RUNNING, FAILED; ``slow`` QUEUED, then RUNNING for as long as
  :attr:`JobApi.hold` is set (then FINISHED). Its ``tag`` can be searched for.
- ``GET /jobs/<id>`` answers ``{"jid": ..., "state": ...}``; 404 for an unknown job.
- ``GET /jobs?tag=T`` answers ``{"jobs": [{"jid": ...}]}``: the jobs submitted with tag T.
- ``POST /jobs/<id>/cancel`` records the cancel; the job's next state is CANCELED.
- ``POST /graphql`` answers 200 with ``{"errors": [...]}`` (what Dagster's GraphQL does).
- ``POST /text`` answers 200 with a body that is not JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

STATES = {
    "done": ["QUEUED", "RUNNING", "FINISHED"],
    "failed": ["QUEUED", "RUNNING", "FAILED"],
    "slow": ["QUEUED", "RUNNING"],
}


@dataclass
class Job:
    id: str
    states: list[str]
    body: dict[str, Any]
    slow: bool
    polls: int = 0

    def state(self, hold: threading.Event) -> str:
        if self.slow and not hold.is_set():
            return "FINISHED"
        state = self.states[min(self.polls, len(self.states) - 1)]
        self.polls += 1
        return state


@dataclass
class JobApi:
    """The server's state; ``url`` is where it listens once started by :func:`job_api`."""

    url: str = ""
    jobs: dict[str, Job] = field(default_factory=dict)
    submits: list[dict[str, Any]] = field(default_factory=list)
    """Every ``POST /jobs``: ``{"body": ..., "headers": {lower-case name: value}}``."""
    polls: list[str] = field(default_factory=list)
    """The job id of every status request, in order."""
    cancels: list[str] = field(default_factory=list)
    failures: int = 0
    """How many of the next status requests answer 503 (then the count goes down)."""
    hold: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.hold.set()

    def answer(self, method: str, target: str, body: Any, headers: dict[str, str]) -> Any:
        """``(status, JSON body or text)`` of one request."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/").split("/")[1:]
        with self.lock:
            if method == "POST" and path == ["jobs"]:
                return self.submit(body, headers)
            if method == "GET" and path == ["jobs"]:
                tag = parse_qs(parts.query).get("tag", [""])[0]
                found = [{"jid": j.id} for j in self.jobs.values() if j.body.get("tag") == tag]
                return 200, {"jobs": found}
            if len(path) >= 2 and path[0] == "jobs" and path[1] not in self.jobs:
                return 404, {"errors": [f"job {path[1]} not found"]}
            if method == "GET" and len(path) == 2 and path[0] == "jobs":
                return self.status(self.jobs[path[1]])
            if method == "POST" and len(path) == 3 and path[2] == "cancel":
                self.cancels.append(path[1])
                self.jobs[path[1]].states = ["CANCELED"]
                self.jobs[path[1]].slow = False
                return 202, {}
            if method == "POST" and path == ["graphql"]:
                return 200, {"data": None, "errors": [{"message": "Pipeline not found"}]}
            if method == "POST" and path == ["text"]:
                return 200, "<html>Service is up</html>"
        return 404, {"errors": ["no such endpoint"]}

    def submit(self, body: Any, headers: dict[str, str]) -> tuple[int, Any]:
        self.submits.append({"body": body, "headers": headers})
        outcome = body.get("outcome", "done") if isinstance(body, dict) else "done"
        job = Job(f"j-{len(self.jobs) + 1}", list(STATES[outcome]), body, outcome == "slow")
        self.jobs[job.id] = job
        return 200, {"jobid": job.id}

    def status(self, job: Job) -> tuple[int, Any]:
        self.polls.append(job.id)
        if self.failures > 0:
            self.failures -= 1
            return 503, {"errors": ["the job manager is restarting"]}
        return 200, {"jid": job.id, "state": job.state(self.hold)}


def _handler(api: JobApi) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle_request(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, answer = api.answer(self.command, self.path, body, headers)
            is_text = isinstance(answer, str)
            data = answer.encode() if is_text else json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/html" if is_text else "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = handle_request

    return Handler


def serve() -> Iterator[JobApi]:
    """Start the API on a free loopback port; stopped when the generator is closed."""
    api = JobApi()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    httpd.daemon_threads = True
    api.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield api
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)

"""The flink sensor against a real Flink 2.3 session cluster, in the real ``eventflow run``.

One standalone session cluster (JobManager and TaskManager from the pip package, on loopback
ports of the module's own) serves every test here; jobs of ``tests/flink/sensor_jobs.py`` are
submitted to it over REST. The pipeline's rules write one line per run into ``runs.txt``, so
a test sees which partitions fired and how often. The sensor reads the cluster through a
:class:`FaultyProxy`, so a test can take the REST API away and bring it back.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.acceptance.harness import Project, wait_until
from tests.services._process import free_port, owns_listener
from tests.services.proxy import FaultyProxy

pytestmark = [pytest.mark.flink, pytest.mark.timeout(300)]

JOBS = Path(__file__).with_name("sensor_jobs.py")
READY_TIMEOUT = 120.0
"""Seconds the cluster may take to come up (7-19 s idle; more on a loaded machine)."""
SUBMIT_ATTEMPTS = 4
"""Submissions of one job at most: FLINK-36298 (a planner NPE at set-up) is safe to retry."""
JOB_LIST_EXPIRY = 25
"""Seconds an ended job stays in the cluster's job list (`jobstore.expiration-time`): short,
so that the tests see jobs leave the list while the sensor watches."""


@dataclass
class SessionCluster:
    """A running session cluster: its REST address and the jobs submitted to it."""

    rest: str
    procs: list[subprocess.Popen[bytes]]
    log_dir: Path
    jar: str = ""
    submitted: list[str] = field(default_factory=list)

    def get(self, path: str) -> Any:
        response = httpx.get(self.rest + path, timeout=30)
        response.raise_for_status()
        return response.json()

    def jobs(self) -> dict[str, dict[str, Any]]:
        """The job list by name (the newest job of a name)."""
        jobs = sorted(self.get("/jobs/overview")["jobs"], key=lambda j: j["start-time"])
        return {j["name"]: j for j in jobs}

    def submit(self, kind: str, name: str, *args: str) -> str:
        """Run ``sensor_jobs.py KIND --name NAME ARGS``; returns the job id."""
        body = {
            "entryClass": "org.apache.flink.client.python.PythonDriver",
            "programArgsList": ["-py", str(JOBS), kind, "--name", name, *args],
        }
        last = ""
        for _ in range(SUBMIT_ATTEMPTS):
            try:
                response = httpx.post(f"{self.rest}/jars/{self.jar}/run", json=body, timeout=120)
                if response.status_code == 200:
                    return str(response.json()["jobid"])
                last = response.text[-2000:]
            except httpx.TimeoutException as exc:
                last = repr(exc)
            # The submission may have failed after the job started: never start it twice.
            job = self.jobs().get(name)
            if job is not None:
                return str(job["jid"])
        raise AssertionError(f"could not submit {kind} job {name}: {last}")

    def state(self, jid: str) -> str:
        return str(self.get(f"/jobs/{jid}")["state"])

    def cancel(self, jid: str) -> None:
        httpx.patch(f"{self.rest}/jobs/{jid}?mode=cancel", timeout=30).raise_for_status()

    def stop(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _java_opts(pyflink: Path) -> str:
    """The JVM options the pip package's own config passes (module opens for Java 17)."""
    conf = yaml.safe_load((pyflink / "conf" / "config.yaml").read_text())
    return str(conf["env"]["java"]["opts"]["all"])


def _listens(proc: subprocess.Popen[bytes], port: int) -> bool:
    """Whether ``proc`` (or a child) listens on ``port``; the start scripts run short-lived
    children, which may vanish while their family is read."""
    try:
        return owns_listener(proc.pid, port)
    except OSError:
        return False


@pytest.fixture(scope="module")
def session_cluster(
    flink_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SessionCluster]:
    """A standalone session cluster on loopback, up for the module's tests."""
    root = tmp_path_factory.mktemp("flink-session")
    python = flink_home / "venv" / "bin" / "python"
    pyflink = next((flink_home / "venv" / "lib").glob("python3*/site-packages/pyflink"))
    rest = free_port()
    settings: dict[str, Any] = {
        "rest.port": rest,
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "jobmanager.rpc.address": "127.0.0.1",
        "jobmanager.rpc.port": free_port(),
        "jobmanager.bind-host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "taskmanager.rpc.port": free_port(),
        "taskmanager.data.port": free_port(),
        "blob.server.port": free_port(),
        "taskmanager.numberOfTaskSlots": 4,
        "parallelism.default": 1,
        "jobmanager.memory.process.size": "1024m",
        "taskmanager.memory.process.size": "1280m",
        "state.checkpoints.dir": f"file://{root}/checkpoints",
        "execution.checkpointing.savepoint-dir": f"file://{root}/savepoints",
        "web.upload.dir": str(root / "upload"),
        "web.tmpdir": str(root / "web"),
        "io.tmp.dirs": str(root / "io"),
        "python.client.executable": str(python),
        "python.executable": str(python),
        # The REST API's metrics (watermarks) are fetched this often (default 10 s).
        "metrics.fetcher.update-interval": 1000,
        "jobstore.expiration-time": JOB_LIST_EXPIRY,
        "env.java.opts.all": _java_opts(pyflink),
    }
    conf = root / "conf"
    conf.mkdir()
    (conf / "config.yaml").write_text(yaml.safe_dump(settings))
    for name in ("log4j-console.properties", "log4j.properties"):
        (conf / name).write_bytes((pyflink / "conf" / name).read_bytes())
    env = {**os.environ, "FLINK_CONF_DIR": str(conf), "FLINK_LOG_DIR": str(root / "log")}
    procs = []
    for part in ("jobmanager", "taskmanager"):
        with (root / f"{part}.out").open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [str(pyflink / "bin" / f"{part}.sh"), "start-foreground"],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )
    cluster = SessionCluster(f"http://127.0.0.1:{rest}", procs, root)
    try:
        wait_until(lambda: _listens(procs[0], rest) or procs[0].poll() is not None, READY_TIMEOUT)
        assert procs[0].poll() is None, (root / "jobmanager.out").read_text()[-3000:]
        wait_until(lambda: cluster.get("/overview")["slots-available"] > 0, READY_TIMEOUT)
        jar = pyflink / "opt" / "flink-python-2.3.0.jar"
        with jar.open("rb") as f:
            response = httpx.post(
                f"{cluster.rest}/jars/upload", files={"jarfile": (jar.name, f)}, timeout=120
            )
        response.raise_for_status()
        cluster.jar = Path(response.json()["filename"]).name
        yield cluster
    finally:
        cluster.stop()


class BreakingProxy:
    """An HTTP proxy in front of the REST API that breaks chosen jobs: for a job id in
    ``broken``, its vertices' pages answer 404 and its checkpoints 500 (as for a job that
    left the cluster, or one whose checkpoint coordinator is not up); everything else is
    Flink's own answer."""

    def __init__(self, upstream: str) -> None:
        self.broken: set[str] = set()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = self.path.split("/")
                if len(parts) > 3 and parts[1] == "jobs" and parts[2] in proxy.broken:
                    if parts[3] == "vertices":
                        self._answer(404, b'{"errors": ["Vertex not found"]}')
                        return
                    if parts[3].startswith("checkpoints"):
                        self._answer(500, b'{"errors": ["Internal server error."]}')
                        return
                response = httpx.get(upstream + self.path, timeout=30)
                self._answer(response.status_code, response.content)

            def _answer(self, code: int, body: bytes) -> None:
                # The sensor may have given up on this answer (eventflow was killed).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def breaker(session_cluster: SessionCluster) -> Iterator[BreakingProxy]:
    proxy = BreakingProxy(session_cluster.rest)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def rest(breaker: BreakingProxy) -> Iterator[FaultyProxy]:
    """The cluster's REST API through a proxy the test can make refuse connections (and,
    behind it, the one that breaks chosen jobs)."""
    with FaultyProxy(("127.0.0.1", breaker.port)) as proxy:
        yield proxy


PIPELINE = """\
state: sqlite:///state.db
sensors:
  flink:
    type: flink
    url: {url}
    poll_interval: 500ms
    jobs: ["{prefix}-*"]
    watermarks: {{every: 1h, since: "2024-01-01T00:00:00Z"}}
datasets:
  states: {{sensor: flink, key: "{{job}}/state/{{state}}"}}
  failed: {{sensor: flink, key: "{{job}}/state/failed"}}
  checkpoints: {{sensor: flink, key: "{{job}}/checkpoint/{{id}}"}}
  hours: {{sensor: flink, key: "{{job}}/watermark/dt={{dt}}/hr={{hr}}"}}
rules:
  on_state:
    when: {{all: [states], by: [job, state]}}
    run: {{command: [sh, ./record.sh, state, "{{job}}", "{{state}}", "{{run_id}}"]}}
  alert:
    when: {{all: [failed], by: [job]}}
    run: {{command: [sh, ./record.sh, alert, "{{job}}", "{{run_id}}"]}}
  on_checkpoint:
    when: {{all: [checkpoints], by: [job, id]}}
    run: {{command: [sh, ./record.sh, checkpoint, "{{job}}", "{{id}}", "{{run_id}}"]}}
  on_hour:
    when: {{all: [hours], by: [job, dt, hr]}}
    run: {{command: [sh, ./record.sh, hour, "{{job}}", "{{dt}}/{{hr}}", "{{run_id}}"]}}
"""


def project(tmp_path: Path, proxy: FaultyProxy, prefix: str) -> Project:
    (tmp_path / "record.sh").write_text('echo "$*" >> runs.txt\n')
    return Project(tmp_path, PIPELINE.format(url=proxy.endpoint, prefix=prefix))


def runs(proj: Project, what: str) -> list[list[str]]:
    """The runs of one kind that started, by the lines their task wrote in ``runs.txt``
    (``state JOB STATE RUN_ID`` -> [JOB, STATE]), once per run id: a run that was in flight
    when eventflow was killed runs again, with the same run id."""
    path = proj.root / "runs.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    found: dict[str, list[str]] = {}
    for line in lines:
        kind, *fields, run_id = line.split()
        if kind == what:
            found.setdefault(run_id, fields)
    return list(found.values())


def connected(proj: Project) -> bool | None:
    """The sensor's health as ``eventflow status`` shows it."""
    sensors = proj.status().get("sensors") or []
    for sensor in sensors if isinstance(sensors, list) else []:
        if sensor.get("sensor") == "flink":
            return sensor.get("connected")  # type: ignore[no-any-return]
    return None


def test_job_states_fire_once_each_and_a_failed_job_alerts(
    session_cluster: SessionCluster, rest: FaultyProxy, tmp_path: Path
) -> None:
    """A failing job's states fire rules once each and its FAILED fires the alert rule; a
    job submitted after it still has every state announced (RUNNING, then FINISHED, with its
    completed checkpoints), and so has one cancelled through the REST API; nothing fires
    twice though the sensor polls every half second."""
    proj = project(tmp_path, rest, "st")
    proj.start(args=["--log-level", "debug"])
    wait_until(proj.started, 60)
    session_cluster.submit("failing", "st-bad", "--rows", "40", "--rate", "10")
    wait_until(lambda: ["st-bad"] in runs(proj, "alert"), 120)
    session_cluster.submit("bounded", "st-ok", "--rows", "60", "--rate", "15")
    endless = session_cluster.submit("unbounded", "st-cancel", "--rate", "5")
    wait_until(lambda: ["st-cancel", "running"] in runs(proj, "state"), 120)
    wait_until(lambda: ["st-ok", "finished"] in runs(proj, "state"), 120)
    session_cluster.cancel(endless)
    wait_until(lambda: ["st-cancel", "canceled"] in runs(proj, "state"), 60)
    wait_until(lambda: all(r["status"] == "succeeded" for r in proj.runs()), 30)
    time.sleep(2)  # four more polls: nothing new may fire
    assert proj.stop() == 0

    states = runs(proj, "state")
    assert all(n == 1 for n in Counter(map(tuple, states)).values()), states
    by_job: dict[str, list[str]] = {}  # in the order the sensor announced them
    for event in proj.log_events():
        if event["event"] == "flink_job_state":
            by_job.setdefault(event["job_name"], []).append(event["state"].lower())
    assert sorted(states) == sorted([job, s] for job, seen in by_job.items() for s in seen)
    assert by_job["st-bad"][-2:] == ["failing", "failed"]
    assert {"created", "running"} <= set(by_job["st-bad"])
    assert by_job["st-ok"][-1] == "finished"
    assert "running" in by_job["st-ok"]
    assert by_job["st-cancel"][-2:] == ["cancelling", "canceled"]
    assert runs(proj, "alert") == [["st-bad"]]
    checkpoints = runs(proj, "checkpoint")
    assert all(n == 1 for n in Counter(map(tuple, checkpoints)).values()), checkpoints
    assert {job for job, _ in checkpoints} >= {"st-ok"}
    warned = {e["event"] for e in proj.log_events() if e["level"] in ("warning", "error")}
    assert "flink_job_unreadable" not in warned


def test_watermark_hours_in_order_once_each_across_sigkill_and_outage(
    session_cluster: SessionCluster, rest: FaultyProxy, breaker: BreakingProxy, tmp_path: Path
) -> None:
    """An unbounded job's watermark gives one "passed hour H" event per hour, in order:
    eventflow killed with SIGKILL and started again, and the REST API gone for a while (the
    sensor reports itself disconnected, then recovers), leave no hour out and none twice;
    ended jobs of the cluster (failed, leaving its list) and a job whose vertices answer 404
    and checkpoints 500 do not stop it, and that job's own states are still announced."""
    proj = project(tmp_path, rest, "wm")
    session_cluster.submit("failing", "wm-bad", "--rows", "20", "--rate", "20")
    broken = session_cluster.submit("unbounded", "wm-broken", "--rate", "5")
    breaker.broken.add(broken)
    jid = session_cluster.submit("unbounded", "wm-hours", "--rate", "20")
    proj.start()
    wait_until(proj.started, 60)
    wait_until(lambda: len(runs(proj, "hour")) >= 2, 120)
    proj.kill()
    at_kill = len(runs(proj, "hour"))
    time.sleep(5)  # at 20 rows a second an hour of event time passes every 3 s
    proj.start()
    wait_until(proj.started, 60)
    wait_until(lambda: len(runs(proj, "hour")) >= at_kill + 2, 120)

    rest.refuse()
    wait_until(lambda: connected(proj) is False, 60)
    time.sleep(4)
    rest.forward()
    wait_until(lambda: connected(proj) is True, 60)
    at_outage = len(runs(proj, "hour"))
    wait_until(lambda: len(runs(proj, "hour")) >= at_outage + 2, 120)
    session_cluster.cancel(jid)
    session_cluster.cancel(broken)
    wait_until(lambda: ["wm-broken", "canceled"] in runs(proj, "state"), 60)
    wait_until(lambda: all(r["status"] == "succeeded" for r in proj.runs()), 30)
    # wm-bad failed early; the JobManager drops it from its list JOB_LIST_EXPIRY seconds
    # later, at its next clean-up (up to twice that), and the sensor forgets its cursor.
    wait_until(lambda: "flink_jobs_forgotten" in [e["event"] for e in proj.log_events()], 90)
    assert proj.stop() == 0

    hours = [partition for job, partition in runs(proj, "hour") if job == "wm-hours"]
    expected = [f"2024-01-01/{h:02d}" for h in range(len(hours))]
    assert sorted(hours) == expected, "an hour repeated or missing"
    for log in proj.logs:  # each process announced its hours in order
        announced = [
            json.loads(line)["period"]
            for line in log.read_text().splitlines()
            if '"flink_watermark_passed"' in line
        ]
        assert announced == sorted(set(announced)), announced
    assert ["wm-bad"] in runs(proj, "alert")
    events = [e["event"] for e in proj.log_events()]
    assert "flink_unreachable" in events
    assert "flink_reachable" in events
    assert "flink_jobs_forgotten" in events  # wm-bad left the job list meanwhile
    unreadable = {e["job_name"] for e in proj.log_events() if e["event"] == "flink_job_unreadable"}
    assert unreadable == {"wm-broken"}
    assert ["wm-broken", "running"] in runs(proj, "state")
    assert not [h for job, h in runs(proj, "hour") if job == "wm-broken"]


def test_bad_config_is_rejected_with_file_line_and_fix(tmp_path: Path) -> None:
    """A URL that is not http(s), and an unknown key, are refused by `validate` with the
    file, the line and what to write instead."""
    proj = Project(
        tmp_path,
        "state: sqlite:///state.db\n"
        "sensors:\n"
        "  flink:\n"
        "    type: flink\n"
        "    url: localhost:8081\n"
        "    poll_intervall: 5s\n"
        "datasets:\n"
        '  failed: {sensor: flink, key: "{job}/state/failed"}\n'
        "rules:\n"
        "  alert:\n"
        "    when: {all: [failed], by: [job]}\n"
        "    run: {command: [echo]}\n",
    )
    result = proj.cli("validate", str(proj.file), check=False)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert "pipeline.yaml:5" in out, out
    assert "http://localhost:8081" in out, out
    assert "pipeline.yaml:6" in out, out
    assert "poll_intervall" in out, out

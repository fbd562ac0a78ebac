"""Flink SQL jobs the Flink tier runs, each in a local mini-cluster on loopback.

Run with the Python of the Flink venv (``scripts/install-flink.sh``), never imported by the
tests: PyFlink lives in its own environment. Row ``n`` of the synthetic source has the event
time ``2024-01-01 00:00 + n minutes``, so an hour partition holds 60 rows and, at ``--rate``
rows a second, closes every ``60 / rate`` seconds of wall time.

- ``lake``: rows into a ``dt``/``hr`` partitioned CSV sink with the ``success-file`` commit
  policy, under the ``partition-time`` (delay 1 h) or ``process-time`` (delay 0 s) trigger;
  with ``--progress-topic`` the rows also go to Kafka as JSON (``{n, ts_ms}``), the event
  time eventflow's Kafka sensor derives its watermark from.
- ``control``: eventflow's completion events (CloudEvents JSON) read from a Kafka topic up to
  its end, their type and subject written as CSV into ``--out``.
"""

from __future__ import annotations

import argparse
import os

from pyflink.common import Configuration
from pyflink.table import EnvironmentSettings, TableEnvironment

START = "TIMESTAMP '2024-01-01 00:00:00'"


def table_env(args: argparse.Namespace) -> TableEnvironment:
    """A streaming table environment whose mini-cluster listens on loopback only."""
    # No Beam worker pool (it needs grpc and listens on every interface); no UDFs here.
    os.environ["_python_worker_execution_mode"] = "process"  # noqa: SIM112 (PyFlink reads this name)
    conf = Configuration()
    settings = {
        "rest.port": str(args.rest_port),
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "jobmanager.bind-host": "127.0.0.1",
        "taskmanager.bind-host": "127.0.0.1",
        "taskmanager.host": "127.0.0.1",
        "blob.server.port": str(args.blob_port),
        "parallelism.default": "1",
        "table.local-time-zone": "UTC",
        "execution.checkpointing.interval": f"{args.checkpoint_ms} ms",
    }
    if args.jars:
        settings["pipeline.jars"] = ";".join(f"file://{jar}" for jar in args.jars.split(","))
    for key, value in settings.items():
        conf.set_string(key, value)
    return TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    )


def commit_options(trigger: str) -> str:
    """The sink's partition commit: `partition-time` makes `_SUCCESS` mean complete."""
    delay = "1 h" if trigger == "partition-time" else "0 s"
    return f"""
        'sink.partition-commit.trigger'='{trigger}',
        'sink.partition-commit.delay'='{delay}',
        'sink.partition-commit.policy.kind'='success-file',
        'partition.time-extractor.timestamp-pattern'='$dt $hr:00:00',
        'sink.partition-commit.watermark-time-zone'='UTC'"""


def lake(args: argparse.Namespace) -> None:
    """Rows into the partitioned lake (and the progress topic); waits for the job's end."""
    env = table_env(args)
    env.execute_sql(f"""
        CREATE TABLE src (
            n BIGINT,
            ts AS TIMESTAMPADD(MINUTE, CAST(n AS INT), {START}),
            WATERMARK FOR ts AS ts
        ) WITH (
            'connector'='datagen', 'rows-per-second'='{args.rate}',
            'fields.n.kind'='sequence', 'fields.n.start'='0', 'fields.n.end'='{args.rows - 1}'
        )""")
    env.execute_sql(f"""
        CREATE TABLE lake (n BIGINT, ts TIMESTAMP(3), dt STRING, hr STRING)
        PARTITIONED BY (dt, hr) WITH (
            'connector'='filesystem', 'path'='file://{args.out}', 'format'='csv',
            {commit_options(args.trigger)}
        )""")
    statements = env.create_statement_set()
    statements.add_insert_sql(
        "INSERT INTO lake SELECT n, ts, DATE_FORMAT(ts, 'yyyy-MM-dd'), DATE_FORMAT(ts, 'HH')"
        " FROM src"
    )
    if args.progress_topic:
        env.execute_sql(f"""
            CREATE TABLE progress (n BIGINT, ts_ms BIGINT) WITH (
                {kafka_options(args.bootstrap, args.progress_topic)},
                'sink.delivery-guarantee'='at-least-once'
            )""")
        statements.add_insert_sql(
            "INSERT INTO progress SELECT n,"
            " UNIX_TIMESTAMP(DATE_FORMAT(ts, 'yyyy-MM-dd HH:mm:ss')) * 1000 FROM src"
        )
    statements.execute().wait()


def control(args: argparse.Namespace) -> None:
    """eventflow's completion events from Kafka, up to the topic's end, into CSV files."""
    env = table_env(args)
    env.execute_sql(f"""
        CREATE TABLE events (`type` STRING, `subject` STRING, `id` STRING) WITH (
            {kafka_options(args.bootstrap, args.control_topic)},
            'scan.startup.mode'='earliest-offset', 'scan.bounded.mode'='latest-offset',
            'json.ignore-parse-errors'='false'
        )""")
    env.execute_sql(f"""
        CREATE TABLE seen (`type` STRING, `subject` STRING, `id` STRING) WITH (
            'connector'='filesystem', 'path'='file://{args.out}', 'format'='csv'
        )""")
    env.execute_sql("INSERT INTO seen SELECT `type`, `subject`, `id` FROM events").wait()


def kafka_options(bootstrap: str, topic: str) -> str:
    """A JSON Kafka table; no idempotent producer (the tansu test broker has none)."""
    return f"""
        'connector'='kafka', 'topic'='{topic}', 'format'='json',
        'properties.bootstrap.servers'='{bootstrap}',
        'properties.group.id'='flink-{topic}',
        'properties.enable.idempotence'='false'"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("job", choices=["lake", "control"])
    parser.add_argument("--out", required=True, help="the directory the job writes into")
    parser.add_argument("--trigger", default="partition-time")
    parser.add_argument("--rows", type=int, default=240)
    parser.add_argument("--rate", type=int, default=20)
    parser.add_argument("--rest-port", type=int, required=True)
    parser.add_argument("--blob-port", type=int, required=True)
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    parser.add_argument("--jars", default="", help="comma-separated connector jars")
    parser.add_argument("--bootstrap", default="")
    parser.add_argument("--progress-topic", default="")
    parser.add_argument("--control-topic", default="")
    args = parser.parse_args()
    {"lake": lake, "control": control}[args.job](args)


if __name__ == "__main__":
    main()

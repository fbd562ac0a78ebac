"""Flink SQL jobs the Flink sensor's tests submit to a session cluster over REST.

Run by Flink's ``PythonDriver`` with the Python of the Flink venv, never imported by the
tests. Row ``n`` of the synthetic source has the event time ``2024-01-01 00:00 + n
minutes``, and the source's watermark is that event time, so at ``--rate`` rows a second the
job's watermark passes an hour every ``60 / rate`` seconds of wall time.

- ``bounded``: ``--rows`` rows into a blackhole sink, then the job finishes.
- ``unbounded``: rows for ever, counted per hour by a tumbling window (so the job has two
  vertices, each reporting its input watermark).
- ``failing``: fails at its ``--rows``-th row (a division by zero), without restarts.

Jobs never wait for their result: a job submitted over REST that waits makes the submission
answer 500 although the job runs.
"""

from __future__ import annotations

import argparse
import os

from pyflink.common import Configuration
from pyflink.table import EnvironmentSettings, TableEnvironment

START = "TIMESTAMP '2024-01-01 00:00:00'"


def table_env(args: argparse.Namespace) -> TableEnvironment:
    os.environ["_python_worker_execution_mode"] = "process"  # noqa: SIM112 (PyFlink reads it)
    conf = Configuration()
    settings = {
        "pipeline.name": args.name,
        "table.local-time-zone": "UTC",
        "execution.checkpointing.interval": f"{args.checkpoint_ms} ms",
        "restart-strategy.type": "none",
    }
    for key, value in settings.items():
        conf.set_string(key, value)
    return TableEnvironment.create(
        EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(conf).build()
    )


def source(env: TableEnvironment, args: argparse.Namespace, bounded: bool) -> None:
    # A sequence needs an end, and holds its values in memory: 200,000 rows are hours here.
    end = args.rows - 1 if bounded else 200_000
    env.execute_sql(f"""
        CREATE TABLE src (
            n BIGINT,
            ts AS TIMESTAMPADD(MINUTE, CAST(n AS INT), {START}),
            WATERMARK FOR ts AS ts
        ) WITH (
            'connector'='datagen', 'rows-per-second'='{args.rate}',
            'fields.n.kind'='sequence', 'fields.n.start'='0', 'fields.n.end'='{end}'
        )""")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("kind", choices=["bounded", "unbounded", "failing"])
    parser.add_argument("--name", required=True)
    parser.add_argument("--rows", type=int, default=60)
    parser.add_argument("--rate", type=int, default=10)
    parser.add_argument("--checkpoint-ms", type=int, default=1000)
    args = parser.parse_args()
    env = table_env(args)
    if args.kind == "unbounded":
        source(env, args, bounded=False)
        env.execute_sql(
            "CREATE TABLE hours (hr TIMESTAMP(3), c BIGINT) WITH ('connector'='blackhole')"
        )
        env.execute_sql("""
            INSERT INTO hours SELECT window_start, COUNT(*)
            FROM TABLE(TUMBLE(TABLE src, DESCRIPTOR(ts), INTERVAL '1' HOUR))
            GROUP BY window_start, window_end""")
        return
    source(env, args, bounded=True)
    env.execute_sql("CREATE TABLE sink (n BIGINT, q BIGINT) WITH ('connector'='blackhole')")
    if args.kind == "bounded":
        env.execute_sql("INSERT INTO sink SELECT n, n FROM src")
    else:
        env.execute_sql(f"INSERT INTO sink SELECT n, 1 / ({args.rows - 1} - n) FROM src")


if __name__ == "__main__":
    main()

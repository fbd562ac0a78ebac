"""Fixtures for the real services the tests use, each started on a free loopback port.

Every service fixture lives in its own module under ``tests/services`` and honours an
environment variable that points it at an external service instead (see each module).
"""

pytest_plugins = [
    "tests.services.kafka",
    "tests.services.s3",
    "tests.services.mqtt",
    "tests.services.postgres",
    "tests.services.flink",
    "tests.services.prefect",
    "tests.services.dagster",
    "tests.services.airflow",
]

"""eventflow's plugins: one sub-package per external system, installed as ``eventflow_sensors``.

Each sub-package (``kafka``, ``s3``, ``mqtt``, ``directory``, ``http``, ``openlineage``) holds
the system's config models, its sensor and, where the system can receive, its publisher, and
is registered through the ``eventflow.sensors`` and ``eventflow.publishers`` entry points.
Only these packages import transport libraries (watchdog, aiokafka, boto3, aiomqtt); the core
package :mod:`eventflow` never does, and these import from the core only through
:mod:`eventflow.plugin`.

The repository keeps them in its top-level ``sensors/`` folder; the wheel installs that folder
as ``eventflow_sensors``, a name a user's own ``sensors.py`` cannot shadow.
"""

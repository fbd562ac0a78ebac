"""Sensor and publisher plugins, one module per external system.

Each module holds the system's config models, its sensor and, where the system can receive,
its publisher, and is registered through the ``eventflow.sensors`` and
``eventflow.publishers`` entry points. Only these modules import transport libraries
(watchdog, aiokafka, boto3, aiomqtt); the core package :mod:`eventflow` never does.
"""

"""MQTT: the sensor (``sensor``, acknowledged after commit), the publisher and the sender
(``publish``), their config models (``config``) and the connection (``client``, ``ack``,
``dedupe``, ``reads``). Needs the ``mqtt`` extra (aiomqtt).

This package imports nothing itself, so that ``config`` can be read (by the S3 sensor's
topic notifications) without loading aiomqtt.
"""

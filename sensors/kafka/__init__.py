"""Kafka: the sensor (``sensor``), the completion-event publisher and the ``publish`` task's
sender (``publish``), their config models (``config``), record decoding (``records``) and
watermark mode (``watermark``). Needs the ``kafka`` extra (aiokafka).

This package imports nothing itself, so that ``config`` can be read (by the S3 sensor's
topic notifications) without loading aiokafka.
"""

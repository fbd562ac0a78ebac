"""S3 buckets: the sensor (``sensor``), the marker publisher (``publish``), their config
models (``config``), the client (``client``), readiness (``state``), bucket notifications
(``notify``, ``topics``) and time-window listing (``window``). Needs the ``s3`` extra (boto3).
"""

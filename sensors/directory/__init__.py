"""Local directories: the sensor (``sensor``), the file publisher (``publish``), the config
model (``config``), file listing (``fs``), readiness (``state``) and the watchdog observer
(``watch``). Part of the core install.
"""

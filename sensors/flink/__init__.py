"""Apache Flink's REST API: the flink sensor (job states, checkpoints, watermarks)."""

from .config import FlinkSensorConfig, WatermarkPeriods

__all__ = ["FlinkSensorConfig", "WatermarkPeriods"]

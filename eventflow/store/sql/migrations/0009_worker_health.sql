-- 0009: a heartbeat row per worker with its sensors' health, written by `eventflow run`
-- every few seconds so `eventflow status` (another process) shows sensors and workers.

CREATE TABLE worker_health (
    worker       TEXT PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    beat_seconds REAL NOT NULL,     -- seconds between two beats
    leases       TEXT NOT NULL,     -- JSON array of lease names held
    sensors      TEXT NOT NULL,     -- JSON object: sensor -> health
    stopped_at   TEXT               -- the last beat of a clean stop
);

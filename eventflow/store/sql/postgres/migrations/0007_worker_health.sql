-- 0007: a heartbeat row per worker with its sensors' health, written by `eventflow run`
-- every few seconds so `eventflow status` (another process) shows sensors and workers.
-- Kept apart from `workers` (the run-claim leases), which a clean stop deletes.

CREATE TABLE worker_health (
    worker       TEXT COLLATE "C" PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT COLLATE "C" NOT NULL,
    heartbeat_at TEXT COLLATE "C" NOT NULL,
    beat_seconds DOUBLE PRECISION NOT NULL,  -- seconds between two beats
    leases       TEXT NOT NULL,              -- JSON array of lease names held
    sensors      TEXT NOT NULL,              -- JSON object: sensor -> health
    stopped_at   TEXT COLLATE "C"            -- the last beat of a clean stop
);

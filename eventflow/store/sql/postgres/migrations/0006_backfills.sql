-- 0006: backfill requests, carried out by the running pipeline (eventflow.backfill_worker):
-- who asked and when, what (rule, range, force, rate), the plan's size and the progress.

CREATE TABLE backfills (
    id               TEXT COLLATE "C" PRIMARY KEY,
    rule             TEXT NOT NULL,
    lo               TEXT NOT NULL,
    hi               TEXT NOT NULL,
    force            INTEGER NOT NULL,
    list_sources     INTEGER NOT NULL,
    rate             DOUBLE PRECISION,  -- partitions per second; NULL: engine.backfill_rate
    status           TEXT NOT NULL,     -- pending, running, done, failed, cancelled
    requested_by     TEXT NOT NULL,
    requested_at     TEXT COLLATE "C" NOT NULL,
    preview          INTEGER,           -- partitions the dry run would fire at submission
    planned          INTEGER,           -- partitions to fire, once planned
    fired            INTEGER NOT NULL DEFAULT 0,
    skipped          INTEGER NOT NULL DEFAULT 0,
    incomplete       INTEGER NOT NULL DEFAULT 0,
    message          TEXT,              -- why nothing was found, or what failed
    cancel_requested TEXT,              -- {by, at} as JSON
    updated_at       TEXT NOT NULL,
    finished_at      TEXT
);
CREATE INDEX backfills_requested ON backfills (requested_at);
CREATE INDEX backfills_active ON backfills (requested_at) WHERE status IN ('pending', 'running');

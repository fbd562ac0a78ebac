-- 0001: the first schema of the eventflow state store (SQLite).
--
-- Conventions: JSON columns hold compact JSON text; datetime columns hold ISO-8601 text of
-- the instant in UTC with fixed microsecond precision ("2024-01-01T06:00:00.000000+00:00"),
-- so text order is time order and `due <= :now` compares correctly.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
);

-- The event log: every observed event once, with the dataset partitions it announced.
CREATE TABLE events (
    id          TEXT PRIMARY KEY,
    sensor      TEXT NOT NULL,
    key         TEXT,
    time        TEXT NOT NULL,
    position    TEXT NOT NULL,   -- JSON object
    payload     TEXT NOT NULL,   -- JSON
    attributes  TEXT NOT NULL,   -- JSON object
    datasets    TEXT NOT NULL,   -- JSON [[dataset, {var: value}], ...]
    received_at TEXT NOT NULL
);

-- Sensor checkpoints: one value per (sensor, cursor key).
CREATE TABLE cursors (
    sensor TEXT NOT NULL,
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,        -- JSON
    PRIMARY KEY (sensor, key)
) WITHOUT ROWID;

-- Rule state per partition key: MatchState.to_dict() as JSON, with queried fields copied out.
CREATE TABLE matches (
    rule       TEXT NOT NULL,
    key        TEXT NOT NULL,    -- canonical JSON of the partition key
    generation INTEGER NOT NULL,
    status     TEXT NOT NULL,    -- open | fired | expired
    state      TEXT NOT NULL,    -- JSON
    updated_at TEXT,
    PRIMARY KEY (rule, key)
);
CREATE INDEX matches_status ON matches (status, rule, key);

-- Runs: one per fire, unique by run_id = f(rule, key, generation).
CREATE TABLE runs (
    run_id       TEXT PRIMARY KEY,
    rule         TEXT NOT NULL,
    key          TEXT NOT NULL,
    partition    TEXT NOT NULL,  -- JSON object
    generation   INTEGER NOT NULL,
    status       TEXT NOT NULL,  -- pending | running | succeeded | failed
    attempt      INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    inputs       TEXT NOT NULL,  -- JSON [InputRef.to_dict(), ...]
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL,
    not_before   TEXT,
    started_at   TEXT,
    finished_at  TEXT,
    error        TEXT,
    output       TEXT NOT NULL DEFAULT '{}'  -- JSON object
);
CREATE INDEX runs_claim ON runs (status, created_at, run_id);
CREATE INDEX runs_created ON runs (created_at, run_id);
CREATE INDEX runs_rule ON runs (rule, created_at, run_id);

-- Durable timers: `within` windows, deadlines, batch max_wait.
CREATE TABLE timers (
    kind       TEXT NOT NULL,
    rule       TEXT NOT NULL,
    key        TEXT NOT NULL,
    generation INTEGER NOT NULL,
    due        TEXT NOT NULL,
    PRIMARY KEY (kind, rule, key, generation)
) WITHOUT ROWID;
CREATE INDEX timers_due ON timers (due);

-- Transactional outbox: completion events waiting for one publisher each.
CREATE TABLE outbox (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    publisher TEXT NOT NULL,
    event     TEXT NOT NULL      -- JSON: the CloudEvents envelope
);
CREATE INDEX outbox_publisher ON outbox (publisher, id);

-- Observations recorded in the store (eventflow emit, datasets produced by runs).
CREATE TABLE inbox (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    observation_sensor TEXT NOT NULL,
    dataset            TEXT NOT NULL,
    partition          TEXT NOT NULL,  -- JSON object
    position           TEXT NOT NULL,  -- JSON object
    payload            TEXT NOT NULL,  -- JSON
    created_at         TEXT NOT NULL
);

-- Observations that could not be processed; event_id is unique (first error kept).
CREATE TABLE deadletters (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    sensor   TEXT NOT NULL,
    position TEXT NOT NULL,      -- JSON object
    error    TEXT NOT NULL,
    excerpt  TEXT NOT NULL,
    time     TEXT NOT NULL
);

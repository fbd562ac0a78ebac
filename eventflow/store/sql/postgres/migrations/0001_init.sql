-- 0001: the first schema of the eventflow state store (PostgreSQL).
--
-- The same tables and encodings as the SQLite store (eventflow.store._codec): JSON columns
-- hold compact JSON text and datetime columns ISO-8601 text of the UTC instant with fixed
-- microsecond precision, so text order is time order, and both stores round-trip values
-- identically. PostgreSQL adds what several workers sharing one store need: a lease row per
-- worker (`workers`), the worker that claimed each running run (`runs.worker`), and a
-- version per match row, checked at commit (optimistic concurrency between engines).
-- Text columns compare with COLLATE "C" (byte order), like SQLite.

CREATE TABLE IF NOT EXISTS schema_migrations (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
);

-- The event log: every observed event once, with the dataset partitions it announced, and
-- a sequence number in write order (replay pages through it).
CREATE TABLE events (
    seq         BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    id          TEXT COLLATE "C" PRIMARY KEY,
    sensor      TEXT NOT NULL,
    key         TEXT,
    time        TEXT NOT NULL,
    position    TEXT NOT NULL,   -- JSON object
    payload     TEXT NOT NULL,   -- JSON
    attributes  TEXT NOT NULL,   -- JSON object
    datasets    TEXT NOT NULL,   -- JSON [[dataset, {var: value}], ...]
    received_at TEXT COLLATE "C" NOT NULL
);
CREATE INDEX events_received ON events (received_at);

-- Sensor checkpoints: one value per (sensor, cursor key).
CREATE TABLE cursors (
    sensor TEXT COLLATE "C" NOT NULL,
    key    TEXT COLLATE "C" NOT NULL,
    value  TEXT NOT NULL,        -- JSON
    PRIMARY KEY (sensor, key)
);

-- Rule state per partition key: MatchState.to_dict() as JSON, with queried fields copied
-- out. `version` grows by one with every write; a commit whose engine read an older
-- version is refused (StoreConflict) and re-evaluated.
CREATE TABLE matches (
    rule       TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,    -- canonical JSON of the partition key
    generation INTEGER NOT NULL,
    status     TEXT COLLATE "C" NOT NULL,    -- open | fired | expired
    state      TEXT NOT NULL,                -- JSON
    updated_at TEXT,
    version    BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (rule, key)
);
CREATE INDEX matches_status ON matches (status, rule, key);

-- Workers sharing the store: a lease each, renewed by a heartbeat (database clock).
CREATE TABLE workers (
    id           TEXT COLLATE "C" PRIMARY KEY,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    heartbeat_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    lease_until  TIMESTAMPTZ NOT NULL
);

-- Runs: one per fire, unique by run_id = f(rule, key, generation).
CREATE TABLE runs (
    run_id       TEXT COLLATE "C" PRIMARY KEY,
    rule         TEXT COLLATE "C" NOT NULL,
    key          TEXT COLLATE "C" NOT NULL,
    partition    TEXT NOT NULL,  -- JSON object
    generation   INTEGER NOT NULL,
    status       TEXT COLLATE "C" NOT NULL,  -- pending | running | succeeded | failed
    attempt      INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    inputs       TEXT NOT NULL,  -- JSON [InputRef.to_dict(), ...]
    created_at   TEXT COLLATE "C" NOT NULL,
    updated_at   TEXT NOT NULL,
    not_before   TEXT COLLATE "C",
    started_at   TEXT,
    finished_at  TEXT,
    error        TEXT,
    output       TEXT NOT NULL DEFAULT '{}',  -- JSON object
    worker       TEXT COLLATE "C"             -- the worker running it (status running)
);
CREATE INDEX runs_claim ON runs (status, created_at, run_id);
CREATE INDEX runs_created ON runs (created_at, run_id);
CREATE INDEX runs_rule ON runs (rule, created_at, run_id);
CREATE INDEX runs_worker ON runs (worker) WHERE status = 'running';

-- Durable timers: `within` windows, deadlines, batch max_wait.
CREATE TABLE timers (
    kind       TEXT COLLATE "C" NOT NULL,
    rule       TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    generation INTEGER NOT NULL,
    due        TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (kind, rule, key, generation)
);
CREATE INDEX timers_due ON timers (due);

-- Transactional outbox: completion events waiting for one publisher each.
CREATE TABLE outbox (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    publisher TEXT COLLATE "C" NOT NULL,
    event     TEXT NOT NULL      -- JSON: the CloudEvents envelope
);
CREATE INDEX outbox_publisher ON outbox (publisher, id);

-- Observations recorded in the store (eventflow emit, datasets produced by runs).
CREATE TABLE inbox (
    id                 BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    observation_sensor TEXT NOT NULL,
    dataset            TEXT NOT NULL,
    partition          TEXT NOT NULL,  -- JSON object
    position           TEXT NOT NULL,  -- JSON object
    payload            TEXT NOT NULL,  -- JSON
    created_at         TEXT NOT NULL
);

-- Observations that could not be processed; event_id is unique (first error kept).
CREATE TABLE deadletters (
    seq      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT COLLATE "C" NOT NULL UNIQUE,
    sensor   TEXT NOT NULL,
    position TEXT NOT NULL,      -- JSON object
    error    TEXT NOT NULL,
    excerpt  TEXT NOT NULL,
    time     TEXT NOT NULL
);

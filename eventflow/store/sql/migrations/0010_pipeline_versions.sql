-- 0010: pipeline versions and environments. The store's identity (a random id made when
-- the store is first started, with the environment and pipeline that started it: another
-- environment is refused), and every start of `eventflow run` with the version it ran, its
-- canonical definition (what `eventflow plan` compares a file with) and the plan lines it
-- was allowed to apply.

CREATE TABLE store_identity (
    singleton   INTEGER PRIMARY KEY CHECK (singleton = 1),
    store_id    TEXT NOT NULL,
    environment TEXT NOT NULL,
    pipeline    TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE pipeline_starts (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    version     TEXT NOT NULL,
    pipeline    TEXT NOT NULL,
    environment TEXT NOT NULL,
    worker      TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    git_commit  TEXT,
    git_dirty   INTEGER,               -- 0/1, NULL outside git
    rules       TEXT NOT NULL,         -- JSON {rule: rule version}
    definition  TEXT NOT NULL,         -- JSON, canonical (eventflow.versions)
    accepted    TEXT NOT NULL          -- JSON [plan line, ...]
);
CREATE INDEX pipeline_starts_version ON pipeline_starts (version);

-- 0009: produced partitions held back by their rule's data-quality checks (`checks:`), one
-- row per run: pending | running | passed | blocked | overridden, the last evaluation's
-- results, the operators' audit trail, and the pipeline version of the producing run.

CREATE TABLE check_gates (
    run_id           TEXT COLLATE "C" PRIMARY KEY,
    rule             TEXT COLLATE "C" NOT NULL,
    dataset          TEXT COLLATE "C" NOT NULL,
    key              TEXT COLLATE "C" NOT NULL,
    partition        TEXT NOT NULL,  -- JSON object
    status           TEXT COLLATE "C" NOT NULL,
    attempt          INTEGER NOT NULL DEFAULT 0,
    payload          TEXT NOT NULL,  -- JSON: what the announcement carries
    results          TEXT NOT NULL DEFAULT '[]',  -- JSON [{check, severity, passed, ...}]
    actions          TEXT NOT NULL DEFAULT '[]',  -- JSON [{action, by, at, reason}]
    pipeline_version TEXT,
    created_at       TEXT COLLATE "C" NOT NULL,
    updated_at       TEXT NOT NULL
);
CREATE INDEX check_gates_status ON check_gates (status, created_at);
CREATE INDEX check_gates_dataset ON check_gates (dataset, key, created_at);

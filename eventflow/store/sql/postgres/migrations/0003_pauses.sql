-- 0003: rules and sensors an operator paused (`eventflow pause`, the API, the page), and the
-- audit trail of every pause and resume: who asked, when, why, and whether it changed anything.

-- What is paused now: one row per paused rule or sensor. The dispatcher does not claim the
-- runs of a paused rule (they wait, pending, with their fire keys); a paused sensor reads
-- nothing until it is resumed.
CREATE TABLE pauses (
    kind      TEXT NOT NULL CHECK (kind IN ('rule', 'sensor')),
    name      TEXT COLLATE "C" NOT NULL,
    paused_by TEXT NOT NULL,
    reason    TEXT,
    since     TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);

-- Every pause and resume asked for, in order (append-only).
CREATE TABLE pause_actions (
    seq     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind    TEXT NOT NULL,
    name    TEXT NOT NULL,
    action  TEXT NOT NULL CHECK (action IN ('pause', 'resume')),
    actor   TEXT NOT NULL,
    reason  TEXT,
    at      TEXT NOT NULL,
    changed BOOLEAN NOT NULL  -- false: it was paused (resumed) already
);
CREATE INDEX pause_actions_name ON pause_actions (kind, name, seq);

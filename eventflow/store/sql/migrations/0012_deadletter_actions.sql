-- 0012: dead letters an operator can redrive or discard. `message` keeps the whole
-- observation (JSON {key, time, payload, attributes}; NULL when only the excerpt is kept),
-- `status` is open | redriven | discarded, `requested_by`/`requested_at` a redrive the
-- running pipeline has not carried out yet, `history` the audit trail
-- (JSON [{action, by, at, error?}]).

ALTER TABLE deadletters ADD COLUMN message TEXT;
ALTER TABLE deadletters ADD COLUMN status TEXT NOT NULL DEFAULT 'open';
ALTER TABLE deadletters ADD COLUMN requested_by TEXT;
ALTER TABLE deadletters ADD COLUMN requested_at TEXT;
ALTER TABLE deadletters ADD COLUMN history TEXT NOT NULL DEFAULT '[]';
CREATE INDEX deadletters_status ON deadletters (status, seq);
CREATE INDEX deadletters_requested ON deadletters (seq) WHERE requested_at IS NOT NULL;

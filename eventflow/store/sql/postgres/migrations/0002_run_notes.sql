-- 0002: what a task runner notes about a run while an attempt is under way (a command's
-- process group, a hand-off's downstream run), kept for the next attempt and shown by `runs`;
-- and an operator's request to cancel a run.

ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT '{}';  -- JSON object
-- An operator asked to cancel the run ({by, at} as JSON); the dispatcher acts on it.
ALTER TABLE runs ADD COLUMN cancel_requested TEXT;
CREATE INDEX runs_cancel_requested ON runs (run_id) WHERE cancel_requested IS NOT NULL;

-- 0002: what a task runner notes about a run while an attempt is under way (a command's
-- process group, a hand-off's downstream run), kept for the next attempt and shown by `runs`.

ALTER TABLE runs ADD COLUMN notes TEXT NOT NULL DEFAULT '{}';  -- JSON object

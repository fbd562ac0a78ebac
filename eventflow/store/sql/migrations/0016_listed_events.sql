-- 0016: events a backfill logged from a sensor's listing, not yet observed live. The live
-- intake takes such an event as new (so the pipeline's other rules get it, as they would
-- have without the backfill) and clears the mark; the backfilled rule has it already.

ALTER TABLE events ADD COLUMN listed INTEGER NOT NULL DEFAULT 0;

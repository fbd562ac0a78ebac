-- 0015: runs by partition (rule, key): a backfill decides each partition from its runs, and
-- without this index every such look scanned the whole runs table.

CREATE INDEX runs_partition ON runs (rule, key, generation);

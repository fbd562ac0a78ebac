-- 0003: the event log by time of receipt, for `eventflow replay --since` and retention
-- (`retention: {events: 30d}` deletes the oldest events first). Events are appended with
-- the time of their batch, so the index grows at its right edge.

CREATE INDEX events_received ON events (received_at);

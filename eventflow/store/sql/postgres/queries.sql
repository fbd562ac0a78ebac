-- The named SQL statements of the PostgreSQL state store, loaded by
-- eventflow.store._postgres_sql (same file format as ../queries.sql).
--
-- Writes on the hot path take positional %s parameters in the column order of the row
-- tuples built by eventflow.store._codec; the other statements take %(named)s parameters.
-- Sets of ids and columns of rows are passed as arrays, with binary placeholders (%b):
-- psycopg escapes the elements of a text-format array one by one in Python.

-- name: insert_events
-- Log observed events; a second event with the same id is ignored (EventRow order), except
-- that it clears the mark of one a backfill logged from a listing (now observed live).
-- Returns the ids inserted or unmarked (the store checks them against what it reported
-- unseen).
INSERT INTO events
    (id, sensor, key, time, position, payload, attributes, datasets, received_at)
SELECT * FROM unnest(
    %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
    %b::text[], %b::text[])
ON CONFLICT (id) DO UPDATE SET listed = false WHERE events.listed
RETURNING id;

-- name: insert_listed_events
-- Log the events a backfill found by listing a source, marked as not observed live; one
-- already logged stays as it is (EventRow order).
INSERT INTO events
    (id, sensor, key, time, position, payload, attributes, datasets, received_at, listed)
SELECT *, true FROM unnest(
    %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
    %b::text[], %b::text[])
ON CONFLICT (id) DO NOTHING;

-- name: seen_events
-- The ids among the array %(ids)s that were observed (logged and not only listed by a
-- backfill) or dead-lettered.
SELECT id FROM events WHERE id = ANY(%(ids)b::text[]) AND NOT listed
UNION
SELECT event_id FROM deadletters WHERE event_id = ANY(%(ids)b::text[]);

-- name: get_events
-- Logged events whose id is in the array %(ids)s.
SELECT id, sensor, key, time, position, payload, attributes, datasets, received_at
FROM events
WHERE id = ANY(%(ids)b::text[]);

-- name: read_events
-- A page of the event log in write order after sequence %(after)s, received at or after
-- %(since)s (NULL: any time), of the sensors in the array %(sensors)s (NULL: all).
SELECT seq, id, sensor, key, time, position, payload, attributes, datasets, received_at
FROM events
WHERE seq > %(after)s
  AND (%(since)s::text IS NULL OR received_at >= %(since)s)
  AND (%(sensors)b::text[] IS NULL OR sensor = ANY(%(sensors)b::text[]))
ORDER BY seq
LIMIT %(limit)s;

-- name: list_events
-- The event log newest first, of %(sensor)s, received at or after %(since)s and before
-- %(until)s, announcing %(dataset)s and (the JSON object %(partition)s) a partition with
-- those values; logged before the event %(after)s (keyset).
SELECT id, sensor, key, time, position, payload, attributes, datasets, received_at
FROM events
WHERE (%(sensor)s::text IS NULL OR sensor = %(sensor)s)
  AND (%(since)s::text IS NULL OR received_at >= %(since)s)
  AND (%(until)s::text IS NULL OR received_at < %(until)s)
  AND ((%(dataset)s::text IS NULL AND %(partition)s::text IS NULL) OR EXISTS (
        SELECT 1 FROM jsonb_array_elements(events.datasets::jsonb) AS d
        WHERE (%(dataset)s::text IS NULL OR d->>0 = %(dataset)s)
          AND (%(partition)s::text IS NULL OR d->1 @> %(partition)s::jsonb)))
  AND (%(after)s::text IS NULL OR seq < (SELECT seq FROM events WHERE id = %(after)s))
ORDER BY seq DESC
LIMIT %(limit)s;

-- name: count_events
-- How many events list_events finds with the same filters (no cursor, no limit).
SELECT count(*) FROM events
WHERE (%(sensor)s::text IS NULL OR sensor = %(sensor)s)
  AND (%(since)s::text IS NULL OR received_at >= %(since)s)
  AND (%(until)s::text IS NULL OR received_at < %(until)s)
  AND ((%(dataset)s::text IS NULL AND %(partition)s::text IS NULL) OR EXISTS (
        SELECT 1 FROM jsonb_array_elements(events.datasets::jsonb) AS d
        WHERE (%(dataset)s::text IS NULL OR d->>0 = %(dataset)s)
          AND (%(partition)s::text IS NULL OR d->1 @> %(partition)s::jsonb)));

-- name: prune_events
-- Delete up to %(limit)s of the oldest events received before %(before)s (retention).
DELETE FROM events WHERE seq IN (
    SELECT seq FROM events WHERE received_at < %(before)s ORDER BY received_at
    LIMIT %(limit)s
);

-- name: upsert_cursors
-- Write sensor checkpoints (CursorRow order).
INSERT INTO cursors (sensor, key, value) VALUES (%s, %s, %s)
ON CONFLICT (sensor, key) DO UPDATE SET value = excluded.value;

-- name: load_cursors
-- All checkpoints of one sensor.
SELECT key, value FROM cursors WHERE sensor = %(sensor)s ORDER BY key;

-- name: delete_cursor
-- Forget one checkpoint entry (sensor, key).
DELETE FROM cursors WHERE sensor = %s AND key = %s;

-- name: insert_matches
-- Create rule states that the engine read as absent (one array per MatchRow column);
-- returns the keys written: a key missing was created by another worker first.
INSERT INTO matches (rule, key, generation, status, state, updated_at, version)
SELECT rule, key, generation, status, state, updated_at, 1
FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::text[])
    AS u (rule, key, generation, status, state, updated_at)
ON CONFLICT (rule, key) DO NOTHING
RETURNING rule, key, version;

-- name: update_matches
-- Replace rule states still at the version the engine read (one array per MatchRow column,
-- then the expected versions); returns the keys written with their new version: a key
-- missing was changed by another worker meanwhile.
UPDATE matches AS m SET
    generation = u.generation, status = u.status, state = u.state,
    updated_at = u.updated_at, version = m.version + 1
FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::text[],
            %b::bigint[])
    AS u (rule, key, generation, status, state, updated_at, expected)
WHERE m.rule = u.rule AND m.key = u.key AND m.version = u.expected
RETURNING m.rule, m.key, m.version;

-- name: upsert_matches
-- Write rule states without checking versions (one array per MatchRow column): for states
-- the engine did not read through this store (tests writing states directly).
INSERT INTO matches (rule, key, generation, status, state, updated_at, version)
SELECT rule, key, generation, status, state, updated_at, 1
FROM unnest(%b::text[], %b::text[], %b::int[], %b::text[], %b::text[], %b::text[])
    AS u (rule, key, generation, status, state, updated_at)
ON CONFLICT (rule, key) DO UPDATE SET
    generation = excluded.generation,
    status = excluded.status,
    state = excluded.state,
    updated_at = excluded.updated_at,
    version = matches.version + 1
RETURNING rule, key, version;

-- name: get_matches
-- Rule states and their versions for the pairs of the arrays %(rules)s and %(keys)s.
SELECT m.rule, m.key, m.state, m.version
FROM unnest(%(rules)b::text[], %(keys)b::text[]) AS k (rule, key)
JOIN matches AS m ON m.rule = k.rule AND m.key = k.key;

-- name: list_matches
-- Rule states by rule and key, of one rule, status or key; partial: not fired; changed in
-- [since, until); after (after_rule, after_key) (keyset); NULL limit = all.
SELECT state FROM matches
WHERE (%(rule)s::text IS NULL OR rule = %(rule)s) AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (NOT %(partial)s OR status <> 'fired') AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(since)s::text IS NULL OR updated_at >= %(since)s)
  AND (%(until)s::text IS NULL OR updated_at < %(until)s)
  AND (%(after_rule)s::text IS NULL OR (rule, key) > (%(after_rule)s, %(after_key)s::text))
ORDER BY rule, key
LIMIT %(limit)s;

-- name: count_matches
-- How many matches list_matches finds with the same filters (no cursor, no limit).
SELECT count(*) FROM matches
WHERE (%(rule)s::text IS NULL OR rule = %(rule)s) AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (NOT %(partial)s OR status <> 'fired') AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(since)s::text IS NULL OR updated_at >= %(since)s)
  AND (%(until)s::text IS NULL OR updated_at < %(until)s);

-- name: get_match
-- One rule's state for one partition key.
SELECT state FROM matches WHERE rule = %(rule)s AND key = %(key)s;

-- name: match_counts
-- How many matches each rule has in each status.
SELECT rule, status, count(*) FROM matches GROUP BY rule, status;

-- name: insert_runs
-- Create runs; a second run with the same run_id is ignored (RunRow order).
INSERT INTO runs
    (run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
     created_at, updated_at, not_before, started_at, finished_at, error, output, notes,
     cancel_requested)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (run_id) DO NOTHING;

-- name: update_runs
-- Write a run's new status (RunUpdateRow order, with the status again before the run id,
-- and the attempt after it); a run that leaves `running` has no worker. The result of an
-- older attempt is ignored: a worker whose lease expired finishing a run that another
-- worker has taken back and started again does not overwrite the newer attempt.
UPDATE runs SET
    status = %s, attempt = %s, updated_at = %s, not_before = %s, finished_at = %s, error = %s,
    output = %s, worker = CASE WHEN %s = 'running' THEN worker END
WHERE run_id = %s AND attempt <= %s;

-- name: note_runs
-- Merge facts into a run's notes (top-level keys noted again are replaced).
UPDATE runs SET notes = (notes::jsonb || %s::jsonb)::text WHERE run_id = %s;

-- name: claim_candidates
-- Pending runs that are due at %(now)s, oldest first (a paused rule's wait: held), locked; rows locked by another
-- worker's claim are skipped (they are being claimed there).
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE status = 'pending' AND cancel_requested IS NULL
  AND (not_before IS NULL OR not_before <= %(now)s)
  AND split_part(rule, ':', 1) NOT IN (SELECT name FROM pauses WHERE kind = 'rule')
ORDER BY created_at, run_id
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: running_per_rule
-- How many runs each rule has running (on every worker).
SELECT rule, count(*) FROM runs WHERE status = 'running' GROUP BY rule;

-- name: claim_run
-- Start one attempt of a pending run on a worker (started_at, updated_at, worker, run_id).
UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = %s, updated_at = %s,
    worker = %s
WHERE run_id = %s AND status = 'pending';

-- name: recover_running
-- Put back to pending the running runs of workers whose lease has expired and of no known
-- worker (a live worker's runs are left alone); returns their ids.
UPDATE runs SET status = 'pending', updated_at = %(now)s, worker = NULL
WHERE status = 'running'
  AND (worker IS NULL OR worker NOT IN (SELECT id FROM workers WHERE lease_until > now()))
RETURNING run_id, created_at;

-- name: next_run_due
-- The earliest not_before of a pending run, %(min)s for a pending run without one (the runs
-- of a paused rule wait for its resume, not for a time).
SELECT min(coalesce(not_before, %(min)s)) FROM runs WHERE status = 'pending'
  AND split_part(rule, ':', 1) NOT IN (SELECT name FROM pauses WHERE kind = 'rule');

-- name: get_run
-- One run by id.
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE run_id = %(run_id)s;

-- name: partition_runs
-- Every run of one partition of a rule, by generation (the runs_partition index).
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE rule = %(rule)s AND key = %(key)s
ORDER BY generation, run_id;

-- name: list_runs
-- Runs, optionally of one rule and/or one status, newest first.
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE (%(rule)s::text IS NULL OR rule = %(rule)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(since)s::text IS NULL OR created_at >= %(since)s)
  AND (%(until)s::text IS NULL OR created_at < %(until)s)
  AND (%(before_at)s::text IS NULL
       OR (created_at, run_id) < (%(before_at)s::text, %(before_id)s::text))
ORDER BY created_at DESC, run_id DESC
LIMIT %(limit)s;

-- name: count_runs
-- How many runs list_runs finds with the same filters (no cursor, no limit).
SELECT count(*) FROM runs
WHERE (%(rule)s::text IS NULL OR rule = %(rule)s)
  AND (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(since)s::text IS NULL OR created_at >= %(since)s)
  AND (%(until)s::text IS NULL OR created_at < %(until)s);

-- name: unfinished_runs
-- How many runs of %(rule)s are pending or running (through the claim index, not a scan).
SELECT count(*) FROM runs WHERE status IN ('pending', 'running') AND rule = %(rule)s;

-- name: retry_run
-- Put a failed or cancelled run back to pending with at least one more allowed attempt.
UPDATE runs SET
    status = 'pending', max_attempts = greatest(max_attempts, attempt + 1), not_before = NULL,
    finished_at = NULL, error = NULL, output = '{}', updated_at = %(now)s,
    cancel_requested = NULL
WHERE run_id = %(run_id)s AND status IN ('failed', 'cancelled');

-- name: request_cancel
-- Ask for a pending or running run to be cancelled (the request as JSON, run id).
UPDATE runs SET cancel_requested = coalesce(cancel_requested, %(request)s)
WHERE run_id = %(run_id)s AND status IN ('pending', 'running');

-- name: cancel_requests
-- Pending and running runs an operator asked to cancel.
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE cancel_requested IS NOT NULL AND status IN ('pending', 'running');

-- name: insert_pause
-- Pause a rule or sensor; one already paused keeps its first pause (who, why, since).
INSERT INTO pauses (kind, name, paused_by, reason, since)
VALUES (%(kind)s, %(name)s, %(actor)s, %(reason)s, %(at)s)
ON CONFLICT (kind, name) DO NOTHING;

-- name: delete_pause
-- Resume a rule or sensor.
DELETE FROM pauses WHERE kind = %(kind)s AND name = %(name)s;

-- name: record_pause_action
-- Audit one pause or resume (who, when, why, whether it changed anything).
INSERT INTO pause_actions (kind, name, action, actor, reason, at, changed)
VALUES (%(kind)s, %(name)s, %(action)s, %(actor)s, %(reason)s, %(at)s, %(changed)s);

-- name: list_pauses
-- What is paused now, by kind and name.
SELECT kind, name, paused_by, reason, since FROM pauses ORDER BY kind, name;

-- name: list_pause_actions
-- The newest pauses and resumes first.
SELECT kind, name, action, actor, reason, at, changed FROM pause_actions
ORDER BY seq DESC
LIMIT %(limit)s;

-- name: upsert_timers
-- Schedule timers; an existing timer gets the new due time (TimerRow order).
INSERT INTO timers (kind, rule, key, generation, due) VALUES (%s, %s, %s, %s, %s)
ON CONFLICT (kind, rule, key, generation) DO UPDATE SET due = excluded.due;

-- name: delete_timer
-- Cancel one timer (kind, rule, key, generation).
DELETE FROM timers WHERE kind = %s AND rule = %s AND key = %s AND generation = %s;

-- name: due_timers
-- Timers due at %(now)s, earliest first.
SELECT kind, rule, key, generation, due FROM timers
WHERE due <= %(now)s
ORDER BY due, kind, rule, key, generation
LIMIT %(limit)s;

-- name: next_timer_due
-- The earliest due time of any timer.
SELECT min(due) FROM timers;

-- name: insert_outbox
-- Queue completion events for publishers (publisher, event).
INSERT INTO outbox (publisher, event) VALUES (%s, %s);

-- name: fetch_outbox
-- The oldest events waiting for one publisher.
SELECT id, publisher, event FROM outbox WHERE publisher = %(publisher)s ORDER BY id
LIMIT %(limit)s;

-- name: delete_outbox
-- Forget delivered events (the array %(ids)s).
DELETE FROM outbox WHERE id = ANY(%(ids)b::bigint[]);

-- name: insert_inbox
-- Record observations (InboxRow order without id).
INSERT INTO inbox (observation_sensor, dataset, partition, position, payload, created_at)
VALUES (%s, %s, %s, %s, %s, %s);

-- name: add_inbox
-- Record one observation (InboxRow order without id) and return its id.
INSERT INTO inbox (observation_sensor, dataset, partition, position, payload, created_at)
VALUES (%s, %s, %s, %s, %s, %s)
RETURNING id;

-- name: fetch_inbox
-- The oldest recorded observations.
SELECT id, observation_sensor, dataset, partition, position, payload, created_at
FROM inbox
ORDER BY id
LIMIT %(limit)s;

-- name: delete_inbox
-- Forget one consumed observation (id).
DELETE FROM inbox WHERE id = %s;

-- name: insert_deadletters
-- Keep observations that could not be processed; the first per event id wins. Returns the
-- ids actually inserted.
INSERT INTO deadletters (
    event_id, sensor, position, error, excerpt, time,
    message, status, requested_by, requested_at, history
)
SELECT * FROM unnest(
    %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
    %b::text[], %b::text[], %b::text[], %b::text[], %b::text[]
)
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id;

-- name: list_deadletters
-- Dead letters, most recently recorded first; recorded before the one of :after (keyset).
SELECT event_id, sensor, position, error, excerpt, time,
       message, status, requested_by, requested_at, history
FROM deadletters
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(sensor)s::text IS NULL OR sensor = %(sensor)s)
  AND (%(since)s::text IS NULL OR time >= %(since)s)
  AND (%(until)s::text IS NULL OR time < %(until)s)
  AND (%(after)s::text IS NULL
       OR seq < (SELECT seq FROM deadletters WHERE event_id = %(after)s))
ORDER BY seq DESC
LIMIT %(limit)s;

-- name: count_deadletters
-- How many dead letters list_deadletters finds with the same filters (no cursor, no limit).
SELECT count(*) FROM deadletters
WHERE (%(status)s::text IS NULL OR status = %(status)s)
  AND (%(sensor)s::text IS NULL OR sensor = %(sensor)s)
  AND (%(since)s::text IS NULL OR time >= %(since)s)
  AND (%(until)s::text IS NULL OR time < %(until)s);

-- name: get_deadletter
-- The dead letter of event id %(event_id)s.
SELECT event_id, sensor, position, error, excerpt, time,
       message, status, requested_by, requested_at, history
FROM deadletters
WHERE event_id = %(event_id)s;

-- name: request_redrive
-- Ask the running pipeline to redrive an open dead letter that kept its message and has no
-- redrive requested yet; %(entry)s (JSON) is appended to its history.
UPDATE deadletters
SET requested_by = %(by)s, requested_at = %(at)s,
    history = (history::jsonb || jsonb_build_array(%(entry)s::jsonb))::text
WHERE event_id = %(event_id)s AND status = 'open' AND message IS NOT NULL
  AND requested_at IS NULL;

-- name: discard_deadletter
-- Mark an open dead letter discarded (a redrive requested of it is withdrawn).
UPDATE deadletters
SET status = 'discarded', requested_by = NULL, requested_at = NULL,
    history = (history::jsonb || jsonb_build_array(%(entry)s::jsonb))::text
WHERE event_id = %(event_id)s AND status = 'open';

-- name: fetch_redrives
-- The dead letters whose redrive is requested, oldest first.
SELECT event_id, sensor, position, error, excerpt, time,
       message, status, requested_by, requested_at, history
FROM deadletters
WHERE requested_at IS NOT NULL AND status = 'open'
ORDER BY seq
LIMIT %(limit)s;

-- name: redrive_outcome
-- What a redrive did (status, error, history entry), only while it is still requested.
UPDATE deadletters
SET status = %(status)s, error = %(error)s, requested_by = NULL, requested_at = NULL,
    history = (history::jsonb || jsonb_build_array(%(entry)s::jsonb))::text
WHERE event_id = %(event_id)s AND status = 'open' AND requested_at IS NOT NULL;

-- name: counts
-- The figures shown by `eventflow status`, in the order of eventflow.store.COUNT_KEYS.
SELECT
    (SELECT count(*) FROM runs WHERE status = 'pending'),
    (SELECT count(*) FROM runs WHERE status = 'running'),
    (SELECT count(*) FROM runs WHERE status = 'succeeded'),
    (SELECT count(*) FROM runs WHERE status = 'failed'),
    (SELECT count(*) FROM runs WHERE status = 'cancelled'),
    (SELECT count(*) FROM matches WHERE status = 'open'),
    (SELECT count(*) FROM matches WHERE status = 'fired'),
    (SELECT count(*) FROM matches WHERE status = 'expired'),
    (SELECT count(*) FROM events),
    (SELECT count(*) FROM outbox),
    (SELECT count(*) FROM timers),
    (SELECT count(*) FROM inbox),
    (SELECT count(*) FROM deadletters WHERE status = 'open');

-- name: register_worker
-- Start (or renew) this worker's lease of %(lease)s seconds, by the database's clock.
INSERT INTO workers (id, host, pid, lease_until)
VALUES (%(id)s, %(host)s, %(pid)s, now() + make_interval(secs => %(lease)s))
ON CONFLICT (id) DO UPDATE SET
    heartbeat_at = now(), lease_until = excluded.lease_until;

-- name: renew_worker
-- Extend this worker's lease; returns nothing when the lease expired and was taken away.
UPDATE workers SET heartbeat_at = now(), lease_until = now() + make_interval(secs => %(lease)s)
WHERE id = %(id)s AND lease_until > now()
RETURNING id;

-- name: forget_worker
-- A worker that stops cleanly gives up its lease.
DELETE FROM workers WHERE id = %(id)s;

-- name: reap_workers
-- Forget workers whose lease expired (their running runs go back to pending first).
DELETE FROM workers WHERE lease_until < now() - interval '1 hour';

-- name: beat_worker
-- Write a worker's heartbeat row (WorkerBeat): who it is, its leases, its sensors' health.
INSERT INTO worker_health
    (worker, host, pid, started_at, heartbeat_at, beat_seconds, leases, sensors, stopped_at)
VALUES (%(worker)s, %(host)s, %(pid)s, %(started_at)s, %(heartbeat_at)s, %(beat_seconds)s,
        %(leases)s, %(sensors)s, %(stopped_at)s)
ON CONFLICT (worker) DO UPDATE SET
    heartbeat_at = excluded.heartbeat_at, beat_seconds = excluded.beat_seconds,
    leases = excluded.leases, sensors = excluded.sensors, stopped_at = excluded.stopped_at;

-- name: prune_workers
-- Forget heartbeat rows older than the cutoff (workers long gone).
DELETE FROM worker_health WHERE heartbeat_at < %(before)s;

-- name: list_workers
-- Every worker's last heartbeat, the newest first.
SELECT worker, host, pid, started_at, heartbeat_at, beat_seconds, leases, sensors, stopped_at
FROM worker_health ORDER BY heartbeat_at DESC, worker;

-- name: has_migrations_table
-- Whether the schema_migrations table exists (an empty database has none). Read from
-- pg_tables with the statement's snapshot: to_regclass() may answer from a catalog
-- snapshot older than the migration another worker committed while this one waited.
SELECT EXISTS (
    SELECT 1 FROM pg_catalog.pg_tables
    WHERE schemaname = current_schema() AND tablename = 'schema_migrations'
);

-- name: applied_migrations
-- The schema versions applied to this database.
SELECT version FROM schema_migrations ORDER BY version;

-- name: record_migration
-- Remember that a schema version was applied.
INSERT INTO schema_migrations (version, applied_at) VALUES (%(version)s, %(applied_at)s);

-- name: upsert_gates
-- Write check gates whole (GateRow order).
INSERT INTO check_gates (run_id, rule, dataset, key, partition, status, attempt, payload,
    results, actions, pipeline_version, created_at, updated_at)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (run_id) DO UPDATE SET
    rule = excluded.rule, dataset = excluded.dataset, key = excluded.key,
    partition = excluded.partition, status = excluded.status, attempt = excluded.attempt,
    payload = excluded.payload, results = excluded.results, actions = excluded.actions,
    pipeline_version = excluded.pipeline_version, updated_at = excluded.updated_at;

-- name: list_gates
-- Check gates, newest first, filtered (a null parameter matches any).
SELECT run_id, rule, dataset, key, partition, status, attempt, payload, results, actions,
    pipeline_version, created_at, updated_at
FROM check_gates
WHERE (%(rule)s::text IS NULL OR rule = %(rule)s) AND (%(dataset)s::text IS NULL OR dataset = %(dataset)s)
    AND (%(key)s::text IS NULL OR key = %(key)s) AND (%(status)s::text IS NULL OR status = %(status)s)
    AND (%(run_id)s::text IS NULL OR run_id = %(run_id)s)
    AND (%(run_ids)s::text IS NULL OR run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb)))
ORDER BY created_at DESC, run_id DESC
LIMIT %(limit)s;

-- name: lock_gate
-- One check gate, its row locked until the transaction ends: an operator's action and a
-- checker's result are each decided on the gate as it is, never on a copy read before.
SELECT run_id, rule, dataset, key, partition, status, attempt, payload, results, actions,
    pipeline_version, created_at, updated_at
FROM check_gates
WHERE run_id = %(run_id)s
FOR UPDATE;

-- name: claim_gates
-- Claim up to %(limit)s gates to check for %(worker)s until %(until)s, oldest first: the
-- pending ones and the running ones whose claim expired (their worker died or stalled).
-- SKIP LOCKED: a gate another worker is claiming at this moment is neither waited for nor
-- claimed twice. Returns each claimed gate (GateRow order) and its status before.
UPDATE check_gates AS g
SET status = 'running', attempt = g.attempt + 1, claimed_by = %(worker)s,
    claim_until = %(until)s, updated_at = %(now)s
FROM (
    SELECT run_id, status FROM check_gates
    WHERE status = 'pending'
       OR (status = 'running' AND (claim_until IS NULL OR claim_until < %(now)s))
    ORDER BY created_at, run_id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
) AS old
WHERE g.run_id = old.run_id
RETURNING g.run_id, g.rule, g.dataset, g.key, g.partition, g.status, g.attempt, g.payload,
    g.results, g.actions, g.pipeline_version, g.created_at, g.updated_at, old.status;

-- name: renew_gates
-- Extend %(worker)s's claims of the running gates %(run_ids)s (a JSON array) to %(until)s;
-- returns the ids it still holds.
UPDATE check_gates SET claim_until = %(until)s
WHERE status = 'running' AND claimed_by = %(worker)s
    AND run_id IN (SELECT jsonb_array_elements_text(%(run_ids)s::jsonb))
RETURNING run_id;

-- name: claim_identity
-- Make the store's identity when it has none (the first start); a later one is ignored.
INSERT INTO store_identity (singleton, store_id, environment, pipeline, created_at)
VALUES (1, %s, %s, %s, %s) ON CONFLICT (singleton) DO NOTHING;

-- name: get_identity
-- The store's identity, if it was ever started.
SELECT store_id, environment, pipeline, created_at FROM store_identity WHERE singleton = 1;

-- name: insert_start
-- Record a start of `eventflow run` (VersionStartRow order).
INSERT INTO pipeline_starts
    (version, pipeline, environment, worker, started_at, git_commit, git_dirty, rules,
     definition, accepted)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s);

-- name: list_starts
-- The newest %(limit)s starts before start %(before)s (all when null), newest first.
SELECT seq, version, pipeline, environment, worker, started_at, git_commit, git_dirty, rules,
       definition, accepted
FROM pipeline_starts WHERE %(before)s::bigint IS NULL OR seq < %(before)s::bigint
ORDER BY seq DESC LIMIT %(limit)s;

-- name: count_starts
SELECT count(*) FROM pipeline_starts;

-- name: save_backfill
-- Insert a backfill request, or record its status and progress (never its request or the
-- cancel request, which request_backfill_cancel writes).
INSERT INTO backfills
    (id, rule, lo, hi, force, list_sources, rate, status, requested_by, requested_at,
     preview, planned, fired, skipped, incomplete, message, cancel_requested, updated_at,
     finished_at)
VALUES (%(id)s, %(rule)s, %(lo)s, %(hi)s, %(force)s, %(list_sources)s, %(rate)s, %(status)s, %(requested_by)s,
        %(requested_at)s, %(preview)s, %(planned)s, %(fired)s, %(skipped)s, %(incomplete)s, %(message)s,
        %(cancel_requested)s, %(updated_at)s, %(finished_at)s)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, planned = excluded.planned, fired = excluded.fired,
    skipped = excluded.skipped, incomplete = excluded.incomplete, message = excluded.message,
    updated_at = excluded.updated_at, finished_at = excluded.finished_at;

-- name: get_backfill
-- One backfill request by id.
SELECT id, rule, lo, hi, force, list_sources, rate, status, requested_by, requested_at,
       preview, planned, fired, skipped, incomplete, message, cancel_requested, updated_at,
       finished_at
FROM backfills WHERE id = %(id)s;

-- name: list_backfills
-- Backfill requests, newest first, of a status (NULL: any; 'active': pending or running).
SELECT id, rule, lo, hi, force, list_sources, rate, status, requested_by, requested_at,
       preview, planned, fired, skipped, incomplete, message, cancel_requested, updated_at,
       finished_at
FROM backfills
WHERE %(status)s::text IS NULL OR status = %(status)s
   OR (%(status)s = 'active' AND status IN ('pending', 'running'))
ORDER BY requested_at DESC, id DESC
LIMIT %(limit)s;

-- name: request_backfill_cancel
-- Ask for a pending or running backfill to be cancelled (the first request is kept).
UPDATE backfills SET cancel_requested = coalesce(cancel_requested, %(request)s),
    updated_at = %(now)s
WHERE id = %(id)s AND status IN ('pending', 'running');

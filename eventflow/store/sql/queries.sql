-- The named SQL statements of the SQLite state store, loaded by eventflow.store._sqlite_sql.
--
-- File format (after procrastinate's sql/queries.sql):
--     -- name: query_name
--     -- one or more comment lines describing it
--     SQL text, up to the next "-- name:" line
--
-- Writes on the hot path take positional `?` parameters in the column order of the row
-- tuples built by eventflow.store._codec; the other statements take `:named` parameters.
-- Sets of ids and keys are passed as one JSON array and expanded with json_each().

-- name: insert_events
-- Log observed events; a second event with the same id is ignored (EventRow order), except
-- that it clears the mark of one a backfill logged from a listing (now observed live).
INSERT INTO events
    (id, sensor, key, time, position, payload, attributes, datasets, received_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET listed = 0 WHERE events.listed = 1;

-- name: insert_listed_events
-- Log the events a backfill found by listing a source, marked as not observed live; one
-- already logged stays as it is (EventRow order).
INSERT OR IGNORE INTO events
    (id, sensor, key, time, position, payload, attributes, datasets, received_at, listed)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 1);

-- name: seen_events
-- The ids among the JSON array :ids that were observed (logged and not only listed by a
-- backfill) or dead-lettered.
SELECT id FROM events WHERE id IN (SELECT value FROM json_each(:ids)) AND listed = 0
UNION
SELECT event_id FROM deadletters WHERE event_id IN (SELECT value FROM json_each(:ids));

-- name: get_events
-- Logged events whose id is in the JSON array :ids.
SELECT id, sensor, key, time, position, payload, attributes, datasets, received_at
FROM events
WHERE id IN (SELECT value FROM json_each(:ids));

-- name: first_event_since
-- The sequence number (rowid) of the first event received at or after :since (NULL: none).
SELECT min(rowid) FROM events WHERE received_at >= :since;

-- name: read_events
-- A page of the event log in write order after sequence :after, received at or after
-- :since (NULL: any time), of the sensors in the JSON array :sensors (NULL: all).
SELECT rowid, id, sensor, key, time, position, payload, attributes, datasets, received_at
FROM events
WHERE rowid > :after
  AND (:since IS NULL OR received_at >= :since)
  AND (:sensors IS NULL OR sensor IN (SELECT value FROM json_each(:sensors)))
ORDER BY rowid
LIMIT :limit;

-- name: list_events
-- The event log newest first, of :sensor, received at or after :since and before :until,
-- announcing :dataset and (the JSON object :partition) a partition with those values;
-- logged before the event :after (keyset).
SELECT id, sensor, key, time, position, payload, attributes, datasets, received_at
FROM events
WHERE (:sensor IS NULL OR sensor = :sensor)
  AND (:since IS NULL OR received_at >= :since) AND (:until IS NULL OR received_at < :until)
  AND ((:dataset IS NULL AND :partition IS NULL) OR EXISTS (
        SELECT 1 FROM json_each(events.datasets) AS d
        WHERE (:dataset IS NULL OR json_extract(d.value, '$[0]') = :dataset)
          AND (:partition IS NULL OR NOT EXISTS (
                SELECT 1 FROM json_each(:partition) AS p
                WHERE json_extract(d.value, '$[1]."' || p.key || '"') IS NOT p.value))))
  AND (:after IS NULL OR rowid < (SELECT rowid FROM events WHERE id = :after))
ORDER BY rowid DESC
LIMIT :limit;

-- name: count_events
-- How many events list_events finds with the same filters (no cursor, no limit).
SELECT count(*) FROM events
WHERE (:sensor IS NULL OR sensor = :sensor)
  AND (:since IS NULL OR received_at >= :since) AND (:until IS NULL OR received_at < :until)
  AND ((:dataset IS NULL AND :partition IS NULL) OR EXISTS (
        SELECT 1 FROM json_each(events.datasets) AS d
        WHERE (:dataset IS NULL OR json_extract(d.value, '$[0]') = :dataset)
          AND (:partition IS NULL OR NOT EXISTS (
                SELECT 1 FROM json_each(:partition) AS p
                WHERE json_extract(d.value, '$[1]."' || p.key || '"') IS NOT p.value))));

-- name: prune_events
-- Delete up to :limit of the oldest events received before :before (retention).
DELETE FROM events WHERE rowid IN (
    SELECT rowid FROM events WHERE received_at < :before ORDER BY received_at LIMIT :limit
);

-- name: upsert_cursors
-- Write sensor checkpoints (CursorRow order).
INSERT INTO cursors (sensor, key, value) VALUES (?, ?, ?)
ON CONFLICT (sensor, key) DO UPDATE SET value = excluded.value;

-- name: load_cursors
-- All checkpoints of one sensor.
SELECT key, value FROM cursors WHERE sensor = :sensor ORDER BY key;

-- name: delete_cursor
-- Forget one checkpoint entry (sensor, key).
DELETE FROM cursors WHERE sensor = ? AND key = ?;

-- name: beat_worker
-- Write a worker's heartbeat row (WorkerBeat): who it is, its leases, its sensors' health.
INSERT INTO worker_health
    (worker, host, pid, started_at, heartbeat_at, beat_seconds, leases, sensors, stopped_at)
VALUES (:worker, :host, :pid, :started_at, :heartbeat_at, :beat_seconds, :leases, :sensors,
        :stopped_at)
ON CONFLICT (worker) DO UPDATE SET
    heartbeat_at = excluded.heartbeat_at, beat_seconds = excluded.beat_seconds,
    leases = excluded.leases, sensors = excluded.sensors, stopped_at = excluded.stopped_at;

-- name: prune_workers
-- Forget heartbeat rows older than the cutoff (workers long gone).
DELETE FROM worker_health WHERE heartbeat_at < :before;

-- name: list_workers
-- Every worker's last heartbeat, the newest first.
SELECT worker, host, pid, started_at, heartbeat_at, beat_seconds, leases, sensors, stopped_at
FROM worker_health ORDER BY heartbeat_at DESC, worker;

-- name: upsert_matches
-- Write rule states (MatchRow order).
INSERT INTO matches (rule, key, generation, status, state, updated_at)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (rule, key) DO UPDATE SET
    generation = excluded.generation,
    status = excluded.status,
    state = excluded.state,
    updated_at = excluded.updated_at;

-- name: get_matches
-- Rule states for the JSON array :keys of [rule, key] pairs (CROSS JOIN: probe the PK).
SELECT m.rule, m.key, m.state
FROM json_each(:keys) AS k
CROSS JOIN matches AS m
WHERE m.rule = json_extract(k.value, '$[0]') AND m.key = json_extract(k.value, '$[1]');

-- name: list_matches
-- Rule states by rule and key, of one rule, status or key; :partial = 1: not fired; changed
-- in [:since, :until); after (:after_rule, :after_key) (keyset); :limit -1 = all.
SELECT state FROM matches
WHERE (:rule IS NULL OR rule = :rule) AND (:status IS NULL OR status = :status)
  AND (:partial = 0 OR status <> 'fired') AND (:key IS NULL OR key = :key)
  AND (:since IS NULL OR updated_at >= :since) AND (:until IS NULL OR updated_at < :until)
  AND (:after_rule IS NULL OR (rule, key) > (:after_rule, :after_key))
ORDER BY rule, key
LIMIT :limit;

-- name: count_matches
-- How many matches list_matches finds with the same filters (no cursor, no limit).
SELECT count(*) FROM matches
WHERE (:rule IS NULL OR rule = :rule) AND (:status IS NULL OR status = :status)
  AND (:partial = 0 OR status <> 'fired') AND (:key IS NULL OR key = :key)
  AND (:since IS NULL OR updated_at >= :since) AND (:until IS NULL OR updated_at < :until);

-- name: get_match
-- One rule's state for one partition key.
SELECT state FROM matches WHERE rule = :rule AND key = :key;

-- name: match_counts
-- How many matches each rule has in each status.
SELECT rule, status, count(*) FROM matches GROUP BY rule, status;

-- name: insert_runs
-- Create runs; a second run with the same run_id is ignored (RunRow order).
INSERT OR IGNORE INTO runs
    (run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
     created_at, updated_at, not_before, started_at, finished_at, error, output, notes,
     cancel_requested)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: update_runs
-- Write a run's new status (RunUpdateRow order).
UPDATE runs SET
    status = ?, attempt = ?, updated_at = ?, not_before = ?, finished_at = ?, error = ?,
    output = ?
WHERE run_id = ?;

-- name: note_runs
-- Set one key of a run's notes (JSON path, JSON value, run id): a key noted again is replaced.
UPDATE runs SET notes = json_set(notes, ?, json(?)) WHERE run_id = ?;

-- name: claim_candidates
-- Pending runs that are due at :now, oldest first; a paused rule's runs wait (held), and
-- so do its alert and hook runs (RULE:on_deadline, RULE:on_failure, RULE:on_missed).
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE status = 'pending' AND cancel_requested IS NULL
  AND (not_before IS NULL OR not_before <= :now)
  AND substr(rule, 1, instr(rule || ':', ':') - 1) NOT IN (SELECT name FROM pauses WHERE kind = 'rule')
ORDER BY created_at, run_id;

-- name: running_per_rule
-- How many runs each rule has running.
SELECT rule, count(*) FROM runs WHERE status = 'running' GROUP BY rule;

-- name: claim_run
-- Start one attempt of a pending run (started_at, updated_at, run_id).
UPDATE runs SET status = 'running', attempt = attempt + 1, started_at = ?, updated_at = ?
WHERE run_id = ? AND status = 'pending';

-- name: running_ids
-- The runs left running, oldest first.
SELECT run_id FROM runs WHERE status = 'running' ORDER BY created_at, run_id;

-- name: recover_running
-- Put every running run back to pending.
UPDATE runs SET status = 'pending', updated_at = :now WHERE status = 'running';

-- name: next_run_due
-- The earliest not_before of a pending run, :min for a pending run without one (the runs of
-- a paused rule wait for its resume, not for a time).
SELECT min(coalesce(not_before, :min)) FROM runs WHERE status = 'pending'
  AND substr(rule, 1, instr(rule || ':', ':') - 1) NOT IN (SELECT name FROM pauses WHERE kind = 'rule');

-- name: get_run
-- One run by id.
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE run_id = :run_id;

-- name: partition_runs
-- Every run of one partition of a rule, by generation (the runs_partition index).
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE rule = :rule AND key = :key
ORDER BY generation, run_id;

-- name: list_runs
-- Runs, optionally of one rule and/or one status, newest first.
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE (:rule IS NULL OR rule = :rule) AND (:status IS NULL OR status = :status)
  AND (:key IS NULL OR key = :key)
  AND (:since IS NULL OR created_at >= :since) AND (:until IS NULL OR created_at < :until)
  AND (:before_at IS NULL OR (created_at, run_id) < (:before_at, :before_id))
ORDER BY created_at DESC, run_id DESC
LIMIT :limit;

-- name: count_runs
-- How many runs list_runs finds with the same filters (no cursor, no limit).
SELECT count(*) FROM runs
WHERE (:rule IS NULL OR rule = :rule) AND (:status IS NULL OR status = :status)
  AND (:key IS NULL OR key = :key)
  AND (:since IS NULL OR created_at >= :since) AND (:until IS NULL OR created_at < :until);

-- name: unfinished_runs
-- How many runs of :rule are pending or running (through the claim index, not a scan).
SELECT count(*) FROM runs WHERE status IN ('pending', 'running') AND rule = :rule;

-- name: retry_run
-- Put a failed or cancelled run back to pending with at least one more allowed attempt.
UPDATE runs SET
    status = 'pending', max_attempts = max(max_attempts, attempt + 1), not_before = NULL,
    finished_at = NULL, error = NULL, output = '{}', updated_at = :now, cancel_requested = NULL
WHERE run_id = :run_id AND status IN ('failed', 'cancelled');

-- name: request_cancel
-- Ask for a pending or running run to be cancelled (the request as JSON, run id).
UPDATE runs SET cancel_requested = coalesce(cancel_requested, :request)
WHERE run_id = :run_id AND status IN ('pending', 'running');

-- name: cancel_requests
-- Pending and running runs an operator asked to cancel.
SELECT run_id, rule, key, partition, generation, status, attempt, max_attempts, inputs,
       created_at, updated_at, not_before, started_at, finished_at, error, output,
       notes, cancel_requested
FROM runs
WHERE cancel_requested IS NOT NULL AND status IN ('pending', 'running');

-- name: insert_pause
-- Pause a rule or sensor; one already paused keeps its first pause (who, why, since).
INSERT OR IGNORE INTO pauses (kind, name, paused_by, reason, since)
VALUES (:kind, :name, :actor, :reason, :at);

-- name: delete_pause
-- Resume a rule or sensor.
DELETE FROM pauses WHERE kind = :kind AND name = :name;

-- name: record_pause_action
-- Audit one pause or resume (who, when, why, whether it changed anything).
INSERT INTO pause_actions (kind, name, action, actor, reason, at, changed)
VALUES (:kind, :name, :action, :actor, :reason, :at, :changed);

-- name: list_pauses
-- What is paused now, by kind and name.
SELECT kind, name, paused_by, reason, since FROM pauses ORDER BY kind, name;

-- name: list_pause_actions
-- The newest pauses and resumes first.
SELECT kind, name, action, actor, reason, at, changed FROM pause_actions
ORDER BY seq DESC
LIMIT :limit;

-- name: upsert_timers
-- Schedule timers; an existing timer gets the new due time (TimerRow order).
INSERT INTO timers (kind, rule, key, generation, due) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (kind, rule, key, generation) DO UPDATE SET due = excluded.due;

-- name: delete_timer
-- Cancel one timer (kind, rule, key, generation).
DELETE FROM timers WHERE kind = ? AND rule = ? AND key = ? AND generation = ?;

-- name: due_timers
-- Timers due at :now, earliest first.
SELECT kind, rule, key, generation, due FROM timers
WHERE due <= :now
ORDER BY due, kind, rule, key, generation
LIMIT :limit;

-- name: next_timer_due
-- The earliest due time of any timer.
SELECT min(due) FROM timers;

-- name: insert_outbox
-- Queue completion events for publishers (publisher, event).
INSERT INTO outbox (publisher, event) VALUES (?, ?);

-- name: fetch_outbox
-- The oldest events waiting for one publisher.
SELECT id, publisher, event FROM outbox WHERE publisher = :publisher ORDER BY id LIMIT :limit;

-- name: delete_outbox
-- Forget one delivered event (id).
DELETE FROM outbox WHERE id = ?;

-- name: insert_inbox
-- Record observations (InboxRow order without id).
INSERT INTO inbox (observation_sensor, dataset, partition, position, payload, created_at)
VALUES (?, ?, ?, ?, ?, ?);

-- name: fetch_inbox
-- The oldest recorded observations.
SELECT id, observation_sensor, dataset, partition, position, payload, created_at
FROM inbox
ORDER BY id
LIMIT :limit;

-- name: delete_inbox
-- Forget one consumed observation (id).
DELETE FROM inbox WHERE id = ?;

-- name: insert_deadletters
-- Keep observations that could not be processed; the first per event id wins.
INSERT OR IGNORE INTO deadletters (
    event_id, sensor, position, error, excerpt, time,
    message, status, requested_by, requested_at, history
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: list_deadletters
-- Dead letters, most recently recorded first; recorded before the one of :after (keyset).
SELECT event_id, sensor, position, error, excerpt, time,
       message, status, requested_by, requested_at, history
FROM deadletters
WHERE (:status IS NULL OR status = :status) AND (:sensor IS NULL OR sensor = :sensor)
  AND (:since IS NULL OR time >= :since) AND (:until IS NULL OR time < :until)
  AND (:after IS NULL OR seq < (SELECT seq FROM deadletters WHERE event_id = :after))
ORDER BY seq DESC
LIMIT :limit;

-- name: count_deadletters
-- How many dead letters list_deadletters finds with the same filters (no cursor, no limit).
SELECT count(*) FROM deadletters
WHERE (:status IS NULL OR status = :status) AND (:sensor IS NULL OR sensor = :sensor)
  AND (:since IS NULL OR time >= :since) AND (:until IS NULL OR time < :until);

-- name: get_deadletter
-- The dead letter of event id :event_id.
SELECT event_id, sensor, position, error, excerpt, time,
       message, status, requested_by, requested_at, history
FROM deadletters
WHERE event_id = :event_id;

-- name: request_redrive
-- Ask the running pipeline to redrive an open dead letter that kept its message and has no
-- redrive requested yet; :entry (JSON) is appended to its history.
UPDATE deadletters
SET requested_by = :by, requested_at = :at, history = json_insert(history, '$[#]', json(:entry))
WHERE event_id = :event_id AND status = 'open' AND message IS NOT NULL
  AND requested_at IS NULL;

-- name: discard_deadletter
-- Mark an open dead letter discarded (a redrive requested of it is withdrawn).
UPDATE deadletters
SET status = 'discarded', requested_by = NULL, requested_at = NULL,
    history = json_insert(history, '$[#]', json(:entry))
WHERE event_id = :event_id AND status = 'open';

-- name: fetch_redrives
-- The dead letters whose redrive is requested, oldest first.
SELECT event_id, sensor, position, error, excerpt, time,
       message, status, requested_by, requested_at, history
FROM deadletters
WHERE requested_at IS NOT NULL AND status = 'open'
ORDER BY seq
LIMIT :limit;

-- name: redrive_outcome
-- What a redrive did (status, error, history entry), only while it is still requested.
UPDATE deadletters
SET status = :status, error = :error, requested_by = NULL, requested_at = NULL,
    history = json_insert(history, '$[#]', json(:entry))
WHERE event_id = :event_id AND status = 'open' AND requested_at IS NOT NULL;

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

-- name: has_migrations_table
-- Whether the schema_migrations table exists (an empty file has none).
SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations';

-- name: applied_migrations
-- The schema versions applied to this file.
SELECT version FROM schema_migrations ORDER BY version;

-- name: record_migration
-- Remember that a schema version was applied.
INSERT INTO schema_migrations (version, applied_at) VALUES (:version, :applied_at);

-- name: upsert_gates
-- Write check gates whole (GateRow order).
INSERT INTO check_gates (run_id, rule, dataset, key, partition, status, attempt, payload,
    results, actions, pipeline_version, created_at, updated_at)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
WHERE (:rule IS NULL OR rule = :rule) AND (:dataset IS NULL OR dataset = :dataset)
    AND (:key IS NULL OR key = :key) AND (:status IS NULL OR status = :status)
    AND (:run_id IS NULL OR run_id = :run_id)
    AND (:run_ids IS NULL OR run_id IN (SELECT value FROM json_each(:run_ids)))
ORDER BY created_at DESC, run_id DESC
LIMIT :limit;

-- name: gates_to_claim
-- The gates a checker may claim, oldest first: pending, or running with a claim that
-- expired or is another worker's (the store admits one worker: that one is dead).
SELECT run_id, status FROM check_gates
WHERE status = 'pending'
   OR (status = 'running'
       AND (claim_until IS NULL OR claim_until < :now OR claimed_by IS NOT :worker))
ORDER BY created_at, run_id
LIMIT :limit;

-- name: claim_gate
-- Claim one gate of gates_to_claim for :worker until :until.
UPDATE check_gates
SET status = 'running', attempt = attempt + 1, claimed_by = :worker, claim_until = :until,
    updated_at = :now
WHERE run_id = :run_id
RETURNING run_id, rule, dataset, key, partition, status, attempt, payload, results, actions,
    pipeline_version, created_at, updated_at;

-- name: renew_gates
-- Extend :worker's claims of the running gates :run_ids (a JSON array) to :until; returns
-- the ids it still holds.
UPDATE check_gates SET claim_until = :until
WHERE status = 'running' AND claimed_by = :worker
    AND run_id IN (SELECT value FROM json_each(:run_ids))
RETURNING run_id;

-- name: claim_identity
-- Make the store's identity when it has none (the first start); a later one is ignored.
INSERT OR IGNORE INTO store_identity (singleton, store_id, environment, pipeline, created_at)
VALUES (1, ?, ?, ?, ?);

-- name: get_identity
-- The store's identity, if it was ever started.
SELECT store_id, environment, pipeline, created_at FROM store_identity WHERE singleton = 1;

-- name: insert_start
-- Record a start of `eventflow run` (VersionStartRow order).
INSERT INTO pipeline_starts
    (version, pipeline, environment, worker, started_at, git_commit, git_dirty, rules,
     definition, accepted)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?);

-- name: list_starts
-- The newest :limit starts before start :before (all when null), newest first.
SELECT seq, version, pipeline, environment, worker, started_at, git_commit, git_dirty, rules,
       definition, accepted
FROM pipeline_starts WHERE :before IS NULL OR seq < :before ORDER BY seq DESC LIMIT :limit;

-- name: count_starts
SELECT count(*) FROM pipeline_starts;

-- name: save_backfill
-- Insert a backfill request, or record its status and progress (never its request or the
-- cancel request, which request_backfill_cancel writes).
INSERT INTO backfills
    (id, rule, lo, hi, force, list_sources, rate, status, requested_by, requested_at,
     preview, planned, fired, skipped, incomplete, message, cancel_requested, updated_at,
     finished_at)
VALUES (:id, :rule, :lo, :hi, :force, :list_sources, :rate, :status, :requested_by,
        :requested_at, :preview, :planned, :fired, :skipped, :incomplete, :message,
        :cancel_requested, :updated_at, :finished_at)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, planned = excluded.planned, fired = excluded.fired,
    skipped = excluded.skipped, incomplete = excluded.incomplete, message = excluded.message,
    updated_at = excluded.updated_at, finished_at = excluded.finished_at;

-- name: get_backfill
-- One backfill request by id.
SELECT id, rule, lo, hi, force, list_sources, rate, status, requested_by, requested_at,
       preview, planned, fired, skipped, incomplete, message, cancel_requested, updated_at,
       finished_at
FROM backfills WHERE id = :id;

-- name: list_backfills
-- Backfill requests, newest first, of :status (NULL: any; 'active': pending or running).
SELECT id, rule, lo, hi, force, list_sources, rate, status, requested_by, requested_at,
       preview, planned, fired, skipped, incomplete, message, cancel_requested, updated_at,
       finished_at
FROM backfills
WHERE :status IS NULL OR status = :status
   OR (:status = 'active' AND status IN ('pending', 'running'))
ORDER BY requested_at DESC, id DESC
LIMIT :limit;

-- name: request_backfill_cancel
-- Ask for a pending or running backfill to be cancelled (the first request is kept).
UPDATE backfills SET cancel_requested = coalesce(cancel_requested, :request),
    updated_at = :now
WHERE id = :id AND status IN ('pending', 'running');

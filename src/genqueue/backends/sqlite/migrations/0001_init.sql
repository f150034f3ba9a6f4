-- 0001: jobs and dead letter entries.
-- Every job is one row; its state is a column (never inferred). JSON columns hold the
-- job's data, result, error, attempt history, progress, cost and bookkeeping.

CREATE TABLE jobs (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    queue            TEXT    NOT NULL,
    task             TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN
                         ('queued', 'scheduled', 'active', 'retrying', 'completed', 'dead', 'cancelled')),
    data             TEXT,
    user_id          TEXT,
    idempotency_key  TEXT,
    created_at       REAL    NOT NULL,
    updated_at       REAL    NOT NULL,
    run_at           REAL    NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0,
    retry_count      INTEGER NOT NULL DEFAULT 0,
    max_retries      INTEGER NOT NULL,
    redrive_count    INTEGER NOT NULL DEFAULT 0,
    timeout          REAL,
    lease_owner      TEXT,
    lease_expires_at REAL,
    started_at       REAL,
    finished_at      REAL,
    last_error       TEXT,
    history          TEXT    NOT NULL DEFAULT '[]',
    remote_job_id    TEXT,
    result           TEXT,
    progress         TEXT,
    cost             TEXT    NOT NULL DEFAULT '{}',
    meta             TEXT    NOT NULL DEFAULT '{}'
);

-- Fetch: due queued jobs of a queue, oldest due first.
CREATE INDEX jobs_ready ON jobs (queue, run_at, seq) WHERE state = 'queued';
-- Promote: scheduled and retrying jobs by due time.
CREATE INDEX jobs_delayed ON jobs (run_at) WHERE state IN ('scheduled', 'retrying');
-- Reclaim: leases by expiry.
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'active';
-- Retention of finished jobs.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE state IN ('completed', 'cancelled');
-- Listing, newest first.
CREATE INDEX jobs_created ON jobs (created_at, id);
CREATE INDEX jobs_state_created ON jobs (state, created_at, id);
-- One pending job per idempotency key and queue.
CREATE UNIQUE INDEX jobs_idempotency ON jobs (queue, idempotency_key)
    WHERE idempotency_key IS NOT NULL AND state IN ('queued', 'scheduled', 'active', 'retrying');

CREATE TABLE dead_letters (
    job_id      TEXT PRIMARY KEY,
    queue       TEXT NOT NULL,
    user_id     TEXT,
    task        TEXT NOT NULL,
    reason      TEXT NOT NULL,
    error_kind  TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    failed_at   REAL NOT NULL,
    expires_at  REAL NOT NULL
) WITHOUT ROWID;

CREATE INDEX dead_letters_failed ON dead_letters (failed_at, job_id);
CREATE INDEX dead_letters_user ON dead_letters (user_id, failed_at, job_id);
CREATE INDEX dead_letters_kind ON dead_letters (error_kind, failed_at, job_id);
CREATE INDEX dead_letters_task ON dead_letters (task, failed_at, job_id);
CREATE INDEX dead_letters_fingerprint ON dead_letters (fingerprint, failed_at, job_id);
CREATE INDEX dead_letters_queue ON dead_letters (queue, failed_at, job_id);
CREATE INDEX dead_letters_expires ON dead_letters (expires_at);

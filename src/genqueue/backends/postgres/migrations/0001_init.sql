-- 0001: jobs and dead letter entries (the same columns as SQLite's; times are epoch
-- seconds). Migrations run with search_path set to genqueue's schema, so names here are
-- unqualified. Ids, queues and fingerprints sort bytewise (COLLATE "C"): cursors, id
-- prefixes and ordering must not depend on the database's locale.

CREATE TABLE jobs (
    seq              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id               text COLLATE "C" NOT NULL UNIQUE,
    queue            text COLLATE "C" NOT NULL,
    task             text COLLATE "C" NOT NULL,
    state            text NOT NULL CHECK (state IN
                         ('queued', 'scheduled', 'active', 'retrying', 'completed', 'dead', 'cancelled')),
    data             text,
    user_id          text COLLATE "C",
    idempotency_key  text COLLATE "C",
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    run_at           double precision NOT NULL,
    attempts         integer NOT NULL DEFAULT 0,
    retry_count      integer NOT NULL DEFAULT 0,
    max_retries      integer NOT NULL,
    redrive_count    integer NOT NULL DEFAULT 0,
    timeout          double precision,
    lease_owner      text,
    lease_expires_at double precision,
    started_at       double precision,
    finished_at      double precision,
    last_error       text,
    history          text NOT NULL DEFAULT '[]',
    remote_job_id    text,
    result           text,
    progress         text,
    cost             text NOT NULL DEFAULT '{}',
    meta             text NOT NULL DEFAULT '{}'
);

-- Fetch: per queue, jobs that are or will become due, oldest due first (a fetch claims
-- due queued jobs and due scheduled/retrying ones, which it promotes on the way).
CREATE INDEX jobs_due ON jobs (queue, run_at, seq) WHERE state IN ('queued', 'scheduled', 'retrying');
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
    job_id      text COLLATE "C" PRIMARY KEY,
    queue       text COLLATE "C" NOT NULL,
    user_id     text COLLATE "C",
    task        text COLLATE "C" NOT NULL,
    reason      text NOT NULL,
    error_kind  text COLLATE "C" NOT NULL,
    fingerprint text COLLATE "C" NOT NULL,
    failed_at   double precision NOT NULL,
    expires_at  double precision NOT NULL
);

CREATE INDEX dead_letters_failed ON dead_letters (failed_at, job_id);
CREATE INDEX dead_letters_user ON dead_letters (user_id, failed_at, job_id);
CREATE INDEX dead_letters_kind ON dead_letters (error_kind, failed_at, job_id);
CREATE INDEX dead_letters_task ON dead_letters (task, failed_at, job_id);
CREATE INDEX dead_letters_fingerprint ON dead_letters (fingerprint, failed_at, job_id);
CREATE INDEX dead_letters_queue ON dead_letters (queue, failed_at, job_id);
CREATE INDEX dead_letters_expires ON dead_letters (expires_at);

-- Wake-ups: whenever a job becomes queued (enqueued, promoted, retried now, redriven,
-- released), NOTIFY the schema's channel with the queue's name. Notifications are
-- transactional: a job enqueued in a caller's transaction wakes workers when it commits,
-- and not at all if it rolls back. PostgreSQL folds repeated identical notifications of
-- one transaction into one.
CREATE FUNCTION genqueue_notify_ready() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('genqueue.' || TG_TABLE_SCHEMA, NEW.queue);
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_ready_insert AFTER INSERT ON jobs
    FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION genqueue_notify_ready();
CREATE TRIGGER jobs_ready_update AFTER UPDATE OF state ON jobs
    FOR EACH ROW WHEN (NEW.state = 'queued' AND OLD.state <> 'queued')
    EXECUTE FUNCTION genqueue_notify_ready();

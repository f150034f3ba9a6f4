-- 0007: a finished job expires at a time stored with it (expires_at: set as it finishes,
-- from its task's keep_finished or the app's retention), so tasks can keep their finished
-- jobs for different times. Jobs finished before this migration have no expiry and go by
-- the age rule (finished_at) until none is left: their index is empty from then on.

ALTER TABLE jobs ADD COLUMN expires_at REAL;

DROP INDEX jobs_finished;
DROP INDEX jobs_finished_queue;
CREATE INDEX jobs_expiring ON jobs (expires_at) WHERE state IN ('completed', 'cancelled');
-- The per-queue count cap deletes those that expire first (no expiry: first of all).
CREATE INDEX jobs_expiring_queue ON jobs (queue, expires_at)
    WHERE state IN ('completed', 'cancelled');
CREATE INDEX jobs_finished_unexpiring ON jobs (finished_at)
    WHERE state IN ('completed', 'cancelled') AND expires_at IS NULL;

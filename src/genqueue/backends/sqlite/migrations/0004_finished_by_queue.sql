-- 0004: finished jobs per queue, newest first: the per-queue count cap of retention
-- (Retention.finished_per_queue) deletes a queue's oldest finished jobs beyond it.

CREATE INDEX jobs_finished_queue ON jobs (queue, finished_at)
    WHERE state IN ('completed', 'cancelled');

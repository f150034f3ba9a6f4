-- 0005: group dead letters by error fingerprint from an index alone.
-- The DLQ page and stats count entries per fingerprint with their tasks; without this
-- index that reads the row of every matching entry (150 ms for 100,000 entries).

CREATE INDEX dead_letters_groups ON dead_letters (error_kind, fingerprint, task, queue);

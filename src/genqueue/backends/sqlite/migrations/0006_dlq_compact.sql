-- 0006: a dead letter costs little.
-- Counters per queue (dlq_counts), kept by triggers in the transaction that adds or drops
-- an entry, so the statistics of the whole DLQ read them instead of every entry: 'n'
-- entries, 'k:<kind>', 't:<task>', 'u:<user>' ('u' without a user), 'f:<fingerprint>',
-- 'ft:' || json_array(fingerprint, task), 'd:<UTC day>', 'c:<unit>' (cost lost).
-- A dead job's stacks are kept once (dlq_stacks), counted by the entries that list them
-- in dead_letters.stacks (a JSON array of keys; NULL for entries stored before, whose
-- job rows keep their stacks inline).

ALTER TABLE dead_letters ADD COLUMN stacks TEXT;

CREATE TABLE dlq_stacks (
    key   TEXT PRIMARY KEY,
    stack TEXT NOT NULL,
    refs  INTEGER NOT NULL
) WITHOUT ROWID;

CREATE TABLE dlq_counts (
    queue TEXT NOT NULL,
    name  TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (queue, name)
) WITHOUT ROWID;

CREATE TRIGGER dead_letters_count_insert AFTER INSERT ON dead_letters BEGIN
    INSERT INTO dlq_counts (queue, name, value)
    SELECT NEW.queue, name, v FROM (
        SELECT 'n' AS name, 1.0 AS v
        UNION ALL SELECT 'k:' || NEW.error_kind, 1
        UNION ALL SELECT 't:' || NEW.task, 1
        UNION ALL SELECT CASE WHEN NEW.user_id IS NULL THEN 'u' ELSE 'u:' || NEW.user_id END, 1
        UNION ALL SELECT 'f:' || NEW.fingerprint, 1
        UNION ALL SELECT 'ft:' || json_array(NEW.fingerprint, NEW.task), 1
        UNION ALL SELECT 'd:' || strftime('%Y-%m-%d', NEW.failed_at, 'unixepoch'), 1
        UNION ALL SELECT 'c:' || c.key, c.value FROM jobs j, json_each(j.cost) c
            WHERE j.id = NEW.job_id AND json_valid(j.cost)
    ) WHERE true
    ON CONFLICT (queue, name) DO UPDATE SET value = value + excluded.value;
    UPDATE dlq_stacks SET refs = refs + 1
    WHERE key IN (SELECT value FROM json_each(coalesce(NEW.stacks, '[]')));
END;

CREATE TRIGGER dead_letters_count_delete AFTER DELETE ON dead_letters BEGIN
    UPDATE dlq_counts SET value = value - (
        SELECT CASE WHEN dlq_counts.name LIKE 'c:%' THEN (
            SELECT c.value FROM jobs j, json_each(j.cost) c
            WHERE j.id = OLD.job_id AND json_valid(j.cost) AND 'c:' || c.key = dlq_counts.name
        ) ELSE 1 END
    )
    WHERE queue = OLD.queue AND name IN (
        'n', 'k:' || OLD.error_kind, 't:' || OLD.task,
        CASE WHEN OLD.user_id IS NULL THEN 'u' ELSE 'u:' || OLD.user_id END,
        'f:' || OLD.fingerprint, 'ft:' || json_array(OLD.fingerprint, OLD.task),
        'd:' || strftime('%Y-%m-%d', OLD.failed_at, 'unixepoch')
    ) OR (queue = OLD.queue AND name IN (
        SELECT 'c:' || c.key FROM jobs j, json_each(j.cost) c
        WHERE j.id = OLD.job_id AND json_valid(j.cost)
    ));
    DELETE FROM dlq_counts WHERE queue = OLD.queue AND abs(value) < 1e-9 AND name IN (
        'n', 'k:' || OLD.error_kind, 't:' || OLD.task,
        CASE WHEN OLD.user_id IS NULL THEN 'u' ELSE 'u:' || OLD.user_id END,
        'f:' || OLD.fingerprint, 'ft:' || json_array(OLD.fingerprint, OLD.task),
        'd:' || strftime('%Y-%m-%d', OLD.failed_at, 'unixepoch')
    );
    DELETE FROM dlq_counts WHERE queue = OLD.queue AND name LIKE 'c:%'
        AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.queue = OLD.queue LIMIT 1);
    UPDATE dlq_stacks SET refs = refs - 1
    WHERE key IN (SELECT value FROM json_each(coalesce(OLD.stacks, '[]')));
    DELETE FROM dlq_stacks
    WHERE key IN (SELECT value FROM json_each(coalesce(OLD.stacks, '[]'))) AND refs <= 0;
END;

-- The entries stored before, counted once.
INSERT INTO dlq_counts (queue, name, value)
SELECT queue, name, sum(v) FROM (
    SELECT queue, 'n' AS name, 1.0 AS v FROM dead_letters
    UNION ALL SELECT queue, 'k:' || error_kind, 1 FROM dead_letters
    UNION ALL SELECT queue, 't:' || task, 1 FROM dead_letters
    UNION ALL SELECT queue, CASE WHEN user_id IS NULL THEN 'u' ELSE 'u:' || user_id END, 1
        FROM dead_letters
    UNION ALL SELECT queue, 'f:' || fingerprint, 1 FROM dead_letters
    UNION ALL SELECT queue, 'ft:' || json_array(fingerprint, task), 1 FROM dead_letters
    UNION ALL SELECT queue, 'd:' || strftime('%Y-%m-%d', failed_at, 'unixepoch'), 1
        FROM dead_letters
    UNION ALL SELECT d.queue, 'c:' || c.key, c.value
        FROM dead_letters d JOIN jobs j ON j.id = d.job_id, json_each(j.cost) c
        WHERE json_valid(j.cost)
) GROUP BY queue, name;

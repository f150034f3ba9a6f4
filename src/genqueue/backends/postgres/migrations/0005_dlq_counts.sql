-- 0005: counters of the dead letter queue, so statistics read counters instead of every
-- entry. A trigger on dead_letters appends the changes of each entry added, replaced or
-- dropped to dlq_count_deltas (append only: concurrent transactions never wait on a
-- counter row, and cannot deadlock on two), in the transaction that changes the entry;
-- genqueue_dlq_rollup() folds them into dlq_counts (statistics and retention call it).
-- Names: 'n' entries, 'k:<kind>', 't:<task>', 'u:<user>' ('u' without a user),
-- 'f:<fingerprint>', 'ft:' || json_build_array(fingerprint, task), 'd:<UTC day number>',
-- 'c:<unit>' (cost lost; each entry's share is kept in dlq_entry_costs, because its job
-- row may be gone by the time the entry's deletion is counted).

CREATE TABLE dlq_counts (
    queue text COLLATE "C" NOT NULL,
    name  text COLLATE "C" NOT NULL,
    value double precision NOT NULL,
    PRIMARY KEY (queue, name)
);

CREATE TABLE dlq_count_deltas (
    queue text COLLATE "C" NOT NULL,
    name  text COLLATE "C" NOT NULL,
    delta double precision NOT NULL
);

CREATE TABLE dlq_entry_costs (
    job_id text COLLATE "C" PRIMARY KEY,
    cost   jsonb NOT NULL
);

CREATE FUNCTION genqueue_dlq_names(d dead_letters) RETURNS TABLE (name text, v double precision)
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT x.name, x.v FROM (VALUES
        ('n', 1.0::float8),
        ('k:' || d.error_kind, 1.0),
        ('t:' || d.task, 1.0),
        (CASE WHEN d.user_id IS NULL THEN 'u' ELSE 'u:' || d.user_id END, 1.0),
        ('f:' || d.fingerprint, 1.0),
        ('ft:' || json_build_array(d.fingerprint, d.task)::text, 1.0),
        ('d:' || floor(d.failed_at / 86400)::bigint::text, 1.0)
    ) AS x(name, v)
$$;

CREATE FUNCTION genqueue_dlq_count() RETURNS trigger
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    spent jsonb;
BEGIN
    IF TG_OP <> 'INSERT' THEN
        INSERT INTO dlq_count_deltas (queue, name, delta)
        SELECT OLD.queue, n.name, -n.v FROM genqueue_dlq_names(OLD) n;
        DELETE FROM dlq_entry_costs WHERE job_id = OLD.job_id RETURNING cost INTO spent;
        IF spent IS NOT NULL THEN
            INSERT INTO dlq_count_deltas (queue, name, delta)
            SELECT OLD.queue, 'c:' || c.key, -c.value::float8 FROM jsonb_each_text(spent) c;
        END IF;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        INSERT INTO dlq_count_deltas (queue, name, delta)
        SELECT NEW.queue, n.name, n.v FROM genqueue_dlq_names(NEW) n;
        SELECT j.cost::jsonb INTO spent FROM jobs j WHERE j.id = NEW.job_id;
        IF spent IS NOT NULL AND spent <> '{}'::jsonb THEN
            INSERT INTO dlq_entry_costs (job_id, cost) VALUES (NEW.job_id, spent);
            INSERT INTO dlq_count_deltas (queue, name, delta)
            SELECT NEW.queue, 'c:' || c.key, c.value::float8 FROM jsonb_each_text(spent) c;
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER dead_letters_count AFTER INSERT OR UPDATE OR DELETE ON dead_letters
    FOR EACH ROW EXECUTE FUNCTION genqueue_dlq_count();

-- Fold the pending changes into the counters, one folder at a time (in key order, so
-- that folders never deadlock), and forget counters that fell to zero.
CREATE FUNCTION genqueue_dlq_rollup() RETURNS void
LANGUAGE sql SET search_path FROM CURRENT AS $$
    SELECT pg_advisory_xact_lock(hashtext('genqueue_dlq_rollup:' || current_schema()));
    WITH gone AS (DELETE FROM dlq_count_deltas RETURNING queue, name, delta)
    INSERT INTO dlq_counts (queue, name, value)
    SELECT queue, name, sum(delta) FROM gone GROUP BY queue, name ORDER BY queue, name
    ON CONFLICT (queue, name) DO UPDATE SET value = dlq_counts.value + excluded.value;
    DELETE FROM dlq_counts WHERE abs(value) < 1e-9;
$$;

-- The entries stored before, counted once.
INSERT INTO dlq_entry_costs (job_id, cost)
SELECT d.job_id, j.cost::jsonb FROM dead_letters d JOIN jobs j ON j.id = d.job_id
WHERE j.cost::jsonb <> '{}'::jsonb;

INSERT INTO dlq_counts (queue, name, value)
SELECT queue, name, sum(v) FROM (
    SELECT d.queue, n.name, n.v FROM dead_letters d, genqueue_dlq_names(d) n
    UNION ALL
    SELECT d.queue, 'c:' || c.key, c.value::float8
    FROM dead_letters d JOIN dlq_entry_costs e ON e.job_id = d.job_id,
        jsonb_each_text(e.cost) c
) s GROUP BY queue, name;

-- 0003: per-minute counters for analytics (retry and redrive success rates, failure rates).

CREATE TABLE tallies (
    bucket INTEGER NOT NULL,
    name   TEXT    NOT NULL,
    value  REAL    NOT NULL,
    PRIMARY KEY (bucket, name)
) WITHOUT ROWID;

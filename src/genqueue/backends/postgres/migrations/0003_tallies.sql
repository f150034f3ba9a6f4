-- 0003: per-minute counters for analytics (retry and redrive success rates, failure rates).

CREATE TABLE tallies (
    bucket bigint NOT NULL,
    name   text COLLATE "C" NOT NULL,
    value  double precision NOT NULL,
    PRIMARY KEY (bucket, name)
);

-- 0002: shared state for cooldowns and circuit breakers, and concurrency slots.

CREATE TABLE shared_state (
    key        text COLLATE "C" PRIMARY KEY,
    value      text NOT NULL,
    version    bigint NOT NULL,
    expires_at double precision
);

CREATE TABLE slots (
    key        text COLLATE "C" NOT NULL,
    holder     text COLLATE "C" NOT NULL,
    expires_at double precision NOT NULL,
    PRIMARY KEY (key, holder)
);

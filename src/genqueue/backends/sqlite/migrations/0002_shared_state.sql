-- 0002: shared state for cooldowns and circuit breakers, and concurrency slots.

CREATE TABLE shared_state (
    key        TEXT PRIMARY KEY,
    value      TEXT    NOT NULL,
    version    INTEGER NOT NULL,
    expires_at REAL
) WITHOUT ROWID;

CREATE TABLE slots (
    key        TEXT NOT NULL,
    holder     TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (key, holder)
) WITHOUT ROWID;

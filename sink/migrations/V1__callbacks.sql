-- The callback store of cluster mode (several `eventual sink`/`serve` nodes on one database).
-- Keys are bytea: compared byte by byte (the embedded store's order), any UTF-8 including NUL,
-- and a prefix is a range of the primary key's index.

-- One row per key that holds records: the last seq given (seq is unique per key cluster-wide,
-- assigned under this row's lock), how many records it holds, when the latest arrived.
CREATE TABLE callback_keys (
    key         bytea  PRIMARY KEY,
    last_seq    bigint NOT NULL,
    count       bigint NOT NULL,
    last_ms     bigint NOT NULL
);

-- Every record as its final JSON (what the read routes answer, byte for byte). `id` is a
-- sink-wide sequence in commit-ish order, for watching a prefix.
CREATE TABLE callbacks (
    id          bigserial,
    key         bytea  NOT NULL,
    seq         bigint NOT NULL,
    received_ms bigint NOT NULL,
    record      bytea  NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE INDEX callbacks_received ON callbacks (received_ms);

-- Records held in all, for --max-callbacks cluster-wide, spread over a few rows so concurrent
-- inserts do not queue on one row lock; the total is their sum.
CREATE TABLE callback_usage (
    shard       smallint PRIMARY KEY,
    stored      bigint   NOT NULL
);
INSERT INTO callback_usage (shard, stored) SELECT s, 0 FROM generate_series(0, 15) AS s;

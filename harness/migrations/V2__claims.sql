-- Environment claims in cluster mode: one row per environment with its holder and a fencing
-- token, and the runs waiting for each, started in run id order.
CREATE TABLE environments (
    id           integer     PRIMARY KEY,
    holder       bigint,
    holder_user  text,
    holder_since timestamptz,
    paused       boolean     NOT NULL DEFAULT false,
    -- Bumped every time the holder changes: a node that holds token T may write the run's
    -- results only while the row still says T (it has not lost the claim meanwhile).
    token        bigint      NOT NULL DEFAULT 0
);

CREATE TABLE claim_queue (
    run_id   bigint  PRIMARY KEY,
    env_id   integer NOT NULL REFERENCES environments (id),
    username text    NOT NULL
);
CREATE INDEX claim_queue_by_env ON claim_queue (env_id, run_id);

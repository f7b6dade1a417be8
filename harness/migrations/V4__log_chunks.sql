-- Run logs in cluster mode: the executing node appends its run's log in chunks, so any node
-- can serve and follow it, and it survives the node.
CREATE TABLE log_chunks (
    run_id bigint NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    -- Byte offset of the chunk's first byte in the run's log.
    start  bigint NOT NULL,
    data   bytea  NOT NULL,
    PRIMARY KEY (run_id, start)
);

-- The nodes of a cluster: each heartbeats; one silent for longer than --node-timeout is dead,
-- and a live node ends what the dead one was running.
CREATE TABLE nodes (
    name         text        PRIMARY KEY,
    address      text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    -- Set once a live node has ended the dead node's runs (cleared when it heartbeats again).
    reaped_at    timestamptz
);

-- A node that stopped gracefully says so (GET /api/nodes shows it `stopped`, not `alive` until
-- its heartbeats are missed and then `dead`); cleared when it starts again.
ALTER TABLE nodes ADD COLUMN stopped_at timestamptz;

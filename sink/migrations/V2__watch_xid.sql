-- GET /watch in cluster mode: the transaction that stored each record (every insert stores one
-- record per transaction). A watcher reads records in xid order, and only below the oldest
-- transaction still running (pg_snapshot_xmin): every transaction there has ended, so no record
-- can later appear below its cursor. The xid is the event id.
ALTER TABLE callbacks ADD COLUMN xid xid8;
-- Records stored before this migration: their bigserial id, in insertion order. Each insert
-- took an xid of its own, so these are below every xid given from now on, and unique.
UPDATE callbacks SET xid = id::text::xid8;
ALTER TABLE callbacks
    ALTER COLUMN xid SET DEFAULT pg_current_xact_id(),
    ALTER COLUMN xid SET NOT NULL;
CREATE INDEX callbacks_xid ON callbacks (xid);

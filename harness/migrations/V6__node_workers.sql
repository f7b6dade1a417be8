-- What GET /api/nodes shows of a node: how many runs it executes at once (--workers).
ALTER TABLE nodes ADD COLUMN workers integer NOT NULL DEFAULT 0;

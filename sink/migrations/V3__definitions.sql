-- Stubs and verifiers in cluster mode: one row per kind holding the whole set as JSON (a test sets
-- a few, they change rarely and every callback reads them from memory), with a version bumped on
-- every change so each node can tell whether its copy is current. Text, not jsonb: a stub's body
-- is answered byte for byte as it was set (jsonb would reorder its keys).
CREATE TABLE definitions (
    kind    text   PRIMARY KEY,
    doc     text   NOT NULL DEFAULT '{}',
    version bigint NOT NULL DEFAULT 0
);

-- Uploaded tests in cluster mode: the database holds every upload; each node mirrors them into
-- its local uploads directory, so a test uploaded through one node runs on every node.
CREATE SEQUENCE upload_versions;
CREATE TABLE uploads (
    path     text    PRIMARY KEY,
    -- NULL once deleted (the row stays, so that mirrors learn of the deletion).
    contents bytea,
    version  bigint  NOT NULL DEFAULT nextval('upload_versions')
);

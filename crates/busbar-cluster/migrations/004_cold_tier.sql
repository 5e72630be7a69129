-- busbar cluster schema, version 4 (issue 20): the cold tier. Committed batches move from the
-- hot tier (`batches`) into segment objects in object storage (crates/busbar-cluster/src/upload.rs).

-- One row per segment object: the offsets it holds (every batch of the partition from
-- base_offset to last_offset, in the local log's segment format, docs/log-format.md), where it is
-- and how big. Written in the transaction that deletes those batches from the hot tier, so an
-- offset is always in exactly one of the two tables.
CREATE TABLE objects (
    topic_id text NOT NULL,
    partition integer NOT NULL,
    base_offset bigint NOT NULL,
    last_offset bigint NOT NULL,
    key text NOT NULL UNIQUE,
    size bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic_id, partition, base_offset)
);

-- Objects no row points at any more (their topic was deleted): the uploaders delete them from
-- the store, then the row.
CREATE TABLE doomed_objects (
    key text PRIMARY KEY,
    since timestamptz NOT NULL DEFAULT now()
);

-- The cold tier's bucket and prefix (s3://bucket/prefix), set by the first broker that starts
-- with one: every broker must use the same (a broker without it, or with another, is refused).
ALTER TABLE busbar_cluster ADD COLUMN object_store text;

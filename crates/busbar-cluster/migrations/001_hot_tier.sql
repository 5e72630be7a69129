-- busbar cluster schema, version 1 (issue 20, increment 1): the topic catalog, the hot tier of
-- partition data (one row per committed batch), idempotent producers. Applied once, in one
-- transaction, by the first broker that starts on an empty database (crates/busbar-cluster/src/migrate.rs).

-- One row: the cluster's id (a broker's local copy remembers it and refuses another cluster).
CREATE TABLE busbar_cluster (
    id text PRIMARY KEY
);
INSERT INTO busbar_cluster (id) VALUES (md5(random()::text || clock_timestamp()::text));

CREATE TABLE topics (
    name text PRIMARY KEY,
    id text NOT NULL UNIQUE,
    partitions integer NOT NULL CHECK (partitions > 0),
    configs jsonb NOT NULL,
    created_ms bigint NOT NULL
);

-- Each partition's next offset: the produce transaction advances it (its row lock orders the
-- partition's commits, so committed offsets never have a gap).
CREATE TABLE partitions (
    topic_id text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL DEFAULT 0,
    hot_bytes bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (topic_id, partition)
);

-- The hot tier: committed RecordBatches with their offsets written in.
CREATE TABLE batches (
    topic_id text NOT NULL,
    partition integer NOT NULL,
    base_offset bigint NOT NULL,
    last_offset bigint NOT NULL,
    size integer NOT NULL,
    bytes bytea NOT NULL,
    PRIMARY KEY (topic_id, partition, base_offset)
);

-- Issued producer ids (InitProducerId) and their epochs: a batch of an id never issued is refused.
CREATE SEQUENCE producer_ids START 1;
CREATE TABLE producers (
    producer_id bigint PRIMARY KEY,
    epoch smallint NOT NULL,
    used_at timestamptz NOT NULL DEFAULT now()
);

-- An idempotent producer's last five batches in one partition: [[first_seq, last_seq,
-- base_offset, last_offset], ...], oldest first.
CREATE TABLE producer_state (
    producer_id bigint NOT NULL,
    topic_id text NOT NULL,
    partition integer NOT NULL,
    epoch smallint NOT NULL,
    recent jsonb NOT NULL,
    used_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (producer_id, topic_id, partition)
);

-- busbar cluster schema, version 11 (issue 20): key compaction of the cold tier's objects
-- (crates/busbar-cluster/src/compact.rs). The holder of a partition's upload range rewrites its
-- objects without the records a later one of the same key supersedes, as Kafka's log cleaner
-- rewrites segments; the rewritten objects have offset gaps.

-- Where the next compaction of the partition starts mapping keys (objects from here on are
-- "dirty"), and the oldest tombstone the last compaction kept (ms; a compaction is due when it
-- passes `delete.retention.ms`).
ALTER TABLE partitions ADD COLUMN compacted_to bigint NOT NULL DEFAULT 0;
ALTER TABLE partitions ADD COLUMN compaction_tombstone_ms bigint;

-- The schema version each broker's binary knows (0: older than this version). Objects are
-- compacted only while every live broker knows version 11: an older one would refuse the
-- rewritten objects' gaps, and its deletion of queued objects ignores `since`.
ALTER TABLE brokers ADD COLUMN schema_version integer NOT NULL DEFAULT 0;

-- busbar cluster schema, version 12 (issue 20): tombstones expire by delete horizon (Kafka's
-- KIP-534). The first compaction that keeps a batch's tombstones sets attribute bit 6 and puts
-- the time they may go (the database's now plus delete.retention.ms) in its base timestamp
-- (docs/log-format.md). A broker older than this version refuses such a batch (its max
-- timestamp may be below its base), so objects are compacted only while every live broker
-- knows version 12 (crates/busbar-cluster/src/compact.rs, COMPACTED_READERS_SINCE).

-- From this version on: the earliest delete horizon of the tombstones the last compaction
-- kept (ms, the database's clock); a compaction is due once it has passed. (Version 11 kept the
-- oldest kept tombstone's own timestamp here: such a value only makes the next compaction come
-- early, which then writes a horizon.)
COMMENT ON COLUMN partitions.compaction_tombstone_ms IS
    'earliest delete horizon (ms) of the tombstones the last compaction kept';

-- busbar cluster schema, version 8 (issue 20): DeleteRecords on the shared store
-- (crates/busbar-cluster/src/records.rs).

-- The offset DeleteRecords moved a partition's start to: records below it are deleted for
-- readers even where the batch or object holding them is kept because it also holds later
-- records. `log_start` stays the first stored offset (always a batch's base offset: where a
-- copy starts over); a partition's start as Kafka reports it is the greater of the two.
ALTER TABLE partitions ADD COLUMN deleted_below bigint NOT NULL DEFAULT 0;

-- busbar cluster schema, version 6 (issue 20): retention of the cold tier
-- (crates/busbar-cluster/src/upload.rs).

-- Each partition's first stored offset. The uploader's retention deletes a partition's oldest
-- objects and raises it in one transaction; a broker whose copy ends below it starts its copy
-- over there (busbar_broker::shared).
ALTER TABLE partitions ADD COLUMN log_start bigint NOT NULL DEFAULT 0;

-- The newest record timestamp in each object (time retention). NULL for objects uploaded
-- before this version: their upload time stands in.
ALTER TABLE objects ADD COLUMN max_timestamp bigint;

-- busbar cluster schema, version 7 (issue 20): transactions (Kafka's Transactions V1) in cluster
-- mode (crates/busbar-cluster/src/txn.rs, docs/cluster.md "Transactions").

-- One row per transactional id: its coordinator's record (busbar_broker::txn::Txn as JSON),
-- written only by the holder of the id's lease (kind 'txn'). `open` while a transaction is
-- Ongoing or being completed, so a broker finds the open ones no live broker coordinates.
-- `producer_id` is the record's (a producer id belongs to one transactional id for good): a
-- transactional batch's producer id is checked against the request's transactional id on
-- every broker.
CREATE TABLE txns (
    transactional_id text PRIMARY KEY,
    record text NOT NULL,
    open boolean NOT NULL,
    producer_id bigint,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX txns_open ON txns (transactional_id) WHERE open;
CREATE INDEX txns_by_producer ON txns (producer_id);

-- The partitions in an open transaction: one row from AddPartitionsToTxn until the
-- transaction's marker is committed (in the marker's own database transaction). A
-- transactional batch is stored only while its row exists at its producer's epoch, so no batch
-- of a transaction can follow its marker. `txn_seq` is the transaction's number (Txn::seq): a
-- marker deletes only its own transaction's row (a coordinator that lost its lease cannot end
-- the next transaction). `first` is the partition's end when it joined: no batch of the
-- transaction lies below.
CREATE TABLE txn_partitions (
    topic_id text NOT NULL,
    partition integer NOT NULL,
    producer_id bigint NOT NULL,
    epoch smallint NOT NULL,
    txn_seq bigint NOT NULL,
    first bigint NOT NULL,
    PRIMARY KEY (topic_id, partition, producer_id)
);

-- Consumer offsets staged in transaction number `txn_seq` (TxnOffsetCommit, written by the
-- group's coordinator after checking the transaction's record, which it share-locks). When the
-- transaction commits its coordinator marks them `committed` (an abort deletes them); the
-- group's coordinator then commits them as its own OffsetCommit would and deletes the rows.
-- While a group has rows here, OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT.
CREATE TABLE txn_offsets (
    transactional_id text NOT NULL,
    txn_seq bigint NOT NULL,
    group_id text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    committed_offset bigint NOT NULL,
    metadata text NOT NULL,
    committed boolean NOT NULL DEFAULT false,
    -- When marked committed: the order transactions committed in, across transactional ids
    -- (the newest offset of a partition wins).
    commit_order bigint,
    PRIMARY KEY (transactional_id, txn_seq, group_id, topic, partition)
);
CREATE SEQUENCE txn_offsets_order;
CREATE INDEX txn_offsets_by_group ON txn_offsets (group_id);
CREATE INDEX txn_offsets_committed ON txn_offsets (group_id) WHERE committed;

-- The aborted-transaction index (read_committed): written with each ABORT marker, in its
-- database transaction; `last` is the marker's offset.
CREATE TABLE aborted_txns (
    topic_id text NOT NULL,
    partition integer NOT NULL,
    producer_id bigint NOT NULL,
    first bigint NOT NULL,
    last bigint NOT NULL,
    PRIMARY KEY (topic_id, partition, last)
);

-- busbar cluster schema, version 2 (issue 20, increment 2): live brokers, leases, committed offsets.

-- One row per broker id: where clients reach it and when it last said it is alive (the
-- database's clock). `instance` is random per process: a second process with the same id is
-- refused while the first is alive.
CREATE TABLE brokers (
    node_id integer PRIMARY KEY,
    instance text NOT NULL,
    kafka_host text NOT NULL,
    kafka_port integer NOT NULL,
    http_addr text NOT NULL,
    heartbeat_at timestamptz NOT NULL
);

-- Leases (kind 'group': the broker coordinating a consumer group), held by one process (node id
-- and instance: a restarted broker does not inherit its predecessor's). Expiry by the database's
-- clock only, so brokers' clocks never matter.
CREATE TABLE leases (
    kind text NOT NULL,
    name text NOT NULL,
    holder integer NOT NULL,
    holder_instance text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE INDEX leases_by_holder ON leases (holder, holder_instance);

-- Committed consumer offsets, as a Kafka client sent them (negative ones included).
CREATE TABLE group_offsets (
    group_id text NOT NULL,
    topic text NOT NULL,
    partition integer NOT NULL,
    committed_offset bigint NOT NULL,
    metadata text NOT NULL,
    commit_ms bigint NOT NULL,
    PRIMARY KEY (group_id, topic, partition)
);
-- A topic's deletion removes every group's commits of it.
CREATE INDEX group_offsets_by_topic ON group_offsets (topic);

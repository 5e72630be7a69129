-- busbar cluster schema, version 10 (issue 20): every Kafka listener of a broker, not only its
-- first (crates/busbar-cluster/src/members.rs). A client is told each broker's address on the
-- listener at the same place in that broker's list as the one it connected to, as Kafka tells
-- it the address of the listener with the same name.

-- One `host:port` per line, in the broker's listener order ('': the first only, kafka_host and
-- kafka_port, as a broker older than this version registers).
ALTER TABLE brokers ADD COLUMN listeners text NOT NULL DEFAULT '';

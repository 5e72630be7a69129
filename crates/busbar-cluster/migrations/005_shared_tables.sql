-- busbar cluster schema, version 5 (issue 20): the small tables every broker must agree on
-- (users, API tokens, ACLs, quotas), each a space of key/value rows (crates/busbar-cluster/src/kv.rs).
-- Every broker keeps a space in memory and loads it again when its version moves.

-- A space's version moves with every write to it (from kv_seq).
CREATE TABLE kv_spaces (
    space text PRIMARY KEY,
    version bigint NOT NULL
);

CREATE TABLE kv_rows (
    space text NOT NULL REFERENCES kv_spaces (space),
    key bytea NOT NULL,
    -- From kv_seq: newer rows have larger numbers.
    seq bigint NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (space, key)
);

CREATE SEQUENCE kv_seq;

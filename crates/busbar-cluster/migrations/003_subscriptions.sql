-- busbar cluster schema, version 3 (issue 20): the bus's subscriptions and their state.

-- One row per subscription: its record (spec, paused flag, creator) as JSON, and a version every
-- change moves on (a change based on an older version is refused).
CREATE TABLE subscriptions (
    name text PRIMARY KEY,
    version bigint NOT NULL,
    record bytea NOT NULL
);

-- A subscription's state: positions and counters (space 0), retry entries and replay runs
-- (space 1), keyed as the single node's internal logs key them. `seq` orders rows as log offsets
-- do (the newest wins).
CREATE SEQUENCE bus_state_seq;
CREATE TABLE bus_state (
    sub text NOT NULL,
    space smallint NOT NULL,
    key bytea NOT NULL,
    seq bigint NOT NULL,
    value bytea NOT NULL,
    PRIMARY KEY (sub, space, key)
);

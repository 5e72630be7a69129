-- busbar cluster schema, version 9 (issue 20): work one broker asks of the broker that runs a
-- subscription (a replay run started or cancelled, letters redriven), because only that broker
-- may write the subscription's state (crates/busbar-cluster/src/asks.rs).

CREATE TABLE bus_asks (
    id bigserial PRIMARY KEY,
    sub text NOT NULL,
    -- What is asked, as JSON (busbar_bus::ask::Ask).
    body bytea NOT NULL,
    made_at timestamptz NOT NULL DEFAULT now(),
    -- The broker instance that took it: from then on the asker cannot withdraw it.
    taken_by text,
    -- The answer, as JSON (busbar_bus::ask::Answer).
    answer bytea
);
CREATE INDEX bus_asks_open ON bus_asks (sub) WHERE taken_by IS NULL;

-- Notifications: the alert grouper's state (so a server taking over the `monitors` lease
-- continues its groups, waits and repeats), each delivery of a notification to a receiver
-- as a row one server claims at a time, and silences and maintenance windows, each kept
-- whole as JSON the monitors crate writes; and each service's `[[logs]]` entries as
-- written, sent to its hosts' agents beside the deploy config.

CREATE TABLE notify_state (
    name TEXT PRIMARY KEY,
    doc TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE notify_deliveries (
    id TEXT PRIMARY KEY,
    -- The notification's idempotency id; a retry sends the same one.
    notification_id TEXT NOT NULL,
    -- A receiver's name from the server's [notify] configuration.
    receiver TEXT NOT NULL,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    -- One line for lists.
    summary TEXT NOT NULL,
    -- The notification as JSON: what is sent, the same on every attempt.
    doc TEXT NOT NULL,
    -- pending, delivered or failed
    state TEXT NOT NULL,
    attempts BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    first_attempt_at BIGINT,
    last_attempt_at BIGINT,
    -- When a pending delivery is next due.
    next_attempt_at BIGINT,
    delivered_at BIGINT,
    last_error TEXT,
    -- The server sending it, until claimed_until.
    claimed_by TEXT,
    claimed_until BIGINT,
    UNIQUE (notification_id, receiver)
);
CREATE INDEX notify_deliveries_due ON notify_deliveries (state, next_attempt_at);
CREATE INDEX notify_deliveries_by_created_at ON notify_deliveries (created_at);

CREATE TABLE silences (
    id TEXT PRIMARY KEY,
    -- silence or maintenance
    kind TEXT NOT NULL,
    -- A Silence or a MaintenanceWindow as JSON.
    doc TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- A silence's end; none for a maintenance window, which recurs.
    ends_at BIGINT,
    -- Ended early by hand.
    expired_at BIGINT,
    expired_by TEXT
);
CREATE INDEX silences_by_ends_at ON silences (ends_at);

CREATE TABLE log_watch_configs (
    service TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

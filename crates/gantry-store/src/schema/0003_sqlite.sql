-- Flags: per-service flags with a definition per environment, segments, scheduled changes,
-- client and frontend tokens (a table of their own so binaries that predate their scope
-- names never read them), SDK registrations and hourly usage.

CREATE TABLE flags (
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    flag_type TEXT NOT NULL,
    description TEXT,
    owner TEXT,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    archived_at BIGINT,
    -- Bumped by every write to the flag or one of its environments: the flag's ETag.
    version BIGINT NOT NULL,
    PRIMARY KEY (service, name)
);

CREATE TABLE flag_environments (
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    environment TEXT NOT NULL,
    -- The environment's definition as JSON (enabled, strategies, variants, dependencies).
    definition TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    PRIMARY KEY (service, name, environment)
);

CREATE TABLE flag_segments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    description TEXT,
    constraints TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE (service, name)
);

-- The flag set's revision: the global counter every flag or segment write bumps, the
-- revision of each service's set (the counter's value at its last write), and the counter
-- of client-token revocations that tells servers to drop their token caches.
CREATE TABLE flag_state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    database_id TEXT NOT NULL,
    revision BIGINT NOT NULL,
    token_revision BIGINT NOT NULL
);
CREATE TABLE flag_revisions (
    service TEXT PRIMARY KEY,
    revision BIGINT NOT NULL
);

CREATE TABLE flag_schedules (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    name TEXT NOT NULL,
    environment TEXT NOT NULL,
    action TEXT NOT NULL,
    run_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    -- pending, done, failed or cancelled
    state TEXT NOT NULL,
    ran_at BIGINT,
    change_id TEXT,
    error TEXT
);
CREATE INDEX flag_schedules_due ON flag_schedules (state, run_at);
CREATE INDEX flag_schedules_by_flag ON flag_schedules (service, name, run_at);

CREATE TABLE client_tokens (
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    created_by TEXT NOT NULL
);
CREATE UNIQUE INDEX client_tokens_active_name ON client_tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE sdk_clients (
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    app_name TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    sdk_version TEXT,
    strategies TEXT NOT NULL,
    started_at BIGINT,
    interval_ms BIGINT,
    first_seen_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    PRIMARY KEY (service, environment, app_name, instance_id)
);

CREATE TABLE flag_usage (
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    name TEXT NOT NULL,
    hour BIGINT NOT NULL,
    yes BIGINT NOT NULL,
    no BIGINT NOT NULL,
    -- {"variant": count, …}
    variants TEXT NOT NULL,
    PRIMARY KEY (service, environment, name, hour)
);
CREATE INDEX flag_usage_by_hour ON flag_usage (hour);

-- The database's identity goes into every flag ETag, so a revision of another database
-- never matches.
INSERT INTO flag_state (id, database_id, revision, token_revision)
VALUES (1, lower(hex(randomblob(8))), 0, 0);

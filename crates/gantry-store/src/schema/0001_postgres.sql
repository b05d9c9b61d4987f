CREATE TABLE environments (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);

CREATE TABLE services (
    name TEXT PRIMARY KEY,
    environments TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE changes (
    id TEXT COLLATE "C" PRIMARY KEY,
    kind TEXT NOT NULL,
    service TEXT,
    environment TEXT,
    actor TEXT NOT NULL,
    summary TEXT NOT NULL,
    description TEXT,
    status TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    finished_at BIGINT,
    size_value DOUBLE PRECISION,
    size_unit TEXT,
    commit_from TEXT,
    commit_to TEXT,
    links TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX changes_by_time ON changes (started_at DESC, id DESC);
CREATE INDEX changes_by_service ON changes (service, started_at DESC, id DESC);
CREATE INDEX changes_by_environment ON changes (environment, started_at DESC, id DESC);

CREATE TABLE change_tags (
    tag TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    change_id TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (tag, started_at, change_id)
);
CREATE INDEX change_tags_by_change ON change_tags (change_id);

CREATE TABLE change_history (
    change_id TEXT COLLATE "C" NOT NULL,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    fields TEXT NOT NULL
);
CREATE INDEX change_history_by_change ON change_history (change_id, at);

CREATE TABLE change_events (
    seq BIGSERIAL PRIMARY KEY,
    kind TEXT NOT NULL,
    change_id TEXT COLLATE "C" NOT NULL,
    payload TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX change_events_by_time ON change_events (at);

CREATE TABLE tokens (
    name TEXT NOT NULL,
    digest TEXT NOT NULL UNIQUE,
    scopes TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT,
    revoked_at BIGINT,
    created_by TEXT NOT NULL
);
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;

CREATE TABLE leases (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

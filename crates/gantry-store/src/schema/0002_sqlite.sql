-- Shipping: builds and their artifacts, service deploy configs, hosts, rollouts, the tasks
-- agents run, and which build each environment ran when.

CREATE TABLE builds (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    version TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size BIGINT NOT NULL,
    url TEXT,
    commit_sha TEXT,
    commit_time BIGINT,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    UNIQUE (service, version)
);
CREATE INDEX builds_by_service ON builds (service, id);
CREATE INDEX builds_by_sha ON builds (sha256);

-- Artifacts kept in the database (the shared storage for several servers): chunks are
-- written under an upload key and renamed to the digest in the transaction that adds the
-- blobs row, so a partial upload is never visible.
CREATE TABLE blobs (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    chunks INTEGER NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE TABLE blob_chunks (
    blob_key TEXT NOT NULL,
    n INTEGER NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (blob_key, n)
);

CREATE TABLE deploy_configs (
    service TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE hosts (
    name TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    roles TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    last_seen_at BIGINT,
    facts TEXT NOT NULL,
    releases TEXT NOT NULL,
    maintenance INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX hosts_by_environment ON hosts (environment, name);

-- A rollout's record is a JSON document; the columns beside it are what queries filter on.
-- At most one active rollout per service and environment: the database enforces the lock.
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    state TEXT NOT NULL,
    active INTEGER NOT NULL,
    doc TEXT NOT NULL,
    -- A person's request (pause, resume, abort:<actor>) the driving server applies.
    control TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX rollouts_one_active ON rollouts (service, environment) WHERE active = 1;
CREATE INDEX rollouts_by_service ON rollouts (service, environment, id);

CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    rollout_id TEXT,
    host TEXT NOT NULL,
    service TEXT NOT NULL,
    state TEXT NOT NULL,
    doc TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX tasks_by_host ON tasks (host, state, id);
CREATE INDEX tasks_by_rollout ON tasks (rollout_id, id);

-- Each rollout that left an environment on a build (succeeded deploys, promotes and
-- rollbacks): the environment's current build is its newest row; lead time reads the first.
CREATE TABLE deployments (
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    at BIGINT NOT NULL,
    rollout_id TEXT NOT NULL,
    build_id TEXT NOT NULL,
    PRIMARY KEY (service, environment, at, rollout_id)
);
CREATE INDEX deployments_by_build ON deployments (build_id, environment, at);

-- Migration jobs: phase applies and table rebuilds that `gantry server` runs detached
-- (`gantry migrate apply --via-server`), and each job's log, which clients follow by `seq`.
-- Incidents: what broke, since when, and which changes are suspects, each kept whole as
-- JSON beside the columns lists filter on, and each incident's timeline, read by `seq`.
-- Monitors: their files as written, heartbeat keys (by digest) and pings, each series'
-- state as JSON the monitors crate writes, and state transitions, read by `seq`.
-- Regression detection: each service's `[detect]` table as written, and verdicts, each kept
-- whole as JSON beside the columns lists filter on; a change or a rollout has at most
-- one regression verdict per metric.

CREATE TABLE migrate_jobs (
    id TEXT PRIMARY KEY,
    database TEXT NOT NULL,
    -- apply or rebuild
    kind TEXT NOT NULL,
    environment TEXT NOT NULL,
    -- ["service", …]
    services TEXT NOT NULL,
    -- The change (kind `migration`) the job records.
    change_id TEXT NOT NULL,
    -- queued, running, paused, succeeded, failed, interrupted or aborted
    state TEXT NOT NULL,
    -- What a person asked of the server running the job: pause, resume or abort.
    control TEXT,
    requested_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    updated_at BIGINT NOT NULL,
    -- The server running it, while it runs.
    holder TEXT,
    error TEXT,
    -- What it did, as JSON.
    report TEXT,
    -- Bumped by every write: the compare-and-set between the server and people.
    version BIGINT NOT NULL,
    -- What to run (a JobSpec as JSON, with the migration files).
    spec TEXT NOT NULL
);
CREATE INDEX migrate_jobs_by_database ON migrate_jobs (database, created_at);

CREATE TABLE migrate_job_log (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX migrate_job_log_by_job ON migrate_job_log (job_id, seq);

CREATE TABLE incidents (
    id TEXT PRIMARY KEY,
    -- open, acknowledged, mitigated or resolved
    state TEXT NOT NULL,
    -- SEV1 to SEV4
    severity TEXT NOT NULL,
    detected_at BIGINT NOT NULL,
    resolved_at BIGINT,
    updated_at BIGINT NOT NULL,
    -- Bumped by every write: the compare-and-set between servers and people.
    version BIGINT NOT NULL,
    -- The whole incident as JSON (services, environments, suspects, cause…): what reads
    -- return. The columns above are copied from it on every write, for filtering.
    doc TEXT NOT NULL
);
CREATE INDEX incidents_by_detected_at ON incidents (detected_at);

CREATE TABLE incident_timeline (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    -- opened, alert, change, note or action
    kind TEXT NOT NULL,
    actor TEXT NOT NULL,
    text TEXT NOT NULL,
    -- The change the entry is about, if any.
    change_id TEXT
);
CREATE INDEX incident_timeline_by_incident ON incident_timeline (incident_id, seq);

CREATE TABLE monitor_files (
    -- The file's name, as the monitors it defines are applied under.
    source TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE heartbeat_keys (
    monitor TEXT PRIMARY KEY,
    -- A digest of the key pings carry (never the key itself); rotating replaces it.
    digest TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE heartbeat_pings (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    monitor TEXT NOT NULL,
    at BIGINT NOT NULL,
    -- What the ping said (named by the monitors crate, not the store).
    kind TEXT NOT NULL,
    exit_code INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX heartbeat_pings_by_monitor ON heartbeat_pings (monitor, seq);

CREATE TABLE monitor_states (
    monitor TEXT NOT NULL,
    -- The series' key within the monitor (the monitors crate's, opaque to the store).
    series TEXT NOT NULL,
    -- The series' state as JSON, opaque to the store.
    doc TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (monitor, series)
);

CREATE TABLE monitor_transitions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    monitor TEXT NOT NULL,
    series TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    -- Whether the new state is hard (held for the monitor's `for` evaluations): 0 or 1.
    hard INTEGER NOT NULL,
    -- The value that caused it, if any.
    value REAL,
    at BIGINT NOT NULL
);
CREATE INDEX monitor_transitions_by_monitor ON monitor_transitions (monitor, seq);

CREATE TABLE detect_configs (
    service TEXT PRIMARY KEY,
    -- The service's `[detect]` table, as TOML.
    text TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE verdicts (
    id TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    environment TEXT NOT NULL,
    metric TEXT NOT NULL,
    -- The change and the rollout judged, if any.
    change_id TEXT,
    rollout_id TEXT,
    at BIGINT NOT NULL,
    -- Whether the verdict found a regression: 0 or 1.
    regression INTEGER NOT NULL,
    -- The whole verdict as JSON, written and read by the detection crate: what reads
    -- return beside the columns above.
    doc TEXT NOT NULL
);
CREATE INDEX verdicts_by_service ON verdicts (service, environment, at);
CREATE INDEX verdicts_by_change ON verdicts (change_id);
CREATE INDEX verdicts_by_rollout ON verdicts (rollout_id);
-- At most one regression verdict per change and metric, and per rollout and metric
-- (verdicts without a change or a rollout are not limited: NULLs are distinct).
CREATE UNIQUE INDEX verdicts_one_regression_per_change ON verdicts (change_id, metric) WHERE regression;
CREATE UNIQUE INDEX verdicts_one_regression_per_rollout ON verdicts (rollout_id, metric) WHERE regression;

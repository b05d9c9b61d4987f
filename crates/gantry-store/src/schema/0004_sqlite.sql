-- Migration jobs: phase applies and table rebuilds that `gantry server` runs detached
-- (`gantry migrate apply --via-server`), and each job's log, which clients follow by `seq`.
-- Incidents: what broke, since when, and which changes are suspects, each kept whole as
-- JSON beside the columns lists filter on, and each incident's timeline, read by `seq`.

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
